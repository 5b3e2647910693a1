"""Constructor keyword arguments of the portfolio environments, validated into a frozen dataclass.

Every option is documented on its field of :class:`PortfolioConfig`; :func:`make_config` refuses
unknown keys and bad values with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from safe_trpo.errors import UserError

ENV_NAME = "SafeTRPO/Portfolio-v0"
COST_NAMES = ("drawdown", "concentration", "turnover", "cvar")


@dataclasses.dataclass(frozen=True)
class PortfolioConfig:
    """Constructor keyword arguments of the portfolio environments (scenario ``[env] kwargs``)."""

    prices: Any = None
    """Price file (CSV/Parquet, wide or long; relative paths against the current directory) or
    a panel DataFrame (dates x tickers, NaN where a ticker has no price). Required."""
    tickers: tuple[str, ...] | None = None
    """Assets the action space covers, in this order; each must have a price somewhere in the
    window, and is masked on days it is not listed (point-in-time universe, see
    envs.portfolio.universe). None = every ticker with a price in the window."""
    train_start: str | None = None
    """First day an episode may start on (date); None = as early as `window` allows."""
    train_end: str | None = None
    """Last price an episode may read (date); None = the end of the data."""
    test_start: str | None = None
    """Held-out test window start, must be after `train_end`; not used in training, the
    backtester's default window for a trained run."""
    test_end: str | None = None
    """Held-out test window end (date), see `test_start`."""
    backtest: bool = False
    """One deterministic episode over [backtest_start, backtest_end] instead of random starts."""
    backtest_start: str | None = None
    """Backtest mode: first trading day (date); None = as early as `window` allows."""
    backtest_end: str | None = None
    """Backtest mode: last close (date); None = the end of the data."""
    episode_days: int = 252
    """Trading days per training episode (252 ~ one year)."""
    window: int = 20
    """Days of log returns in the observation (and for the rolling volatility), >= 2."""
    cost_rate: float = 0.001
    """Transaction cost (fees) per unit of turnover (0.001 = 10 basis points), in [0, 0.5)."""
    half_spread: float = 0.0
    """Half the bid-ask spread, paid on every unit traded (0.0005 = 5 bps), in [0, 0.1)."""
    impact_coef: float = 0.0
    """Square-root market impact: cost per unit traded = impact_coef * daily vol *
    sqrt(traded value / ADV); about 0.5-1 empirically; 0 = off."""
    aum_to_adv: float = 0.01
    """Portfolio value over each stock's average daily traded value (for the impact term)."""
    cash_rate: float = 0.0
    """Annual interest earned by cash (0.02 = 2 %/year, compounded daily over 252 days)."""
    execution_lag_days: int = 1
    """Trades decided on prices up to close t fill at close t + lag (1 = next close; 0 = the
    same close, which assumes trading at a price already used to decide)."""
    hard_concentration_cap: float | None = None
    """Safety layer: project target weights so no asset exceeds this weight, before trading
    (cvxpy Euclidean projection; interventions counted in info and in each training
    update row as `safety_interventions`); None = off."""
    hard_turnover_cap: float | None = None
    """Safety layer: project target weights so one day's turnover (beyond forced sales of
    delisted stocks) stays at or below this; None = off."""
    weight_cap: float | None = None
    """Hard cap on each asset's weight (excess redistributed), in (0, 1]; None = no cap."""
    logit_bound: float = 5.0
    """Actions (logits) are clipped to [-logit_bound, logit_bound]; 5 allows weight ratios e^10."""
    drawdown_limit: float = 0.15
    """Drawdown (fraction of the episode's peak wealth) above which cost_drawdown is 1."""
    concentration_cap: float = 0.4
    """Largest asset weight above which cost_concentration is 1."""
    turnover_cap: float = 0.2
    """Daily turnover (fraction of wealth traded) above which cost_turnover is 1."""
    cvar_limit: float = 0.03
    """Daily CVaR(95%) loss (fraction) above which cost_cvar is 1."""
    cvar_window: int = 60
    """Days of the episode's returns the CVaR is computed over (>= 20)."""
    allow_implausible_prices: bool = False
    """Accept prices outside [1e-9, 1e12] or moving x1000 overnight (refused by default as data
    errors; see envs/portfolio/validation.py)."""
    strict: bool = False
    """Refuse, rather than fill with the previous close, a gap between a ticker's first and
    last price."""

    @property
    def limits(self) -> dict[str, float]:
        """Each cost's threshold, by cost name."""
        return {"drawdown": self.drawdown_limit, "concentration": self.concentration_cap,
                "turnover": self.turnover_cap, "cvar": self.cvar_limit}


