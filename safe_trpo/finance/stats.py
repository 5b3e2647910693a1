"""Statistics a quant asks of a backtest: Sharpe intervals under autocorrelation, paired tests.

Daily returns are autocorrelated and heavy-tailed, so the i.i.d. standard error of a Sharpe ratio
is too narrow. Intervals here come from the stationary bootstrap (Politis and Romano 1994):
resampled series are built from blocks that start at uniform random days and have geometric
lengths with mean ``block``, wrapping around the end; this keeps the short-range dependence of
the returns. The default mean block length is ``ceil(n ** (1/3))`` days (the usual rate for
block bootstraps of a mean; 20 days for 28 years of data). The tests check the resampler against
the ``arch`` package's ``StationaryBootstrap`` (same distribution of intervals).

A comparison of two strategies over the same days resamples the *same* days for both (paired),
so their common market moves cancel: ``vs_equal_weight`` gives the Sharpe difference, its
percentile 95 % interval and a two-sided p-value for "no difference" (the share of centred
bootstrap differences at least as far from 0 as the observed one; Ledoit and Wolf 2008 use the
same construction with a studentised statistic).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

TRADING_DAYS = 252
REPS = 1000  # bootstrap resamples (Monte Carlo error of the 2.5 %/97.5 % quantiles ~0.02)
SEED = 0  # fixed, so the same backtest gives the same intervals


def default_block(n: int) -> int:
    """Mean block length for ``n`` daily returns: ``ceil(n ** (1/3))``, at least 1."""
    return max(1, math.ceil(n ** (1.0 / 3.0)))


def stationary_bootstrap_indices(n: int, reps: int, block: float,
                                 rng: np.random.Generator) -> np.ndarray:
    """(reps, n) indices into a series of length ``n`` for the stationary bootstrap.

    Each position starts a new block with probability ``1 / block`` (always at position 0) at a
    uniform random index; otherwise it continues the previous one (index + 1, modulo ``n``).
    """
    new = rng.random((reps, n)) < 1.0 / block
    new[:, 0] = True
    starts = np.zeros((reps, n), dtype=np.int32)
    starts[new] = rng.integers(0, n, size=int(new.sum()), dtype=np.int32)
    pos = np.arange(n, dtype=np.int32)
    # Position of the latest block start at or before each position.
    last_start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    first_index = np.take_along_axis(starts, last_start, axis=1)
    return (first_index + (pos - last_start)) % n


@functools.lru_cache(maxsize=2)
def bootstrap_indices(n: int, reps: int = REPS, block: float | None = None,
                      seed: int = SEED) -> np.ndarray:
    """Stationary-bootstrap indices for ``n`` days (mean block ``block``, default
    :func:`default_block`), seeded: every strategy of one backtest is resampled on the same
    days, which makes the paired comparisons paired and costs one draw per backtest (the last
    two draws are cached)."""
    rng = np.random.default_rng(seed)
    idx = stationary_bootstrap_indices(n, reps, block or default_block(n), rng)
    idx.flags.writeable = False  # cached and shared: nobody may change it
    return idx


def sharpe(returns: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Annualised Sharpe ratio of daily returns (mean / std with ddof=1, times sqrt(252), zero
    risk-free rate); NaN where the standard deviation is 0."""
    r = np.asarray(returns, dtype=np.float64)
    sd = r.std(axis=axis, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sd > 0, r.mean(axis=axis) / sd * math.sqrt(TRADING_DAYS), np.nan)
    return float(out) if out.ndim == 0 else out


def sharpe_interval(returns: np.ndarray, idx: np.ndarray | None = None) -> list[float]:
    """Percentile 95 % stationary-bootstrap interval ``[lo, hi]`` of the annualised Sharpe;
    ``idx``: resampling indices (:func:`bootstrap_indices`), drawn here if None."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 3:
        return [math.nan, math.nan]
    idx = bootstrap_indices(r.size) if idx is None else idx
    draws = sharpe(r[idx], axis=1)
    if np.isnan(draws).all():  # e.g. all cash: no volatility, so no Sharpe ratio
        return [math.nan, math.nan]
    lo, hi = np.nanquantile(draws, [0.025, 0.975])
    # Rounded: the Monte Carlo error of the bounds is ~0.02, more digits would be noise.
    return [round(float(lo), 4), round(float(hi), 4)]


def paired_comparison(returns: np.ndarray, reference: np.ndarray,
                      idx: np.ndarray | None = None) -> dict[str, Any]:
    """Sharpe of ``returns`` minus Sharpe of ``reference`` (same days), with a paired
    stationary-bootstrap 95 % interval and two-sided p-value for a zero difference; ``idx`` as
    in :func:`sharpe_interval`."""
    r, ref = np.asarray(returns, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if r.shape != ref.shape:
        raise ValueError(f"paired comparison needs the same days, got {r.shape} and {ref.shape}")
    diff = float(sharpe(r) - sharpe(ref))
    if r.size < 3 or not math.isfinite(diff):
        return {"sharpe_diff": diff, "ci95": [math.nan, math.nan], "p_value": math.nan}
    idx = bootstrap_indices(r.size) if idx is None else idx
    draws = sharpe(r[idx], axis=1) - sharpe(ref[idx], axis=1)
    draws = draws[np.isfinite(draws)]
    lo, hi = np.quantile(draws, [0.025, 0.975])
    # Centred at the observed difference: the bootstrap law of (d* - d) stands in for that of
    # (d - true difference) under the null of no difference.
    extreme = int(np.sum(np.abs(draws - diff) >= abs(diff)))
    return {"sharpe_diff": diff, "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "p_value": (extreme + 1) / (draws.size + 1), "reps": int(draws.size),
            "mean_block_days": default_block(r.size)}


def relative_metrics(returns: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Tracking error and information ratio of daily ``returns`` against ``reference``.

    tracking_error: annualised std (ddof=1) of the daily active return ``r - r_ref``;
    information_ratio: annualised mean active return over its std (NaN if the std is 0)."""
    active = np.asarray(returns, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    if active.size < 2:
        return {"tracking_error": math.nan, "information_ratio": math.nan}
    sd = float(active.std(ddof=1))
    return {"tracking_error": sd * math.sqrt(TRADING_DAYS),
            "information_ratio": float(active.mean() / sd * math.sqrt(TRADING_DAYS))
            if sd > 0 else math.nan}


def calmar(annual_return: float, max_drawdown: float) -> float:
    """Calmar ratio: annual (geometric) return over the maximum drawdown (NaN if no drawdown)."""
    return annual_return / max_drawdown if max_drawdown > 0 else math.nan
