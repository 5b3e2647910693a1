"""Seeded synthetic price panels: correlated geometric Brownian motion with market regimes.

A two-state Markov chain (calm / stressed) switches the drift and volatility of every asset at
once; asset returns are correlated normals (one common correlation). Used by tests that need many
independent price paths with known structure; real behaviour is checked on the shipped data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from envs.portfolio.accounting import TRADING_DAYS


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the regime-switching GBM (annualised figures, per asset)."""

    calm_drift: float = 0.10
    """Annual drift in the calm regime (0.10 = +10% a year)."""
    calm_vol: float = 0.15
    """Annual volatility in the calm regime (usual range 0.1-0.3)."""
    stress_drift: float = -0.30
    """Annual drift in the stressed regime (negative: crashes)."""
    stress_vol: float = 0.45
    """Annual volatility in the stressed regime."""
    p_enter_stress: float = 0.01
    """Daily probability of switching calm -> stressed (0.01: about once every 100 days)."""
    p_leave_stress: float = 0.05
    """Daily probability of switching stressed -> calm (0.05: stress lasts ~20 days)."""
    correlation: float = 0.3
    """Correlation of every pair of daily asset returns, in (-1/(A-1), 1)."""
    vol_dispersion: float = 0.3
    """Per-asset volatility multipliers drawn uniform in [1 - d, 1 + d]."""
    initial_price: float = 100.0
    """Price of every asset on the first day."""


def generate(n_days: int, n_assets: int, seed: int,
             config: SyntheticConfig = SyntheticConfig(),
             start: str = "2000-01-03") -> tuple[pd.DataFrame, np.ndarray]:
    """A synthetic panel and its regime path.

    Parameters:
        n_days: number of trading days (rows), >= 2.
        n_assets: number of tickers (columns ``S0``, ``S1``, ...), >= 2.
        seed: seeds everything; the same seed gives the same panel.
        config: regime and volatility parameters.
        start: first date; rows are consecutive business days.

    Returns (prices DataFrame indexed by date, regimes (n_days,) with 1 = stressed), where
    ``regimes[t]`` is the regime of the move from day ``t-1`` to ``t`` (``regimes[0]`` = 0).
    """
    rng = np.random.default_rng(seed)
    regimes = np.zeros(n_days, dtype=np.int64)
    switch = rng.random(n_days)
    for t in range(1, n_days):
        p = config.p_leave_stress if regimes[t - 1] else config.p_enter_stress
        regimes[t] = 1 - regimes[t - 1] if switch[t] < p else regimes[t - 1]
    scale = rng.uniform(1 - config.vol_dispersion, 1 + config.vol_dispersion, n_assets)
    corr = np.full((n_assets, n_assets), config.correlation)
    np.fill_diagonal(corr, 1.0)
    z = rng.standard_normal((n_days - 1, n_assets)) @ np.linalg.cholesky(corr).T
    mu = np.where(regimes[1:, None] == 1, config.stress_drift, config.calm_drift)
    sigma = np.where(regimes[1:, None] == 1, config.stress_vol, config.calm_vol) * scale
    dt = 1.0 / TRADING_DAYS
    log_steps = (mu - 0.5 * sigma**2) * dt + sigma * np.sqrt(dt) * z
    log_prices = np.vstack([np.zeros((1, n_assets)), np.cumsum(log_steps, axis=0)])
    dates = pd.bdate_range(start=start, periods=n_days, name="date")
    panel = pd.DataFrame(config.initial_price * np.exp(log_prices), index=dates,
                         columns=[f"S{i}" for i in range(n_assets)])
    return panel, regimes


def synthetic_prices(n_days: int = 1000, n_assets: int = 4, seed: int = 0,
                     config: SyntheticConfig = SyntheticConfig()) -> pd.DataFrame:
    """A synthetic price panel (see :func:`generate`), without the regime path."""
    return generate(n_days, n_assets, seed, config)[0]
