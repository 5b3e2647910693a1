"""The CPO step: a trust-region step with linearised cost constraints, solved exactly.

At the current policy parameters the CPO update (Achiam et al. 2017, eq. 10) solves

    maximise_x  g^T x   subject to   1/2 x^T H x <= delta,   b_i^T x + c_i <= 0   (i = 1..m)

Sign convention (stated here once; every other module follows it):

- ``g`` is the gradient of the reward surrogate, a quantity to INCREASE.
- ``b_i`` is the gradient of cost surrogate i, a quantity to keep BELOW its limit d_i.
- ``c_i = J_Ci - d_i`` is the constraint margin in per-step units: ``c_i > 0`` means constraint
  i is violated now. ``H`` is the Fisher (KL Hessian), ``delta`` the target KL.
- The inputs are the Gram quantities ``q = g^T H^-1 g``, ``r_i = b_i^T H^-1 g``,
  ``S_ij = b_i^T H^-1 b_j`` (after m + 1 conjugate-gradient solves the problem is exact in
  span{H^-1 g, H^-1 b_i}).
- The Lagrangian ``g^T x - lam (1/2 x^T H x - delta) - nu^T (B^T x + c)`` (lam, nu >= 0) is
  maximised by ``x = (1/lam) H^-1 (g - B nu)``, hence ``alpha = 1/lam`` and ``beta = -nu/lam`` in
  ``x = alpha H^-1 g + sum_i beta_i H^-1 b_i``. The dual, minimised over lam >= 0, nu >= 0, is

      D(lam, nu) = (q - 2 r^T nu + nu^T S nu) / (2 lam) + lam delta - c^T nu.

  The paper's Theorem 2 states the same problem as "minimise g_P^T x s.t. x^T H x <= delta_P";
  its quantities are g_P = -g, r_P = -r, delta_P = 2 delta, and its lambda, nu equal ours
  (`safe_trpo.algo.cpo_closed_form` implements the theorem in the paper's own notation).

The dual is solved in normalised units, which makes every number the solver sees O(1) whatever
the scale of rewards, costs and parameters: g/sqrt(q) and b_i/sqrt(S_ii) have unit H^-1-norm,
the step is x = sqrt(2 delta) y with ||y||_H <= 1, and ``c_hat_i = c_i / sqrt(2 delta S_ii)`` is
the margin in units of the largest change of cost i the trust region allows. The normalised
Gram matrix G = [[1, r_hat^T], [r_hat, S_hat]] is PSD, and with a factor W (W^T W = G) the
numerator of D is ||W [1; -nu]||^2, so D is ``quad_over_lin`` of an affine expression: a DPP
problem whose Parameters (W, c_hat) are refreshed each update. W comes from an eigen-
decomposition with negative eigenvalues clipped, so a singular G is fine.

Order of work: the TRPO step sqrt(2 delta / q) H^-1 g is checked first (no solve); when a
constraint is violated now, the recovery problem below is solved, and its value t* decides
feasibility before the dual is touched (an infeasible primal makes the dual unbounded); then the
dual over the constraints that can bind (c_hat_i > -1). Interior-point answers are accurate only
to about the square root of the tolerance, so both are polished to exact KKT points from the
binding set the solver found (`safe_trpo.algo.cpo_polish`; ``CpoStep.polished``).

Cases (``CpoStep.case``):

- ``"unconstrained"``: the TRPO step satisfies every linearised constraint, so it is optimal
  (nu = 0); with q = 0 and nothing violated, the zero step.
- ``"feasible"``: the linearised problem is feasible and some constraint binds: the dual. If g
  lies in the span of the binding gradients the reward is flat on the binding face: lam = 0 and
  the face's minimum-KL point. With q = 0 every feasible step is optimal: the recovery minimiser.
- ``"recovery"``: the linearised problem is infeasible. The step minimises the worst normalised
  linearised violation max_i (c_hat_i + b_hat_i^T y) over the trust region, which for m = 1 is
  the paper's x = -sqrt(2 delta / s) H^-1 b. Normalising makes it independent of each cost's
  units (like the CPO step itself). It is reported with lam = 0 and nu = -beta, as in the
  paper's recovery x = -nu H^-1 b. Opposed collinear cost gradients can make the minimiser
  non-unique; the solver's (unpolished) point is then taken.
- ``"failed"``: the solver raised, returned a non-optimal status, or (unpolished) a point off by
  more than `RAW_TOL`: no step (alpha = 0, beta = 0), lam and nu are NaN, and ``solver_status``
  says what went wrong. The trainer records it and goes on.

Degenerate inputs: a constraint whose gradient is zero (the trust region cannot move its
linearised cost, see `GRAD_TOL`) is dropped when satisfied (c_i <= 0); when violated no step can
fix it, so the linearised problem is infeasible: its index is listed in ``CpoStep.unfixable``
and the recovery works on the other constraints (a zero step if none can be moved).

The solvers are not thread-safe: each cvxpy Problem is shared per constraint count.
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from safe_trpo.algo.cpo_polish import polish_dual, polish_recovery

# A cost gradient counts as zero when the trust region can move that linearised cost by at most
# this fraction of its margin (a violation of 1e12 trust-region units still gets its recovery).
GRAD_TOL = 1e-13
# Clarabel's defaults, pinned. The answers are polished to exact KKT points afterwards
# (safe_trpo.algo.cpo_polish), so tighter tolerances would only cost "optimal_inaccurate" statuses.
SOLVER_OPTIONS = {"tol_gap_abs": 1e-8, "tol_gap_rel": 1e-8, "tol_feas": 1e-8, "max_iter": 200}
# Without a polish the solver's point is used if its normalised KKT error is below this.
RAW_TOL = 1e-3
ACCEPTED_STATUSES = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
CASES = ("unconstrained", "feasible", "recovery", "failed")


@dataclass(frozen=True, eq=False)
class CpoStep:
    """One solved CPO subproblem; the step is ``x = alpha H^-1 g + H^-1 B beta``."""

    alpha: float  # coefficient of H^-1 g (0 in recovery and failure)
    beta: np.ndarray  # (m,) coefficients of H^-1 b_i
    lam: float  # trust-region multiplier (0 in recovery or on a flat face, NaN when failed)
    nu: np.ndarray  # (m,) constraint multipliers (-beta in recovery, NaN when failed)
    case: str  # one of CASES
    solver_status: str  # cvxpy status, "closed_form" when no solve was needed, or the failure
    solve_time_ms: float  # wall time of the cvxpy solves of this call (0 when none)
    predicted_reward_gain: float  # g^T x
    predicted_cost_change: np.ndarray  # (m,) b_i^T x
    predicted_kl: float  # 1/2 x^T H x <= delta (= delta when the trust region binds)
    unfixable: tuple[int, ...] = ()  # violated constraints with a zero gradient
    polished: bool = False  # refined to an exact KKT point (safe_trpo.algo.cpo_polish)

    def audit_fields(self) -> dict:
        """The ``cpo`` object of an audit ``update`` line (JSON-safe: NaN becomes None)."""

        def num(v: float) -> float | None:
            return float(v) if np.isfinite(v) else None

        return {
            "case": self.case,
            "lambda": num(self.lam),
            "nu": [num(v) for v in self.nu],
            "solver_status": self.solver_status,
            "solve_time_ms": float(self.solve_time_ms),
            "unfixable": list(self.unfixable),
        }


@dataclass(frozen=True)
class _Solved:
    ok: bool
    status: str
    ms: float


def _solve(problem: cp.Problem) -> _Solved:
    """Solve, turning solver errors and non-optimal statuses into a status text, never a raise."""
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # "Solution may be inaccurate" is recorded as the status instead.
            warnings.simplefilter("ignore", UserWarning)
            problem.solve(solver=cp.CLARABEL, **SOLVER_OPTIONS)
    except cp.error.SolverError as err:
        ms = 1e3 * (time.perf_counter() - start)
        return _Solved(False, f"{type(err).__name__}: {err}".splitlines()[0], ms)
    ms = 1e3 * (time.perf_counter() - start)
    return _Solved(problem.status in ACCEPTED_STATUSES, str(problem.status), ms)


class CpoDualSolver:
    """The normalised CPO dual for k constraints: a cvxpy Problem built once, re-solved per update.

    Minimises ``||w_g - W_b nu||^2 / (2 lam) + lam / 2 - c_hat^T nu`` over lam, nu >= 0, where
    ``[w_g, W_b]`` is a factor of the normalised Gram matrix (see the module docstring).
    """

    def __init__(self, k: int):
        self.k = k
        self.lam = cp.Variable(nonneg=True, name="lam")
        self.nu = cp.Variable(k, nonneg=True, name="nu")
        self.factor_g = cp.Parameter(k + 1, name="factor_g")
        self.factor_b = cp.Parameter((k + 1, k), name="factor_b")
        self.margin = cp.Parameter(k, name="c_hat")
        residual = self.factor_g - self.factor_b @ self.nu
        dual = 0.5 * cp.quad_over_lin(residual, self.lam) + 0.5 * self.lam - self.margin @ self.nu
        self.problem = cp.Problem(cp.Minimize(dual))

    def solve(self, factor: np.ndarray, c_hat: np.ndarray) -> tuple[_Solved, float, np.ndarray]:
        """Solve for a Gram factor (k+1, k+1) and margins c_hat (k,): (outcome, lam, nu)."""
        self.factor_g.value = factor[:, 0]
        self.factor_b.value = factor[:, 1:]
        self.margin.value = c_hat
        out = _solve(self.problem)
        if not out.ok:
            return out, np.nan, np.full(self.k, np.nan)
        lam, nu = float(self.lam.value), np.maximum(np.asarray(self.nu.value, float), 0.0)
        if not (np.isfinite(lam) and lam >= 0 and np.all(np.isfinite(nu))):
            return _Solved(False, f"{out.status} but lam = {lam!r}", out.ms), np.nan, nu
        return out, lam, nu


class RecoverySolver:
    """min_y max_i (c_hat_i + b_hat_i^T y) s.t. ||y||_H <= 1, over y = H^-1 B_hat beta (k terms).

    Its optimal value t* decides feasibility (t* <= 0 iff the linearised problem is feasible).
    """

    def __init__(self, k: int):
        self.k = k
        self.beta = cp.Variable(k, name="beta")
        self.worst = cp.Variable(name="t")
        self.gram = cp.Parameter((k, k), name="S_hat")
        self.factor = cp.Parameter((k, k), name="factor_S")
        self.margin = cp.Parameter(k, name="c_hat")
        constraints = [
            self.gram @ self.beta + self.margin <= self.worst,
            cp.norm(self.factor @ self.beta, 2) <= 1.0,
        ]
        self.problem = cp.Problem(cp.Minimize(self.worst), constraints)

    def solve(
        self, factor: np.ndarray, c_hat: np.ndarray
    ) -> tuple[_Solved, np.ndarray, np.ndarray]:
        """Solve for a factor of S_hat (k, k) and margins c_hat (k,).

        Returns (outcome, beta_hat, weights): weights are the multipliers of the k max-terms
        (they sum to 1; positive on the terms that attain the maximum).
        """
        self.factor.value = factor
        self.gram.value = factor.T @ factor
        self.margin.value = c_hat
        out = _solve(self.problem)
        if not out.ok:
            return out, np.full(self.k, np.nan), np.full(self.k, np.nan)
        weights = np.asarray(self.problem.constraints[0].dual_value, float)
        return out, np.asarray(self.beta.value, float), weights


@functools.lru_cache(maxsize=32)
def _dual_solver(k: int) -> CpoDualSolver:
    return CpoDualSolver(k)


@functools.lru_cache(maxsize=32)
def _recovery_solver(k: int) -> RecoverySolver:
    return RecoverySolver(k)


def _gram_factor(gram: np.ndarray) -> np.ndarray:
    """W with W^T W = gram, negative eigenvalues (rounding, inexact CG) clipped to zero."""
    eigval, eigvec = np.linalg.eigh(0.5 * (gram + gram.T))
    return np.sqrt(np.clip(eigval, 0.0, None))[:, None] * eigvec.T


def _validated(q, r, S, c, delta) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, float]:
    c = np.atleast_1d(np.asarray(c, dtype=float))
    m = c.shape[0]
    r = np.atleast_1d(np.asarray(r, dtype=float))
    S = np.asarray(S, dtype=float).reshape((1, 1)) if np.ndim(S) == 0 else np.asarray(S, float)
    q, delta = float(q), float(delta)
    for name, value, shape in (("c", c, (m,)), ("r", r, (m,)), ("S", S, (m, m))):
        if value.shape != shape:
            raise ValueError(f"solve_step: {name}: expected shape {shape}, got {value.shape}")
    for name, value in (("q", q), ("r", r), ("S", S), ("c", c), ("delta", delta)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"solve_step: {name}: expected finite values, got {value!r}")
    if not delta > 0:
        raise ValueError(f"solve_step: delta: expected a target KL > 0, got {delta!r}")
    if q < 0 or np.any(np.diag(S) < 0):
        raise ValueError("solve_step: q and diag(S) are squared H^-1-norms: expected >= 0")
    return q, r, 0.5 * (S + S.T), c, delta


@dataclass(frozen=True, eq=False)
class _Problem:
    """The validated inputs and their normalised form (see the module docstring)."""

    q: float
    r: np.ndarray
    S: np.ndarray
    c: np.ndarray
    delta: float
    gram_hat: np.ndarray  # (m+1, m+1) Gram of [g/sqrt(q), b_i/sqrt(S_ii)] (rows of zeros kept)
    c_hat: np.ndarray  # (m,) c_i / sqrt(2 delta S_ii); +inf / -inf for a zero gradient

    @classmethod
    def of(cls, q, r, S, c, delta) -> _Problem:
        q, r, S, c, delta = _validated(q, r, S, c, delta)
        s = np.diag(S)
        reach = np.sqrt(2.0 * delta * s)  # largest change of each linearised cost in the region
        live = reach > GRAD_TOL * np.abs(c)
        c_hat = np.where(c > 0, np.inf, -np.inf)
        c_hat[live] = c[live] / reach[live]
        scale = np.sqrt(np.concatenate([[q], s]))
        scale[scale == 0] = 1.0
        gram = np.block([[np.array([[q]]), r[None, :]], [r[:, None], S]])
        return cls(q, r, S, c, delta, gram / np.outer(scale, scale), c_hat)

    @property
    def reward_flat(self) -> bool:
        # Below the smallest normal float, sqrt(2 delta / q) overflows: g counts as zero.
        return self.q <= np.finfo(float).tiny

    @property
    def unfixable(self) -> np.ndarray:
        return np.isposinf(self.c_hat)

    def result(self, alpha, beta, lam, nu, case, status="closed_form", ms=0.0, polished=False):
        """A CpoStep with its first-order predictions. Its KL 1/2 z^T G z is taken in extended
        precision (a nearly cancelling z loses ~eps ||z||^2) and never exceeds delta."""
        beta, nu = np.array(beta, dtype=float), np.array(nu, dtype=float)  # own, read-only copies
        wide = np.longdouble
        z = np.concatenate([[alpha], beta]).astype(wide)
        gram = np.block([[np.array([[self.q]]), self.r[None, :]], [self.r[:, None], self.S]])
        kl = float(0.5 * (z @ gram.astype(wide) @ z))
        if kl > self.delta * (1 + 1e-12):
            shrink = float(np.sqrt(wide(self.delta) / wide(kl)))
            alpha, beta, kl = alpha * shrink, beta * shrink, self.delta
        cost_change = alpha * self.r + self.S @ beta
        gain = alpha * self.q + beta @ self.r
        beta.setflags(write=False)
        nu.setflags(write=False)
        cost_change.setflags(write=False)
        unfixable = tuple(int(i) for i in np.flatnonzero(self.unfixable))
        return CpoStep(float(alpha), beta, float(lam), nu, case, status, float(ms), float(gain),
                       cost_change, float(kl), unfixable, polished)

    def failed(self, status: str, ms: float) -> CpoStep:
        m = self.c.shape[0]
        return self.result(0.0, np.zeros(m), np.nan, np.full(m, np.nan), "failed", status, ms)


def solve_step(q: float, r, S, c, delta: float) -> CpoStep:
    """Solve the CPO subproblem from its Gram quantities (sign convention: module docstring).

    Args:
        q: g^T H^-1 g >= 0, g the reward-surrogate gradient (to increase).
        r: (m,) b_i^T H^-1 g, b_i the gradient of cost surrogate i (to keep below its limit).
        S: (m, m) b_i^T H^-1 b_j, symmetric PSD up to CG error (singular is fine).
        c: (m,) margins J_Ci - d_i in per-step surrogate units; > 0 means violated now.
        delta: target KL of the step (> 0, usually 0.001 .. 0.05).

    Returns:
        A CpoStep. Degenerate inputs and solver failures give a defined result (case "failed"
        for the latter), never an exception; wrong shapes, non-finite values, delta <= 0 and
        negative q or S_ii raise ValueError. With v = H^-1 g and W = H^-1 B from CG (columns
        H^-1 b_i), the step is ``x = step.alpha * v + W @ step.beta``.
    """
    p = _Problem.of(q, r, S, c, delta)
    zeros = np.zeros_like(p.c)
    if not p.reward_flat and not p.unfixable.any():
        alpha = np.sqrt(2.0 * p.delta / p.q)
        # The second test only matters when CG error in r makes a step that no constraint can
        # reach (all c_hat <= -1) look infeasible.
        if np.all(p.c + alpha * p.r <= 0) or np.all(p.c_hat <= -1):
            return p.result(alpha, zeros, 1.0 / alpha, zeros, "unconstrained")
    if np.all(p.c_hat <= 0):  # the zero step is feasible: no recovery needed
        if p.reward_flat:
            return p.result(0.0, zeros, 0.0, zeros, "unconstrained")
        return _dual_step(p, prior_status=cp.OPTIMAL, prior_ms=0.0)
    recovered, out = _recovery_step(p)
    if recovered is not None:
        return recovered
    return _dual_step(p, prior_status=out.status, prior_ms=out.ms)


def _recovery_step(p: _Problem) -> tuple[CpoStep | None, _Solved]:
    """Solve the recovery problem; return its step unless the dual should be solved instead."""
    m = p.c.shape[0]
    live = np.flatnonzero(np.isfinite(p.c_hat))
    if live.size == 0:  # nothing any step can move: stand still
        return p.result(0.0, np.zeros(m), 0.0, np.zeros(m), "recovery"), _Solved(True, "", 0.0)
    # In the trust region a term moves by at most 1: one over 2 below the largest never attains
    # the max. Subtracting the largest keeps the numbers O(1) (else margins of 1e8+ units drown
    # the O(1) step, which came back up to 4096x too long).
    shift = float(np.max(p.c_hat[live]))
    live = live[p.c_hat[live] - shift > -2.0]
    gram, c_rel = p.gram_hat[np.ix_(1 + live, 1 + live)], p.c_hat[live] - shift
    out, beta_hat, weights = _recovery_solver(live.size).solve(_gram_factor(gram), c_rel)
    if not out.ok:
        return p.failed(f"recovery: {out.status}", out.ms), out
    polished = polish_recovery(gram, c_rel, weights)
    if polished is not None:
        beta_hat = polished
    else:
        beta_hat = beta_hat / max(1.0, np.sqrt(max(beta_hat @ gram @ beta_hat, 0.0)))
    worst = float(np.max(gram @ beta_hat + c_rel)) + shift
    infeasible = bool(p.unfixable.any()) or worst > 0
    if not (infeasible or p.reward_flat):
        return None, out
    beta = np.zeros(m)
    beta[live] = np.sqrt(2.0 * p.delta / np.diag(p.S)[live]) * beta_hat
    case = "recovery" if infeasible else "feasible"
    step = p.result(0.0, beta, 0.0, -beta, case, out.status, out.ms, polished is not None)
    return step, out


def _dual_step(p: _Problem, prior_status: str, prior_ms: float) -> CpoStep:
    """Solve the dual over the constraints that can bind inside the trust region."""
    m = p.c.shape[0]
    keep = np.flatnonzero(p.c_hat > -1)  # c_hat <= -1: never binds; +inf never reaches here
    rows = np.concatenate([[0], 1 + keep])
    gram = p.gram_hat[np.ix_(rows, rows)]
    out, lam_hat, nu_hat = _dual_solver(keep.size).solve(_gram_factor(gram), p.c_hat[keep])
    ms = prior_ms + out.ms
    if not out.ok:
        return p.failed(f"dual: {out.status}", ms)
    polished = polish_dual(gram, p.c_hat[keep], lam_hat, nu_hat)
    if polished is not None:  # (``_Problem.result`` keeps any step inside the trust region)
        z, lam_hat, nu_hat = polished
    else:
        z = np.concatenate([[1.0], -nu_hat]) / max(lam_hat, np.finfo(float).tiny)
        z /= max(1.0, np.sqrt(max(z @ gram @ z, 0.0)))  # never outside the trust region
        if not np.all(gram[1:] @ z + p.c_hat[keep] <= RAW_TOL):
            return p.failed(f"dual: {out.status} but the step fails the KKT check", ms)
    # Undo the normalisation: y = z[0] H^-1 g_hat + ..., x = sqrt(2 delta) y.
    alpha = np.sqrt(2.0 * p.delta / p.q) * z[0]
    beta, nu = np.zeros(m), np.zeros(m)
    beta[keep] = np.sqrt(2.0 * p.delta / np.diag(p.S)[keep]) * z[1:]
    nu[keep] = nu_hat * np.sqrt(p.q / np.diag(p.S)[keep])
    lam = lam_hat * np.sqrt(p.q / (2.0 * p.delta))
    inaccurate = cp.OPTIMAL_INACCURATE in (prior_status, out.status)
    status = cp.OPTIMAL_INACCURATE if inaccurate else out.status
    return p.result(alpha, beta, lam, nu, "feasible", status, ms, polished is not None)
