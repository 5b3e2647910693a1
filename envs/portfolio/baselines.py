"""The strategies a quant would otherwise use, as target-weight rules for the backtester.

Each baseline decides the target weights (A+1,), cash last, at the close of day ``t`` from a
:class:`Decision`, which holds only prices up to and including ``t`` (no look-ahead by
construction), or None for "no order today"; an order fills ``execution_lag_days`` later like
any other (so "hold" must be None, not today's drifted weights, which a lagged fill would turn
into a trade back to a stale allocation). All are
long-only, fully invested (no cash, no leverage, weights in [0, 1]) and trade only tickers that
can be held today (point-in-time universe). The estimating baselines use only tickers listed on
every one of the last ``lookback + 1`` closes ("eligible"); with fewer than two eligible they
hold equal weights over the holdable tickers. Every rule is stated by :meth:`describe`.

- ``equal-weight``: ``1/n`` over the holdable tickers; rebalanced on the first day and whenever
  a weight drifts more than ``band`` (relative, 0.2 = 20 % of 1/n) from its target or the
  holdable set changes; ``band = 0`` rebalances daily.
- ``buy-and-hold``: ``1/n`` on the first day, then never traded (delisted names are sold and the
  proceeds spread over the rest by the simulator).
- ``inverse-vol``: ``w_i`` proportional to ``1 / sigma_i``, sample volatility of the last
  ``lookback`` daily returns.
- ``risk-parity``: equal risk contribution, ``w_i (S w)_i = w_j (S w)_j``, solved exactly by
  cyclical coordinate descent (Griveau-Billion, Richard and Roncalli 2013) on the Ledoit-Wolf
  covariance ``S``.
- ``min-variance``: ``min w'Sw`` with ``S`` the Ledoit-Wolf shrunk covariance
  (:func:`ledoit_wolf`, shrinkage towards a scaled identity; equal to scikit-learn's
  ``sklearn.covariance.ledoit_wolf``, checked in the tests) of the last
  ``lookback`` daily simple returns.
- ``mean-variance``: ``max m'w - (risk_aversion / 2) w'Sw`` with ``m`` the sample mean of the same
  returns and the same ``S``, both annualised (x252), so ``risk_aversion`` is the usual annual
  coefficient (2-10).

The estimating baselines re-estimate and trade every ``rebalance_every`` days (the first day
included) and let positions drift in between. The two cvxpy problems are built once with
Parameters (DPP) and re-solved. A failed solve keeps the previous target weights (equal weight if
none yet) and is counted in ``solver_failures``, never raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np

from envs.portfolio.accounting import TRADING_DAYS
from safe_trpo.errors import UserError

BASELINE_NAMES = ("equal-weight", "buy-and-hold", "inverse-vol", "risk-parity", "min-variance",
                  "mean-variance")
LOOKBACK = 60  # daily returns in the estimating baselines' window (about three months)
REBALANCE_EVERY = 21  # trading days between re-estimations (about a month)
EQUAL_WEIGHT_BAND = 0.2  # relative drift from 1/n that triggers an equal-weight rebalance


@dataclass(frozen=True)
class Decision:
    """What a strategy may see at the close of day ``step`` of a backtest."""

    step: int  # days since the backtest started (0 = the initial allocation from cash)
    history: np.ndarray  # (k, A) closes up to and including today, oldest first (gap-filled)
    listed: np.ndarray  # (k, A) bool: the ticker had a price on that close
    holdable: np.ndarray  # (A,) bool: may be held from today's close (listed, not delisting)
    drifted: np.ndarray  # (A+1,) weights held now, before trading (cash last)
    obs: np.ndarray | None = None  # the environment's observation (trained policies only)


def _equal(holdable: np.ndarray) -> np.ndarray:
    w = np.append(holdable.astype(np.float64), 0.0)
    n = w.sum()
    if n == 0:
        w[-1] = 1.0
        return w
    return w / n


class EqualWeight:
    """1/n over the holdable tickers, rebalanced when a weight leaves its band."""

    name = "equal-weight"
    lookback = 1
    solver_failures = 0

    def __init__(self, band: float = EQUAL_WEIGHT_BAND) -> None:
        """band: relative tolerance around 1/n before rebalancing (0 = daily)."""
        if not (isinstance(band, (int, float)) and 0 <= band < 1):
            raise UserError(f"equal-weight: band: expected a number in [0, 1), got {band!r}")
        self.band = float(band)

    def target_weights(self, d: Decision) -> np.ndarray | None:
        target = _equal(d.holdable)
        if d.step == 0 or self.band == 0:
            return target
        held = d.drifted[:-1] > 0
        if not np.array_equal(held, d.holdable) or d.drifted[-1] > 1e-12:
            return target  # a listing, a delisting's proceeds in cash, or the first buy
        n = d.holdable.sum()
        if np.abs(d.drifted[:-1] - target[:-1]).max() > self.band / n:
            return target
        return None

    def describe(self) -> dict[str, Any]:
        return {"weights": "1/n over the holdable tickers", "lookback_days": 0,
                "rebalance": (f"when a weight drifts more than {self.band:.0%} of 1/n from 1/n, "
                              "or the holdable set changes" if self.band else "daily"),
                "constraints": "long-only, fully invested"}


class BuyAndHold:
    """1/n on the first day, then hold (target = the drifted weights)."""

    name = "buy-and-hold"
    lookback = 1
    solver_failures = 0

    def target_weights(self, d: Decision) -> np.ndarray | None:
        return _equal(d.holdable) if d.step == 0 else None

    def describe(self) -> dict[str, Any]:
        return {"weights": "1/n on the first day", "lookback_days": 0,
                "rebalance": "never (a delisted name's proceeds are spread over the rest)",
                "constraints": "long-only, fully invested"}


class _Estimating:
    """Rolling re-estimation shared by the estimating baselines."""

    name = ""
    estimator = ""

    def __init__(self, n_assets: int, lookback: int = LOOKBACK,
                 rebalance_every: int = REBALANCE_EVERY) -> None:
        if lookback < 2 or rebalance_every < 1:
            raise UserError(f"{self.name}: expected lookback >= 2 and rebalance_every >= 1, "
                            f"got {lookback} and {rebalance_every}")
        self.n_assets = n_assets
        self.lookback = lookback + 1  # closes needed for `lookback` returns
        self.rebalance_every = rebalance_every
        self.solver_failures = 0
        self._last: np.ndarray | None = None

    def target_weights(self, d: Decision) -> np.ndarray | None:
        if d.step % self.rebalance_every != 0:
            return None
        prices, listed = d.history[-self.lookback:], d.listed[-self.lookback:]
        eligible = d.holdable & (listed.all(axis=0) if len(prices) == self.lookback
                                 else np.zeros_like(d.holdable))
        if eligible.sum() < 2:
            return _equal(d.holdable)
        sub = prices[:, eligible]
        returns = sub[1:] / sub[:-1] - 1.0
        w = self._weights(returns)
        if w is None:
            self.solver_failures += 1
            return self._last if self._last is not None else _equal(d.holdable)
        full = np.zeros(self.n_assets + 1)
        full[:-1][eligible] = w
        self._last = full
        return full.copy()

    def _weights(self, returns: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"weights": self.estimator, "lookback_days": self.lookback - 1,
                "rebalance": f"every {self.rebalance_every} trading days (first day included)",
                "constraints": "long-only, fully invested; tickers listed over the whole "
                               "lookback only"}


class InverseVol(_Estimating):
    """w_i proportional to 1 / (sample volatility of the last ``lookback`` returns)."""

    name = "inverse-vol"
    estimator = "1/volatility (sample std of daily returns)"

    def _weights(self, returns: np.ndarray) -> np.ndarray | None:
        sd = returns.std(axis=0, ddof=1)
        if not np.all(sd > 0):
            return None
        inv = 1.0 / sd
        return inv / inv.sum()


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit and Wolf (2004) shrinkage of the covariance of ``x`` (rows = observations).

    Returns ``((1 - s) S + s mu I, s)`` with ``S`` the (1/n) sample covariance, ``mu`` its mean
    eigenvalue and ``s`` the estimated optimal shrinkage intensity in [0, 1]. The same estimator
    as ``sklearn.covariance.ledoit_wolf`` (written out here so a backtest does not import
    scikit-learn; the tests compare the two).
    """
    x = x - x.mean(axis=0)
    n, p = x.shape
    x2 = x ** 2
    trace_terms = x2.sum(axis=0) / n
    mu = trace_terms.sum() / p
    delta_ = float(((x.T @ x) ** 2).sum()) / n ** 2
    beta_ = float((x2.T @ x2).sum())
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace_terms.sum() + p * mu ** 2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    cov = (1.0 - shrinkage) * (x.T @ x) / n
    cov.flat[::p + 1] += shrinkage * mu
    return cov, shrinkage


