"""``ENV_INFO`` of SafeTRPO/Portfolio-v0 for ``safe-trpo envs`` and the scenario checks (kept
apart from ``env.py`` so that module stays one responsibility: the environment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envs.info import EnvInfo
from envs.portfolio.env import ENV_NAME, PortfolioConfig


def _split_advice(kwargs: dict[str, Any]) -> list[str]:
    """A scenario that trains on every day it has cannot be judged out of sample."""
    if kwargs.get("backtest"):
        return []
    if kwargs.get("train_end") is None or kwargs.get("test_start") is None:
        return ["[env] kwargs set no train/test split (train_end and test_start): training may "
                "read every price, so no backtest of this run is out of sample. Set train_end "
                "and test_start (after train_end) to hold data out."]
    return []


def _survivorship_advice(kwargs: dict[str, Any]) -> list[str]:
    """The backtests' survivorship warning, for training too: a universe of today's survivors
    makes the training data's past look better than it was."""
    from envs.portfolio.prices import read_panel
    from envs.portfolio.universe import survivorship_note
    from safe_trpo.errors import UserError

    prices = kwargs.get("prices")
    if not isinstance(prices, (str, Path)) or not Path(prices).is_file():
        return []  # a DataFrame, or a missing file the environment itself will refuse
    try:
        panel = read_panel(prices, not kwargs.get("allow_implausible_prices", False))
    except UserError:
        return []  # building the environment reports it, in one line
    tickers = kwargs.get("tickers")
    note = survivorship_note(panel, [t for t in tickers if t in panel.columns]
                             if isinstance(tickers, (list, tuple)) else None)
    return [note] if note else []


def _advice(kwargs: dict[str, Any]) -> list[str]:
    return _split_advice(kwargs) + _survivorship_advice(kwargs)


ENV_INFO = EnvInfo(
    env_id=ENV_NAME,
    summary="Daily long-only portfolio allocation on a price file under drawdown, "
            "concentration, turnover and CVaR limits.",
    costs={"drawdown": "1 on a day the drawdown from the episode's peak exceeds drawdown_limit; "
                       "the episode sum is breach days (days)",
           "concentration": "1 on a day the largest asset weight exceeds concentration_cap; "
                            "episode sum in breach days (days)",
           "turnover": "1 on a day the turnover exceeds turnover_cap; episode sum in breach "
                       "days (days)",
           "cvar": "1 on a day the CVaR(95%) of the last cvar_window returns exceeds cvar_limit; "
                   "episode sum in breach days (days)"},
    kwargs=PortfolioConfig,
    episode="episode_days trading days (default 252), truncation only; with backtest = true "
            "one episode over [backtest_start, backtest_end]",
    example='[env]\nid = "SafeTRPO/Portfolio-v0"\nkwargs = { train_end = "2014-12-31", '
            'test_start = "2015-01-02" }\n[env.data_files]\nprices = "../data/stock_prices.csv"'
            '\n\n[[constraints]]\nname = "drawdown"   # breach days per episode\nlimit = 10.0',
    advice=_advice)
