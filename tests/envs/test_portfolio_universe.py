"""Point-in-time universe, execution lag, costs beyond fees, and the hard-cap safety layer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envs.portfolio import accounting as acc
from envs.portfolio.baselines import EqualWeight
from envs.portfolio.env import PortfolioEnv
from envs.portfolio.prices import read_panel
from envs.portfolio.safety import Projection
from envs.portfolio.synthetic import synthetic_prices
from envs.portfolio.universe import build_universe, survivorship_note
from safe_trpo.errors import UserError
from safe_trpo.finance.backtest import backtest

STOCKS = Path(__file__).resolve().parents[2] / "data" / "stock_prices.csv"


class Fixed:
    """Always the same target weights (A+1,)."""

    solver_failures = 0

    def __init__(self, weights, name="fixed"):
        self.weights, self.name = np.asarray(weights, dtype=float), name

    def target_weights(self, d):
        return self.weights.copy()


def listed_and_delisted() -> pd.DataFrame:
    """A trades throughout; C is delisted after row 50; D is listed from row 30."""
    panel = synthetic_prices(120, 4, seed=7)
    panel.columns = ["A", "B", "C", "D"]
    panel.iloc[51:, 2] = np.nan
    panel.iloc[:30, 3] = np.nan
    return panel


def test_delisted_and_late_listed_tickers_trade_only_while_listed():
    panel = listed_and_delisted()
    u = build_universe(panel, str(panel.index[10].date()), None, lookback=10)
    assert u.tickers == ["A", "B", "C", "D"]  # nothing dropped for the whole window
    assert u.delisted == {"C": str(panel.index[50].date())}
    assert u.listed_late == {"D": str(panel.index[30].date())}
    # C may be held up to the close before its last; D from its first close.
    assert u.holdable[49, 2] and not u.holdable[50, 2] and u.listed[50, 2]
    assert not u.holdable[29, 3] and u.holdable[30, 3]
    assert "delisted (sold at last price): C" in u.summary()


def test_delisted_position_is_sold_at_its_last_price_with_costs():
    panel = listed_and_delisted()
    start = str(panel.index[10].date())
    c = 0.01
    (run,) = backtest(panel, [EqualWeight(band=0)], {"window": 5, "cost_rate": c,
                                                     "execution_lag_days": 0}, start)
    p = panel.to_numpy()
    # Replay by hand: equal weight over the holdable tickers each day from row 10.
    wealth, w = 1.0, np.array([0, 0, 0, 0, 1.0])
    for t in range(10, len(p) - 1):
        hold = np.array([True, True, t < 50, t >= 30])
        target = np.append(hold / hold.sum(), 0.0)
        turnover = np.abs(target[:-1] - w[:-1]).sum()
        gross = np.where(np.isnan(p[t + 1]) | np.isnan(p[t]), 1.0, p[t + 1] / p[t])
        held = target[:-1] * gross
        growth = held.sum()
        wealth *= (1 - c * turnover) * growth
        w = np.append(held / growth, 0.0)
        if t == 50:  # C sold at the close of its last price: 1/3 -> 0, plus D bought
            assert turnover > 1 / 3
    assert math.isclose(run.wealth[-1], wealth, rel_tol=1e-12)


def test_a_single_missing_cell_is_filled_the_same_for_env_and_baselines():
    panel = synthetic_prices(100, 3, seed=8)
    panel.iloc[40, 0] = np.nan  # one blank between S0's first and last price
    env = PortfolioEnv(prices=panel, window=5, episode_days=20)
    assert env.core.universe.filled_gaps == {"S0": 1}
    assert env.core.prices[40, 0] == panel.iloc[39, 0]  # the previous close
    (run,) = backtest(panel, [EqualWeight()], {"window": 5}, str(panel.index[10].date()))
    assert np.isfinite(run.wealth).all() and len(run.wealth) == 90
    with pytest.raises(UserError, match=r"column 'S0': 1 missing price\(s\) between its first "
                                        r"and last price, first on"):
        PortfolioEnv(prices=panel, window=5, episode_days=20, strict=True)


def test_policy_actions_are_masked_for_unlisted_tickers():
    panel = listed_and_delisted()
    env = PortfolioEnv(prices=panel, backtest=True, backtest_start=str(panel.index[10].date()),
                       window=5, execution_lag_days=0)
    obs, _ = env.reset()
    assert np.array_equal(obs[-4:], [1, 1, 1, 0])  # D is not listed yet
    _, _, _, _, info = env.step(np.zeros(5, dtype=np.float32))
    assert env.drifted_weights[3] == 0.0 and math.isclose(info["turnover"], 0.75, rel_tol=1e-12)


def test_execution_lag_fills_one_close_later():
    panel = synthetic_prices(120, 3, seed=9)
    d = [str(x.date()) for x in panel.index]
    fixed = [0.5, 0.3, 0.2, 0.0]
    (lag1,) = backtest(panel, [Fixed(fixed)], {"window": 5, "execution_lag_days": 1}, d[20])
    (lag0,) = backtest(panel, [Fixed(fixed)], {"window": 5, "execution_lag_days": 0}, d[21])
    # Decided at the close of day 20, filled at 21: the first day is spent in cash.
    assert lag1.wealth[1] == 1.0 and lag1.metrics["breach_days"]["turnover"] == 1
    assert np.allclose(lag1.wealth[1:], lag0.wealth, rtol=0, atol=1e-13)


def test_half_spread_impact_and_cash_rate():
    delta = np.array([[0.2, -0.1]])
    vol = np.array([0.02, 0.01])
    got = acc.trade_cost_fraction(delta, vol, 0.001, half_spread=0.0005, impact_coef=0.7,
                                  aum_to_adv=0.04)
    want = 0.3 * 0.0015 + 0.7 * (0.02 * 0.2 * math.sqrt(0.2 * 0.04)
                                 + 0.01 * 0.1 * math.sqrt(0.1 * 0.04))
    assert math.isclose(got[0], want, rel_tol=1e-12)
    panel = synthetic_prices(300, 2, seed=1)
    (cash,) = backtest(panel, [Fixed([0, 0, 1.0])], {"window": 5, "cash_rate": 0.05},
                       str(panel.index[10].date()))
    assert math.isclose(cash.wealth[-1], 1.05 ** (289 / 252), rel_tol=1e-12)
    (a,) = backtest(panel, [EqualWeight()], {"window": 5, "half_spread": 0.001,
                                             "impact_coef": 1.0}, str(panel.index[10].date()))
    (b,) = backtest(panel, [EqualWeight()], {"window": 5}, str(panel.index[10].date()))
    assert a.metrics["total_costs"] > b.metrics["total_costs"]


def test_projection_enforces_the_caps_and_counts_interventions():
    proj = Projection(2, concentration_cap=0.5, turnover_cap=None)
    w, infeasible = proj.project(np.array([0.7, 0.3, 0.0]), np.array([0, 0, 1.0]),
                                 np.array([True, True]))
    assert np.allclose(w, [0.5, 0.4, 0.1], atol=1e-6) and not infeasible
    proj = Projection(2, concentration_cap=None, turnover_cap=0.2)
    w, _ = proj.project(np.array([0.5, 0.5, 0.0]), np.array([0, 0, 1.0]),
                        np.array([True, True]))
    assert np.abs(w[:-1]).sum() <= 0.2 + 1e-6 and np.allclose(w[0], w[1], atol=1e-6)
    panel = synthetic_prices(200, 3, seed=2)
    kw = {"window": 5, "hard_concentration_cap": 0.4, "hard_turnover_cap": 0.5,
          "execution_lag_days": 0}
    (run,) = backtest(panel, [Fixed([0.8, 0.1, 0.1, 0.0])], kw, str(panel.index[10].date()))
    assert run.metrics["safety_interventions"] == len(run.wealth) - 1  # every day
    assert run.metrics["breach_days"]["concentration"] == 0  # 0.4 is the soft cap too


def test_long_format_loads_to_the_same_panel_and_survivorship_is_flagged(tmp_path):
    wide = read_panel(STOCKS)
    long = wide.reset_index().melt(id_vars="date", var_name="ticker", value_name="price")
    long = long.dropna()
    long["date"] = long["date"].dt.strftime("%Y-%m-%d")
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    again = read_panel(path)
    assert again.shape == wide.shape
    assert again[wide.columns].equals(wide)  # same tickers, dates, blanks and prices
    assert "survivorship" in survivorship_note(wide)
    wide.iloc[-1, 0] = np.nan  # one ticker delisted before the last date
    assert survivorship_note(wide) is None
