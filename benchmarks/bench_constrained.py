"""CPO vs TRPO-Lagrangian (and unconstrained TRPO for reference) over several seeds.

For each algorithm and seed: final return and final episode cost per constraint (means over the
last ``--last`` updates' batches), and how many updates' batches violated a limit; then the
median per algorithm, and the median cvxpy solve time per CPO update from the audit rows.

    python benchmarks/bench_constrained.py --scenario scenarios/speed_limit_cpo.toml --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from safe_trpo.config import load_scenario
from safe_trpo.record.audit import read_lines
from safe_trpo.run.trainer import start_run

ROOT = Path(__file__).resolve().parents[1]


def one_run(scenario_path: Path, algo: str, seed: int, steps: int | None, out: Path,
            last: int) -> dict:
    overrides = [f"algo.name={algo!r}", f"run.seed={seed}", f"run.out_dir={str(out)!r}"]
    if steps:
        overrides.append(f"algo.total_steps={steps}")
    outcome = start_run(load_scenario(scenario_path, overrides), progress=False)
    rows = [ln for ln in read_lines(outcome.run_dir) if ln["type"] == "update"]
    tail = rows[-last:]
    names = [c["name"] for c in rows[0]["constraints"]]
    costs = {n: float(np.mean([r["constraints"][j]["ep_cost"] for r in tail
                               if r["constraints"][j]["ep_cost"] is not None]))
             for j, n in enumerate(names)}
    limits = {c["name"]: c["limit"] for c in rows[0]["constraints"]}
    violating = sum(any(c["violated"] for c in r["constraints"]) for r in rows)
    solve_ms = [r["cpo"]["solve_time_ms"] for r in rows if r.get("cpo")]
    return {"return": float(np.mean([r["return_mean"] for r in tail
                                     if r["return_mean"] is not None])),
            "costs": costs, "limits": limits, "violating": violating, "updates": len(rows),
            "solve_ms": solve_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path,
                        default=ROOT / "scenarios" / "speed_limit_cpo.toml")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, help="override [algo] total_steps")
    parser.add_argument("--last", type=int, default=5, help="updates averaged for 'final'")
    parser.add_argument("--algos", default="cpo,trpo-lag,trpo")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos.split(","):
            for seed in range(args.seeds):
                res = one_run(args.scenario, algo, seed, args.steps, Path(tmp), args.last)
                results.setdefault(algo, []).append(res)
                costs = ", ".join(f"{n} {v:.2f}/{res['limits'][n]:g}"
                                  for n, v in res["costs"].items())
                print(f"{algo:9} seed {seed}: return {res['return']:9.2f}  final cost {costs}  "
                      f"violating updates {res['violating']}/{res['updates']}")
    print(f"\n{args.scenario.name}: medians over {args.seeds} seeds (final = mean of the last "
          f"{args.last} updates)")
    for algo, runs in results.items():
        names = list(runs[0]["costs"])
        costs = ", ".join(f"{n} {statistics.median(r['costs'][n] for r in runs):.2f}/"
                          f"{runs[0]['limits'][n]:g}" for n in names)
        line = (f"{algo:9} return {statistics.median(r['return'] for r in runs):9.2f}  "
                f"cost {costs}  violating updates "
                f"{statistics.median(r['violating'] for r in runs):.0f}/{runs[0]['updates']}")
        solve = [ms for r in runs for ms in r["solve_ms"]]
        if solve:
            line += f"  median cvxpy solve {statistics.median(solve):.2f} ms"
        print(line)


if __name__ == "__main__":
    main()
