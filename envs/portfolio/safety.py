"""Safety layer: hard concentration and turnover caps by projecting target weights (cvxpy).

Limits that must never break are not left to the learned policy: before a trade fills, its
target weights ``v`` are replaced by the closest allowed weights,

    min_w ||w - v||^2   s.t.  w >= 0,  sum(w) = 1,  w_i <= concentration_cap (assets, not cash),
                              w_i = 0 where the asset cannot be held (unlisted / delisting),
                              sum_i |w_i - d_i| <= turnover_cap + forced

with ``d`` the drifted weights held before the trade and ``forced`` the turnover of the forced
sales of delisted stocks (which no cap can refuse). The problem is built once with Parameters
(DPP) and solved only when ``v`` breaks a cap, so a compliant policy pays nothing. Each changed
target is an *intervention*, counted in ``info["safety_interventions"]`` and in the backtest
record. When both caps cannot hold at once (drift pushed an asset above the concentration cap
further than the turnover cap allows to trade back), the concentration cap wins and the case is
counted in ``info["safety_infeasible"]``. Drawdown and CVaR are not hard limits: they depend on
future prices and stay CPO constraints.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

TOL = 1e-9


class Projection:
    """The projection problem for ``n_assets`` assets plus cash (built once, re-solved)."""

    def __init__(self, n_assets: int, concentration_cap: float | None,
                 turnover_cap: float | None) -> None:
        """Parameters: n_assets (A); each cap as in the env config (None = not enforced)."""
        self.concentration_cap, self.turnover_cap = concentration_cap, turnover_cap
        self.w = cp.Variable(n_assets + 1, nonneg=True)
        self.target = cp.Parameter(n_assets + 1)
        self.drifted = cp.Parameter(n_assets + 1)
        self.upper = cp.Parameter(n_assets + 1, nonneg=True)
        self.budget = cp.Parameter(nonneg=True)
        base = [cp.sum(self.w) == 1, self.w <= self.upper]
        objective = cp.Minimize(cp.sum_squares(self.w - self.target))
        self.with_turnover = cp.Problem(objective, base + [
            cp.sum(cp.abs(self.w[:-1] - self.drifted[:-1])) <= self.budget])
        self.without_turnover = cp.Problem(objective, base)

    def violates(self, target: np.ndarray, drifted: np.ndarray, holdable: np.ndarray) -> bool:
        """Whether ``target`` (A+1,) breaks a cap given ``drifted`` (A+1,) and ``holdable`` (A,)."""
        assets = target[:-1]
        if self.concentration_cap is not None and assets.max() > self.concentration_cap + TOL:
            return True
        if self.turnover_cap is not None:
            forced = drifted[:-1][~holdable].sum()
            if np.abs(assets - drifted[:-1]).sum() > self.turnover_cap + forced + TOL:
                return True
        return False

    def project(self, target: np.ndarray, drifted: np.ndarray,
                holdable: np.ndarray) -> tuple[np.ndarray, bool]:
        """(allowed weights closest to ``target``, whether the caps could not all hold)."""
        upper = np.ones_like(target)
        upper[:-1] = np.where(holdable, 1.0 if self.concentration_cap is None
                              else self.concentration_cap, 0.0)
        self.target.value, self.drifted.value, self.upper.value = target, drifted, upper
        infeasible = False
        if self.turnover_cap is not None:
            self.budget.value = self.turnover_cap + float(drifted[:-1][~holdable].sum())
            w = _solve(self.with_turnover, self.w, upper)
            if w is not None:
                return w, False
            infeasible = True
        w = _solve(self.without_turnover, self.w, upper)
        if w is None:  # cannot happen (cash is uncapped) unless the solver fails: stay in cash
            w = np.zeros_like(target)
            w[-1] = 1.0
        return w, infeasible


def _solve(problem: cp.Problem, var: cp.Variable, upper: np.ndarray) -> np.ndarray | None:
    try:
        problem.solve(solver=cp.CLARABEL)
    except cp.SolverError:
        return None
    if problem.status != cp.OPTIMAL or var.value is None:
        return None
    # Interior-point solutions sit ~1e-9 off the bounds: clip to them exactly (a cap must not
    # read 0.4000000001) and settle the rounding in cash, which has no cap.
    w = np.clip(var.value, 0.0, upper)
    w[-1] = max(0.0, 1.0 - w[:-1].sum())
    return w / w.sum()
