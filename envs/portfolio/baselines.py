"""The strategies a quant would otherwise use, as target-weight rules for the backtester.

Each baseline decides the target weights (A+1,), cash last, at the close of day ``t`` from a
:class:`Decision`, which holds only prices up to and including ``t`` (no look-ahead by
construction). All are long-only and fully invested (no cash).

- ``equal-weight``: ``1/A`` in each asset, rebalanced every day.
- ``buy-and-hold``: ``1/A`` in each asset on the first day, then never traded.
- ``min-variance``: ``min w' S w`` with ``S`` the sample covariance of the last ``lookback``
  daily simple returns.
- ``mean-variance``: ``max m'w - (risk_aversion / 2) w' S w`` with ``m`` the mean of the same
  returns; both annualised (x252), so ``risk_aversion`` is the usual annual coefficient (2-10).

The two optimisers re-estimate and trade every ``rebalance_every`` days (the first day included)
and let positions drift in between. Each builds its cvxpy problem once with Parameters (DPP) and
re-solves it. A failed solve keeps the previous target weights (equal weight if none yet) and is
counted in ``solver_failures``, never raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from envs.portfolio.accounting import TRADING_DAYS
from safe_trpo.errors import UserError

BASELINE_NAMES = ("equal-weight", "buy-and-hold", "min-variance", "mean-variance")


@dataclass(frozen=True)
class Decision:
    """What a strategy may see at the close of day ``step`` of a backtest."""

    step: int  # days since the backtest started (0 = the initial allocation from cash)
    history: np.ndarray  # (k, A) closes up to and including today, oldest first
    drifted: np.ndarray  # (A+1,) weights held now, before trading (cash last)
    obs: np.ndarray  # the environment's observation (used by trained policies)


def _equal(n_assets: int) -> np.ndarray:
    return np.append(np.full(n_assets, 1.0 / n_assets), 0.0)


class EqualWeight:
    """1/A in each asset, rebalanced daily."""

    name = "equal-weight"
    lookback = 1
    solver_failures = 0

    def target_weights(self, d: Decision) -> np.ndarray:
        return _equal(d.history.shape[1])


class BuyAndHold:
    """1/A in each asset on the first day, then hold (target = the drifted weights)."""

    name = "buy-and-hold"
    lookback = 1
    solver_failures = 0

    def target_weights(self, d: Decision) -> np.ndarray:
        return _equal(d.history.shape[1]) if d.step == 0 else d.drifted.copy()


class _Optimised:
    """Shared rolling re-estimation and failure handling of the two cvxpy baselines."""

    name = ""

    def __init__(self, n_assets: int, lookback: int, rebalance_every: int) -> None:
        if lookback < 2 or rebalance_every < 1:
            raise UserError(f"{self.name}: expected lookback >= 2 and rebalance_every >= 1, "
                            f"got {lookback} and {rebalance_every}")
        self.lookback = lookback + 1  # closes needed for `lookback` returns
        self.rebalance_every = rebalance_every
        self.solver_failures = 0
        self._last: np.ndarray | None = None
        self.w = cp.Variable(n_assets, nonneg=True)
        # Risk as ||F w||^2 with F = centred returns / sqrt(n-1): a DPP-compliant way of writing
        # w' S w, so the problem compiles once and only F (and the mean) change.
        self.factor = cp.Parameter((lookback, n_assets))
        self.problem = self._build()

    def _build(self) -> cp.Problem:
        raise NotImplementedError

    def target_weights(self, d: Decision) -> np.ndarray:
        if d.step % self.rebalance_every != 0:
            return d.drifted.copy()
        prices = d.history[-self.lookback:]
        if len(prices) < self.lookback:
            raise UserError(f"{self.name}: needs {self.lookback} closes of history before the "
                            f"first backtest day, got {len(prices)}")
        returns = prices[1:] / prices[:-1] - 1.0
        w = self._solve(returns)
        if w is None:
            self.solver_failures += 1
            return self._last if self._last is not None else _equal(returns.shape[1])
        self._last = np.append(w, 0.0)
        return self._last.copy()

    def _solve(self, returns: np.ndarray) -> np.ndarray | None:
        centred = returns - returns.mean(axis=0)
        self.factor.value = centred * math.sqrt(TRADING_DAYS / (len(returns) - 1))
        self._set_mean(returns)
        try:
            self.problem.solve(solver=cp.CLARABEL)
        except cp.SolverError:
            return None
        w = self.w.value
        if self.problem.status != cp.OPTIMAL or w is None or not np.all(np.isfinite(w)):
            return None
        # Interior-point solutions sit ~1e-9 off the bounds; project back onto the simplex.
        w = np.clip(w, 0.0, None)
        return w / w.sum()

    def _set_mean(self, returns: np.ndarray) -> None:
        """Set any further parameters from the window's returns (mean-variance)."""


class MinVariance(_Optimised):
    """Long-only minimum-variance portfolio on a rolling covariance estimate."""

    name = "min-variance"

    def __init__(self, n_assets: int, lookback: int = 60, rebalance_every: int = 5) -> None:
        super().__init__(n_assets, lookback, rebalance_every)

    def _build(self) -> cp.Problem:
        return cp.Problem(cp.Minimize(cp.sum_squares(self.factor @ self.w)),
                          [cp.sum(self.w) == 1])


class MeanVariance(_Optimised):
    """Long-only Markowitz portfolio: maximise mean - risk_aversion/2 * variance (annualised)."""

    name = "mean-variance"

    def __init__(self, n_assets: int, lookback: int = 60, rebalance_every: int = 5,
                 risk_aversion: float = 5.0) -> None:
        self.mean = cp.Parameter(n_assets)
        self.risk_aversion = risk_aversion
        super().__init__(n_assets, lookback, rebalance_every)

    def _build(self) -> cp.Problem:
        risk = cp.sum_squares(self.factor @ self.w)
        return cp.Problem(cp.Maximize(self.mean @ self.w - 0.5 * self.risk_aversion * risk),
                          [cp.sum(self.w) == 1])

    def _set_mean(self, returns: np.ndarray) -> None:
        self.mean.value = returns.mean(axis=0) * TRADING_DAYS


def make_baseline(name: str, n_assets: int) -> EqualWeight | BuyAndHold | MinVariance | \
        MeanVariance:
    """A fresh baseline (state reset) by its command-line name, one of ``BASELINE_NAMES``."""
    if name == "equal-weight":
        return EqualWeight()
    if name == "buy-and-hold":
        return BuyAndHold()
    if name == "min-variance":
        return MinVariance(n_assets)
    if name == "mean-variance":
        return MeanVariance(n_assets)
    raise UserError(f"unknown baseline '{name}', expected one of {', '.join(BASELINE_NAMES)}")
