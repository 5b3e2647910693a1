"""Solve time of the CPO step per policy update, m = 1 and m = 3 constraints (target: < 5 ms).

Side by side, on the same random subproblems (only those that need a solver: the TRPO step
violates a constraint):

- ``solve_step``: the whole call (validation, normalisation, cvxpy solves, polish), and the
  part of it spent in cvxpy's ``Problem.solve`` (``CpoStep.solve_time_ms``);
- peer "naive cvxpy": what a straightforward implementation does, a fresh (non-parametrised)
  cvxpy problem of the primal in the (m+1)-dim subspace built and solved every update;
- peer "closed form" (m = 1 only): the paper's Theorem 2, as in the reference implementations.

Run from the repository root:  python benchmarks/bench_cpo_solver.py [--updates 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

import cvxpy as cp
import numpy as np

from safe_trpo.algo.cpo import solve_step
from safe_trpo.algo.cpo_closed_form import closed_form_step


def subproblems(rng: np.random.Generator, m: int, count: int) -> list[tuple]:
    """Random (q, r, S, c, delta) from explicit H, g, B (n = 50) that need a solver."""
    out = []
    while len(out) < count:
        n = 50
        M = rng.normal(size=(n, n))
        H = M @ M.T / n + 0.1 * np.eye(n)
        g, B = rng.normal(size=n), rng.normal(size=(n, m))
        delta = float(rng.uniform(0.005, 0.02))
        Hg, HB = np.linalg.solve(H, g), np.linalg.solve(H, B)
        q, r, S = float(g @ Hg), B.T @ Hg, B.T @ HB
        c = rng.uniform(-0.8, 1.3, size=m) * np.sqrt(2 * delta * np.diag(S))
        if np.all(c + np.sqrt(2 * delta / q) * r <= 0):
            continue  # the TRPO step is feasible: no solver runs, nothing to time
        out.append((q, r, S, c, delta))
    return out


def naive_cvxpy(q, r, S, c, delta) -> None:
    """A fresh primal problem in the subspace x = H^-1 [g B] z, built and solved each time."""
    G = np.block([[np.array([[q]]), r[None, :]], [r[:, None], S]])
    w, V = np.linalg.eigh(G)
    F = np.sqrt(np.clip(w, 0, None))[:, None] * V.T
    z = cp.Variable(G.shape[0])
    problem = cp.Problem(
        cp.Maximize(G[0] @ z), [cp.norm(F @ z) <= np.sqrt(2 * delta), G[1:] @ z + c <= 0]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem.solve(solver=cp.CLARABEL)


def timed(fn, args_list) -> np.ndarray:
    ms = []
    for args in args_list:
        start = time.perf_counter()
        fn(*args)
        ms.append(1e3 * (time.perf_counter() - start))
    return np.array(ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300, help="subproblems per m")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{'m':>2} {'method':<34} {'median ms':>10} {'p90 ms':>8} {'vs solve_step':>14}")
    for m in (1, 3):
        probs = subproblems(rng, m, args.updates)
        for p in probs[:5]:  # warm-up: the first call per size compiles the DPP problem
            solve_step(*p)
        steps, total = [], []
        for p in probs:
            start = time.perf_counter()
            steps.append(solve_step(*p))
            total.append(1e3 * (time.perf_counter() - start))
        total = np.array(total)
        rows = [
            ("solve_step (whole call)", total),
            ("  of which cvxpy Problem.solve", np.array([s.solve_time_ms for s in steps])),
            ("naive cvxpy (rebuilt per update)", timed(naive_cvxpy, probs)),
        ]
        if m == 1:
            rows.append((
                "closed form (paper, m = 1)",
                timed(lambda q, r, S, c, d: closed_form_step(q, r[0], S[0, 0], c[0], d), probs),
            ))
        base = np.median(total)
        for name, ms in rows:
            med = np.median(ms)
            print(f"{m:>2} {name:<34} {med:>10.3f} {np.percentile(ms, 90):>8.3f} "
                  f"{med / base:>13.3g}x")
        cases = {case: sum(s.case == case for s in steps) for case in ("feasible", "recovery")}
        polished = np.mean([s.polished for s in steps])
        print(f"   {len(steps)} subproblems: {cases}, polished to exact KKT: {polished:.0%}")
    print("target: median solve_step under 5 ms per update")


if __name__ == "__main__":
    main()
