"""Constrained policy steps: CPO (Achiam et al. 2017) and the TRPO-Lagrangian baseline.

CPO. With g the gradient of the reward surrogate, b_i the gradient of cost surrogate i
(mean(ratio * A_Ci), centred cost advantages) and H the Fisher, the step maximises g^T x subject
to 1/2 x^T H x <= delta and b_i^T x + c_i <= 0. Here c_i is constraint i's margin in per-step
units, the same units as the cost surrogate: c_i = mean per-step cost of the batch minus
limit_i / horizon, where horizon is the mean episode length. (The episode cost J_Ci changes by
about horizon * b_i^T x for a step x, so b_i^T x + c_i <= 0 keeps the projected episode cost
under limit_i.) The m+1 CG solves reduce the problem to q, r, S, which
``safe_trpo.algo.cpo.solve_step`` solves exactly; the line search then accepts a trial only if its
measured KL is <= delta, each cost surrogate rises by at most max(-c_i, 0), and, when every
constraint is satisfied now (all c_i <= 0), the reward surrogate improves (the CPO reference
code's rule: a violated constraint is fixed even at a cost in reward). A rejected step records
why (``LineSearchResult.reason``).

TRPO-Lagrangian (Ray et al. 2019). One multiplier nu_i >= 0 per constraint, raised when the
batch's mean episode cost exceeds the limit and lowered otherwise; the policy takes a TRPO step
on the penalised advantage (A_R - sum_i nu_i A_Ci) / (1 + sum_i nu_i).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from safe_trpo.algo.networks import Policy
from safe_trpo.algo.trpo import (
    LineSearchResult,
    PolicyBatch,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    line_search,
    no_step,
    rejection,
    surrogate,
)

if TYPE_CHECKING:
    from safe_trpo.algo.cpo import CpoStep


@dataclass(frozen=True)
class CpoUpdate:
    search: LineSearchResult
    solution: CpoStep


def cpo_step(policy: Policy, batch: PolicyBatch, reward_adv: torch.Tensor,
             cost_advs: torch.Tensor, margins: np.ndarray, target_kl: float, cg_iters: int,
             cg_damping: float, backtrack_iters: int, backtrack_coeff: float) -> CpoUpdate:
    """One CPO update of ``policy`` in place. ``cost_advs`` has shape (m, batch)."""
    m = cost_advs.shape[0]
    reward_old = surrogate(policy, batch, reward_adv)
    g = flat_grad(reward_old, policy, retain_graph=True)
    cost_old = [surrogate(policy, batch, cost_advs[i]) for i in range(m)]
    b = torch.stack([flat_grad(c, policy) for c in cost_old])  # (m, n_params)
    fvp = fisher_vector_product(policy, batch, cg_damping)
    hinv_g = conjugate_gradient(fvp, g, cg_iters)
    hinv_b = torch.stack([conjugate_gradient(fvp, b[i], cg_iters) for i in range(m)])
    q = float(g @ hinv_g)
    r = (b @ hinv_g).double().numpy()
    s = (b @ hinv_b.T).double().numpy()
    s = 0.5 * (s + s.T)  # CG solves are approximate; the solver expects a symmetric S
    solution = _solve_or_fail(q, r, s, np.asarray(margins, dtype=np.float64), target_kl)
    beta = torch.tensor(np.array(solution.beta, dtype=np.float64), dtype=g.dtype)
    full_step = solution.alpha * hinv_g + beta @ hinv_b
    if solution.case == "failed" or not torch.isfinite(full_step).all() or \
            not full_step.abs().sum() > 0:
        return CpoUpdate(no_step(), solution)

    reward_old_v = float(reward_old.detach())
    cost_old_v = np.array([float(c.detach()) for c in cost_old])
    margins = np.asarray(margins, dtype=np.float64)
    allowed = np.maximum(-margins, 0.0)
    # The rule of the CPO reference code: only a policy that satisfies every constraint now
    # must also improve the reward. When one is violated, a step that lowers its cost is worth
    # taking even at some reward: demanding both rejected every such step where reward and cost
    # conflict, and left the policy over its limit.
    must_improve = bool(np.all(margins <= 0))
    tolerance = 1e-6 * cost_advs.abs().mean(1).double().numpy()

    def accept(kl: float) -> tuple[str | None, float]:
        with torch.no_grad():
            improvement = float(surrogate(policy, batch, reward_adv)) - reward_old_v
            cost_change = np.array([float(surrogate(policy, batch, cost_advs[i]))
                                    for i in range(m)]) - cost_old_v
        # A violated cost (c_i >= 0) may not rise at all; one with slack may use it. The
        # tolerance is float32 rounding of the surrogate, in the cost's own units.
        cost_ok = bool(np.all(cost_change <= allowed + tolerance))
        reason = rejection(kl, target_kl, improvement, must_improve, cost_ok,
                           finite=bool(np.all(np.isfinite(cost_change))))
        return reason, improvement

    search = line_search(policy, batch, full_step, accept, backtrack_iters, backtrack_coeff)
    return CpoUpdate(search, solution)


def _solve_or_fail(q: float, r: np.ndarray, s: np.ndarray, c: np.ndarray, delta: float
                   ) -> CpoStep:
    """``solve_step``, with inexact CG output turned into a recorded failure, not a crash.

    q and diag(S) are squared norms; float32 CG can leave them a hair below zero, which is
    rounding and is clipped. Anything non-finite, or clearly negative, means the CG solves broke
    down: no step is taken and the row says why.
    """
    # cvxpy (about a second of imports) loads with the first CPO step, never in a TRPO run.
    from safe_trpo.algo.cpo import CpoStep, solve_step

    m = len(c)
    scale = max(abs(q), float(np.abs(np.diag(s)).max(initial=0.0)), 1e-30)
    finite = np.isfinite(q) and np.all(np.isfinite(r)) and np.all(np.isfinite(s)) \
        and np.all(np.isfinite(c))
    if finite and q >= -1e-6 * scale and np.all(np.diag(s) >= -1e-6 * scale):
        q = max(q, 0.0)
        s = s.copy()
        np.fill_diagonal(s, np.maximum(np.diag(s), 0.0))
        return solve_step(q, r, s, c, delta)
    return CpoStep(alpha=0.0, beta=np.zeros(m), lam=float("nan"), nu=np.full(m, np.nan),
                   case="failed", solver_status="conjugate-gradient output not finite or not "
                   "positive (no step taken)", solve_time_ms=0.0, predicted_reward_gain=0.0,
                   predicted_cost_change=np.zeros(m), predicted_kl=0.0)


def per_step_margins(step_costs: np.ndarray, limits: np.ndarray,
                     horizon: float | np.ndarray) -> np.ndarray:
    """c_i = mean per-step cost - limit_i / horizon_i (see module docstring); ``horizon`` is
    one episode length or one per constraint."""
    return step_costs.reshape(-1, len(limits)).mean(0) - limits / horizon


def update_multipliers(nu: np.ndarray, ep_costs: np.ndarray | None, limits: np.ndarray,
                       lr: float) -> np.ndarray:
    """Projected gradient ascent on the Lagrangian: nu += lr * (episode cost - limit), nu >= 0.

    Without a finished episode in the batch there is no episode-cost estimate, so the
    multipliers are left unchanged rather than fed a guess.
    """
    if ep_costs is None:
        return nu
    return np.maximum(nu + lr * (ep_costs - limits), 0.0)


def lagrangian_advantages(reward_adv: torch.Tensor, cost_advs: torch.Tensor,
                          nu: np.ndarray) -> torch.Tensor:
    """(A_R - sum_i nu_i A_Ci) / (1 + sum_i nu_i): the scale stays that of A_R as nu grows."""
    weights = torch.as_tensor(nu, dtype=reward_adv.dtype)
    return (reward_adv - weights @ cost_advs) / (1.0 + weights.sum())