def shrunk_covariance(returns: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf covariance of daily returns (rows = days), annualised (x252)."""
    cov, _ = ledoit_wolf(returns)
    return cov * TRADING_DAYS


def erc_weights(cov: np.ndarray, tol: float = 1e-10, max_sweeps: int = 500) -> np.ndarray | None:
    """Equal-risk-contribution weights by cyclical coordinate descent (None if it fails).

    Minimises ``0.5 y'Sy - (1/n) sum log y`` (strictly convex, so the fixed point is the unique
    ERC portfolio once normalised): each coordinate has the closed form
    ``y_i = (-(Sy)_{-i} + sqrt((Sy)_{-i}^2 + 4 S_ii / n)) / (2 S_ii)``.
    """
    n = len(cov)
    diag = np.diag(cov)
    if not np.all(diag > 0):
        return None
    y = 1.0 / np.sqrt(diag)
    b = 1.0 / n
    for _ in range(max_sweeps):
        prev = y.copy()
        for i in range(n):
            off = cov[i] @ y - diag[i] * y[i]
            y[i] = (-off + math.sqrt(off * off + 4.0 * diag[i] * b)) / (2.0 * diag[i])
        if np.abs(y - prev).max() <= tol * np.abs(y).max():
            return y / y.sum()
    return None


class RiskParity(_Estimating):
    """Equal risk contribution on the Ledoit-Wolf covariance."""

    name = "risk-parity"
    estimator = "equal risk contribution, Ledoit-Wolf covariance"

    def _weights(self, returns: np.ndarray) -> np.ndarray | None:
        return erc_weights(shrunk_covariance(returns))


class _Optimised(_Estimating):
    """A cvxpy problem over all ``A`` assets: ineligible ones are bounded to zero."""

    def __init__(self, n_assets: int, lookback: int = LOOKBACK,
                 rebalance_every: int = REBALANCE_EVERY) -> None:
        super().__init__(n_assets, lookback, rebalance_every)
        self.w = cp.Variable(n_assets, nonneg=True)
        self.upper = cp.Parameter(n_assets, nonneg=True)
        # Risk as ||F w||^2 with S = F'F (Cholesky): DPP, so the problem compiles once.
        self.factor = cp.Parameter((n_assets, n_assets))
        self.mean = cp.Parameter(n_assets)
        self.problem = self._build([cp.sum(self.w) == 1, self.w <= self.upper])

    def _build(self, constraints: list[Any]) -> cp.Problem:
        raise NotImplementedError

    def _weights(self, returns: np.ndarray) -> np.ndarray | None:
        k = returns.shape[1]
        cov = np.eye(self.n_assets)  # unit variance for the assets bounded to zero
        cov[:k, :k] = shrunk_covariance(returns)
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            return None
        self.factor.value = chol.T
        self.upper.value = np.r_[np.ones(k), np.zeros(self.n_assets - k)]
        self.mean.value = np.r_[returns.mean(axis=0) * TRADING_DAYS, np.zeros(self.n_assets - k)]
        try:
            self.problem.solve(solver=cp.CLARABEL)
        except cp.SolverError:
            return None
        w = self.w.value
        if self.problem.status != cp.OPTIMAL or w is None or not np.all(np.isfinite(w)):
            return None
        # Interior-point solutions sit ~1e-9 off the bounds; project back onto the simplex.
        w = np.clip(w[:k], 0.0, None)
        return w / w.sum()


class MinVariance(_Optimised):
    """Long-only minimum-variance portfolio on a rolling Ledoit-Wolf covariance."""

    name = "min-variance"
    estimator = "minimum variance, Ledoit-Wolf covariance"

    def _build(self, constraints: list[Any]) -> cp.Problem:
        return cp.Problem(cp.Minimize(cp.sum_squares(self.factor @ self.w)), constraints)


class MeanVariance(_Optimised):
    """Long-only Markowitz: maximise mean - risk_aversion/2 * variance (annualised)."""

    name = "mean-variance"

    def __init__(self, n_assets: int, lookback: int = LOOKBACK,
                 rebalance_every: int = REBALANCE_EVERY, risk_aversion: float = 5.0) -> None:
        self.risk_aversion = risk_aversion
        self.estimator = (f"max mean - {risk_aversion:g}/2 variance (sample mean, Ledoit-Wolf "
                          f"covariance, annualised)")
        super().__init__(n_assets, lookback, rebalance_every)

    def _build(self, constraints: list[Any]) -> cp.Problem:
        risk = cp.sum_squares(self.factor @ self.w)
        return cp.Problem(cp.Maximize(self.mean @ self.w - 0.5 * self.risk_aversion * risk),
                          constraints)


def make_baseline(name: str, n_assets: int) -> Any:
    """A fresh baseline (state reset) by its command-line name, one of ``BASELINE_NAMES``."""
    makers = {"equal-weight": EqualWeight, "buy-and-hold": BuyAndHold,
              "inverse-vol": lambda: InverseVol(n_assets),
              "risk-parity": lambda: RiskParity(n_assets),
              "min-variance": lambda: MinVariance(n_assets),
              "mean-variance": lambda: MeanVariance(n_assets)}
    if name not in makers:
        raise UserError(f"unknown baseline '{name}', expected one of {', '.join(BASELINE_NAMES)}")
    return makers[name]()
