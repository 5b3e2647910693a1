"""Backtest statistics against reference libraries and hand computations; baseline estimators."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from envs.portfolio.baselines import EqualWeight, RiskParity, erc_weights, ledoit_wolf
from safe_trpo.finance import stats
from safe_trpo.finance.backtest import backtest
from safe_trpo.finance.walkforward import plan_windows


def test_ledoit_wolf_equals_scikit_learn():
    import sklearn.covariance as sk

    rng = np.random.default_rng(0)
    for n, p in ((60, 7), (30, 20), (500, 3)):
        x = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) * 0.01
        ours, s_ours = ledoit_wolf(x)
        theirs, s_theirs = sk.ledoit_wolf(x)
        assert np.allclose(ours, theirs, rtol=1e-10, atol=1e-18)
        assert math.isclose(s_ours, s_theirs, rel_tol=1e-10)


def test_erc_weights_equalise_risk_contributions():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 6))
    cov = a @ a.T + 0.1 * np.eye(6)
    w = erc_weights(cov)
    contrib = w * (cov @ w)
    assert np.allclose(contrib, contrib.mean(), rtol=1e-8) and math.isclose(w.sum(), 1.0)
    # Uncorrelated assets: ERC is inverse volatility.
    diag = np.diag([0.04, 0.01, 0.09])
    inv = 1 / np.sqrt(np.diag(diag))
    assert np.allclose(erc_weights(diag), inv / inv.sum(), rtol=1e-8)


def test_stationary_bootstrap_indices_are_wrapped_blocks_of_geometric_length():
    idx = stats.stationary_bootstrap_indices(500, 400, 10.0, np.random.default_rng(2))
    assert idx.shape == (400, 500) and idx.min() >= 0 and idx.max() < 500
    continues = (idx[:, 1:] - idx[:, :-1]) % 500 == 1
    starts = (~continues).sum() + 400  # a new block where the index does not continue
    # Mean block length ~ 10 (a new start may by chance continue the previous one: slightly
    # fewer visible starts than drawn).
    assert 9.5 < idx.size / starts < 11.0


def test_sharpe_interval_agrees_with_arch():
    import arch.bootstrap as arch

    rng = np.random.default_rng(3)
    n = 1500
    # AR(1) returns: autocorrelation widens the interval relative to i.i.d.
    e = rng.normal(0.0006, 0.01, n)
    r = np.empty(n)
    r[0] = e[0]
    for t in range(1, n):
        r[t] = 0.3 * (r[t - 1] - 0.0006) + e[t]
    block = stats.default_block(n)
    ours = stats.sharpe_interval(r, stats.bootstrap_indices(n, reps=4000))
    bs = arch.StationaryBootstrap(block, r, seed=5)
    theirs = bs.conf_int(lambda x: np.array([stats.sharpe(x)]), reps=4000,
                         method="percentile")[:, 0]
    assert np.allclose(ours, theirs, atol=0.06), (ours, theirs)
    assert ours[0] < stats.sharpe(r) < ours[1]


def test_paired_comparison_detects_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(4)
    market = rng.normal(0.0003, 0.01, 2000)
    same = stats.paired_comparison(market, market.copy())
    assert same["sharpe_diff"] == 0 and same["p_value"] == 1.0
    better = market + 0.0004  # the same days, 10 % a year more
    out = stats.paired_comparison(better, market)
    assert out["sharpe_diff"] > 0 and out["p_value"] < 0.01 and out["ci95"][0] > 0
    noise = market + rng.normal(0, 0.002, 2000)
    out = stats.paired_comparison(noise, market)
    assert out["p_value"] > 0.05 and out["ci95"][0] < 0 < out["ci95"][1]


def test_relative_metrics_and_calmar_by_hand():
    r = np.array([0.01, -0.02, 0.03, 0.0])
    ref = np.array([0.0, -0.01, 0.01, 0.01])
    active = r - ref
    m = stats.relative_metrics(r, ref)
    sd = np.std(active, ddof=1)
    assert math.isclose(m["tracking_error"], sd * math.sqrt(252))
    assert math.isclose(m["information_ratio"], active.mean() / sd * math.sqrt(252))
    assert math.isclose(stats.calmar(0.12, 0.3), 0.4) and math.isnan(stats.calmar(0.1, 0.0))


def test_banded_equal_weight_trades_less_than_daily():
    from envs.portfolio.synthetic import synthetic_prices

    panel = synthetic_prices(400, 5, seed=6)
    start = str(panel.index[70].date())
    daily, banded, erc = backtest(panel, [EqualWeight(band=0), EqualWeight(), RiskParity(5)],
                                  {"window": 5}, start)
    assert banded.metrics["annual_turnover"] < 0.5 * daily.metrics["annual_turnover"]
    assert erc.metrics["solver_failures"] == 0 and banded.metrics["vs_equal_weight"] is not None


def test_walkforward_windows_never_overlap_their_tests():
    dates = pd.bdate_range("2000-01-03", "2010-12-31")
    windows = plan_windows(dates, dates[0], 3, 1)
    # Tests 2003, 2004, ..., 2009: a 2010 test would run to 2011-01-03, past the data.
    assert len(windows) == 7 and windows[-1]["test_end"] <= "2010-12-31"
    for w in windows:
        assert w["train_start"] < w["train_end"] < w["test_start"] <= w["test_end"]
    for a, b in zip(windows, windows[1:], strict=False):
        assert a["test_end"] < b["test_start"]  # test windows chain without overlap