def make_config(**kwargs: Any) -> PortfolioConfig:
    """Validate keyword arguments into a :class:`PortfolioConfig` (UserError naming the key)."""
    known = {f.name for f in dataclasses.fields(PortfolioConfig)}
    for key in kwargs:
        if key not in known:
            raise UserError(f"{ENV_NAME}: unknown option '{key}' "
                            f"(known: {', '.join(sorted(known))})")
    if kwargs.get("prices") is None:
        raise UserError(f"{ENV_NAME}: prices: expected a price file path or a DataFrame")
    for key in ("train_start", "train_end", "test_start", "test_end", "backtest_start",
                "backtest_end"):
        if isinstance(kwargs.get(key), (dt.date, pd.Timestamp)):  # TOML dates arrive as dates
            kwargs[key] = kwargs[key].isoformat()
    if kwargs.get("tickers") is not None:
        _check(isinstance(kwargs["tickers"], (list, tuple)) and len(kwargs["tickers"]) >= 2,
               "tickers", "a list of at least two ticker names", kwargs["tickers"])
        kwargs["tickers"] = tuple(str(t) for t in kwargs["tickers"])
    cfg = PortfolioConfig(**kwargs)
    _integer(cfg.episode_days, "episode_days", 1)
    _integer(cfg.window, "window", 2)
    _integer(cfg.cvar_window, "cvar_window", 20)
    _number(cfg.cost_rate, "cost_rate", "a number in [0, 0.5)", lambda v: 0 <= v < 0.5)
    if cfg.weight_cap is not None:
        _number(cfg.weight_cap, "weight_cap", "None or a number in (0, 1]", lambda v: 0 < v <= 1)
    _number(cfg.logit_bound, "logit_bound", "a number > 0", lambda v: v > 0)
    _check(isinstance(cfg.allow_implausible_prices, bool), "allow_implausible_prices",
           "true or false", cfg.allow_implausible_prices)
    _number(cfg.half_spread, "half_spread", "a number in [0, 0.1)", lambda v: 0 <= v < 0.1)
    _number(cfg.impact_coef, "impact_coef", "a number in [0, 10]", lambda v: 0 <= v <= 10)
    _number(cfg.aum_to_adv, "aum_to_adv", "a number in [0, 100]", lambda v: 0 <= v <= 100)
    _number(cfg.cash_rate, "cash_rate", "an annual rate in (-0.1, 0.5)",
            lambda v: -0.1 < v < 0.5)
    _integer(cfg.execution_lag_days, "execution_lag_days", 0)
    for key in ("hard_concentration_cap", "hard_turnover_cap"):
        if getattr(cfg, key) is not None:
            _number(getattr(cfg, key), key, "None or a number in (0, 1]", lambda v: 0 < v <= 1)
    for key in ("drawdown_limit", "concentration_cap", "turnover_cap", "cvar_limit"):
        _number(getattr(cfg, key), key, "a number >= 0", lambda v: v >= 0)
    bounds = {k: _date(getattr(cfg, k), k) for k in ("train_start", "train_end", "test_start",
                                                    "test_end", "backtest_start", "backtest_end")}
    if bounds["test_start"] is not None:
        # Without train_end, training would read the held-out test window.
        _check(bounds["train_end"] is not None, "train_end", "a date before test_start", None)
        _check(bounds["test_start"] > bounds["train_end"], "test_start",
               f"a date after train_end {cfg.train_end}", cfg.test_start)
    return cfg


def _integer(value: Any, key: str, low: int) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    _check(ok, key, f"an integer >= {low}", value)


def _number(value: Any, key: str, expected: str, ok: Any) -> None:
    is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    _check(is_number and np.isfinite(value) and ok(value), key, expected, value)


def _date(value: Any, key: str) -> pd.Timestamp | None:
    """A date given as text (TOML dates arrive as ``datetime.date`` and were turned into text);
    anything else, e.g. the TOML integer 2014, is refused rather than read as nanoseconds."""
    if value is None:
        return None
    _check(isinstance(value, str), key, "a date such as 2015-01-02 (a TOML date or a string)",
           value)
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        _check(False, key, "a date such as 2015-01-02", value)
        return None


def _check(ok: bool, key: str, expected: str, got: Any) -> None:
    if not ok:
        raise UserError(f"{ENV_NAME}: {key}: expected {expected}, got {got!r}")
