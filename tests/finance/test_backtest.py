"""Backtester: hand-computed accounting, baselines on the shipped data, trained-run path, errors."""

from __future__ import annotations

import json
import math
import statistics
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gymnasium import spaces

from envs.portfolio.baselines import BASELINE_NAMES, EqualWeight, MeanVariance, MinVariance
from envs.portfolio.synthetic import synthetic_prices
from safe_trpo.errors import UserError
from safe_trpo.finance.backtest import PolicyStrategy, backtest, run_backtest_command
from safe_trpo.record.audit import AuditLog, read_lines, verify_run

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
STOCKS = DATA_DIR / "stock_prices.csv"


def test_equal_weight_backtest_matches_hand_computation():
    dates = pd.bdate_range("2021-03-01", periods=6, name="date")
    panel = pd.DataFrame({"A": [10, 10, 10, 11, 9.9, 10.89],
                          "B": [20, 20, 20, 19, 20.9, 20.9],
                          "C": [5, 5, 5, 5.5, 5.5, 4.95]}, index=dates, dtype=float)
    c = 0.002
    # Execution lag 0 (filled at the deciding close) and no band (daily rebalancing).
    (run,) = backtest(panel, [EqualWeight(band=0)],
                      {"window": 2, "cost_rate": c, "turnover_cap": 0.2,
                       "execution_lag_days": 0}, str(dates[2].date()))
    # Close of day 2: buy 1/3 of each from cash: turnover 1. Day 3 moves: 1.1, 0.95, 1.1.
    w1 = (1 - c * 1.0) * (1.1 + 0.95 + 1.1) / 3
    # Drifted (1.1, 0.95, 1.1) / 3.15 back to 1/3 each = (1.05, 1.05, 1.05) / 3.15.
    tau1 = (0.05 + 0.10 + 0.05) / 3.15
    w2 = w1 * (1 - c * tau1) * (0.9 + 1.1 + 1.0) / 3  # day 4 moves: 0.9, 1.1, 1.0
    tau2 = (abs(0.9 - 1.0) + abs(1.1 - 1.0) + 0.0) / 3.0  # drifted (0.9, 1.1, 1.0) / 3
    w3 = w2 * (1 - c * tau2) * (1.1 + 1.0 + 0.9) / 3  # day 5 moves: 1.1, 1.0, 0.9
    assert np.allclose(run.wealth, [1.0, w1, w2, w3], rtol=0, atol=1e-12)
    assert run.dates == [str(d.date()) for d in dates[2:]]
    m = run.metrics
    returns = [w1 - 1, w2 / w1 - 1, w3 / w2 - 1]
    mean, sd = statistics.fmean(returns), statistics.stdev(returns)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / 3)
    expected = {
        "final_wealth": w3,
        "annual_return": w3 ** (252 / 3) - 1,
        "annual_volatility": sd * math.sqrt(252),
        "sharpe": mean / sd * math.sqrt(252),
        "sortino": mean / downside * math.sqrt(252),
        "max_drawdown": 1 - w3 / w1,
        "cvar_95": -min(returns),  # the worst 5% of 3 days is the single worst day
        "avg_daily_turnover": (1.0 + tau1 + tau2) / 3,
        "total_costs": c * 1.0 + c * tau1 * w1 + c * tau2 * w2,
    }
    for key, value in expected.items():
        assert math.isclose(m[key], value, rel_tol=0, abs_tol=1e-9), key
    assert m["days"] == 3
    assert m["breach_days"] == {"drawdown": 0, "concentration": 0, "turnover": 1, "cvar": 0}


class FixedWeights:
    name, solver_failures = "fixed", 0

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=float)

    def target_weights(self, d):
        return self.weights.copy()


class FakeController:
    """Controller protocol: zero logits, i.e. equal weight over the assets and cash."""

    def __init__(self, n_actions):
        self.n_actions, self.resets, self.shapes = n_actions, 0, []

    def act(self, obs):
        self.shapes.append(obs.shape)
        return np.zeros((obs.shape[0], self.n_actions), dtype=np.float32)

    def reset(self, mask=None):
        self.resets += 1


def test_policy_strategy_goes_through_the_same_accounting():
    panel = synthetic_prices(200, 3, seed=2)
    start = str(panel.index[70].date())
    fake = FakeController(4)
    from envs.portfolio.env import PortfolioEnv

    env = PortfolioEnv(prices=panel, backtest=True, backtest_start=start, window=10)
    policy = PolicyStrategy(fake, env.core.action_to_weights)
    kw = {"window": 10}
    run_p, run_f = backtest(panel, [policy, FixedWeights([0.25] * 4)], kw, start)
    assert np.allclose(run_p.wealth, run_f.wealth, rtol=0, atol=1e-12)
    assert fake.resets == 1 and set(fake.shapes) == {(1, 10 * 3 + 11)}
    assert len(fake.shapes) == len(run_p.wealth) - 1 == 200 - 71


@pytest.mark.parametrize("cls", [MinVariance, MeanVariance])
def test_optimising_baselines_do_not_look_ahead(cls):
    panel = synthetic_prices(160, 4, seed=3)
    t = 120
    future = panel.copy()
    future.iloc[t + 1:] *= np.random.default_rng(0).uniform(0.7, 1.3, future.iloc[t + 1:].shape)
    start = str(panel.index[70].date())
    (a,) = backtest(panel, [cls(4, rebalance_every=1)], {}, start)
    (b,) = backtest(future, [cls(4, rebalance_every=1)], {}, start)
    k = t - 70  # wealth index of the close of day t
    assert np.array_equal(a.wealth[:k + 1], b.wealth[:k + 1])
    assert not np.allclose(a.wealth[k + 2:], b.wealth[k + 2:])
    assert a.metrics["solver_failures"] == 0


def test_min_variance_is_less_volatile_than_equal_weight_in_sample_structure():
    # Asset S0 is 3x more volatile than the rest and uncorrelated: min-variance must underweight it
    rng = np.random.default_rng(4)
    returns = rng.normal(0, 0.01, (300, 3)) * np.array([3.0, 1.0, 1.0])
    panel = pd.DataFrame(100 * np.exp(np.cumsum(returns, axis=0)),
                         index=pd.bdate_range("2010-01-04", periods=300, name="date"),
                         columns=["S0", "S1", "S2"])
    start = str(panel.index[61].date())
    mv, ew = backtest(panel, [MinVariance(3), EqualWeight()], {}, start)
    assert mv.metrics["annual_volatility"] < 0.8 * ew.metrics["annual_volatility"]


@pytest.mark.parametrize("policy", BASELINE_NAMES)
def test_backtest_command_on_shipped_data(tmp_path, capsys, policy):
    out = tmp_path / "out" / "bt.json"
    assert run_backtest_command(STOCKS, policy, "2016-01-01", "2016-12-31", 5.0, out) == 0
    report = json.loads(out.read_text())
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report["wealth_plot"] == png.name
    raw = pd.read_csv(STOCKS, index_col="date", parse_dates=True).loc["2016-01-01":"2016-12-31"]
    assert report["days"] == len(raw) - 1 and report["cost_rate"] == 5e-4
    assert report["start"] == "2016-01-04" and report["end"] == "2016-12-30"
    assert report["policy"] == policy and report["metrics"] == report["baselines"][policy]
    for name in BASELINE_NAMES:
        metrics = report["baselines"][name]
        for key, value in metrics.items():
            if key == "sharpe_ci95":
                lo, hi = value
                assert lo < metrics["sharpe"] < hi, name
            elif key == "vs_equal_weight":
                assert (value is None) == (name == "equal-weight")
                if value is not None:
                    lo, hi = value["ci95"]
                    assert lo <= value["sharpe_diff"] <= hi and 0 < value["p_value"] <= 1
            elif key == "information_ratio" and name == "equal-weight":
                assert value is None  # NaN (no active return against itself) is null in JSON
            elif key != "breach_days":
                assert value is not None and math.isfinite(value), (name, key)
        assert metrics["avg_daily_turnover"] >= 1.0 / report["days"]  # the initial allocation
        assert metrics["final_wealth"] > 0.5
    bh = report["baselines"]["buy-and-hold"]
    assert math.isclose(bh["total_costs"], 5e-4, rel_tol=1e-12)  # traded once, from cash
    table = capsys.readouterr().out
    assert f"{policy}*" in table and "Sharpe" in table and "days drawdown > 0.15" in table


def install_fake_policy_io(monkeypatch, tickers, n_actions, train=("2010-01-01", "2014-12-31")):
    """A stand-in for safe_trpo.run.policy_io: same attributes as TrainedPolicy (scenario,
    obs_space,
    action_space, act, reset); observation size for window 10."""
    obs_dim = 10 * len(tickers) + 3 * len(tickers) + 2
    trained = types.SimpleNamespace(
        scenario=types.SimpleNamespace(env=types.SimpleNamespace(
            id="SafeTRPO/Portfolio-v0", num_envs=1, data_files={"prices": str(STOCKS)},
            kwargs={"tickers": tickers, "train_start": train[0],
                    "train_end": train[1], "test_start": "2016-01-01",
                    "test_end": "2016-06-30", "window": 10, "episode_days": 60,
                    "drawdown_limit": 0.1})),
        obs_space=spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32),
        action_space=spaces.Box(-5.0, 5.0, shape=(n_actions,), dtype=np.float32))
    controller = FakeController(n_actions)
    trained.act, trained.reset = controller.act, controller.reset
    module = types.ModuleType("safe_trpo.run.policy_io")

    def load_policy(run_dir):
        trained.run_dir = Path(run_dir)
        return trained

    module.load_policy = load_policy
    monkeypatch.setitem(sys.modules, "safe_trpo.run.policy_io", module)
    return controller


def test_backtest_of_a_run_folder_appends_to_its_audit_log(tmp_path, monkeypatch, capsys):
    controller = install_fake_policy_io(monkeypatch, ["AAPL", "JPM", "XOM"], 4)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with AuditLog(run_dir) as log:
        log.append("run_started", run_id="run")
    out = run_dir / "backtest.json"
    assert run_backtest_command(STOCKS, str(run_dir), None, None, None, out) == 0
    report = json.loads(out.read_text())
    assert report["start"] == "2016-01-04" and report["end"] == "2016-06-30"  # test window
    assert report["tickers"] == ["AAPL", "JPM", "XOM"] and report["limits"]["drawdown"] == 0.1
    assert controller.resets == 1 and len(controller.shapes) == report["days"]
    lines = read_lines(run_dir)
    backtest_line = next(line for line in lines if line["type"] == "backtest")
    assert backtest_line["policy"] == str(run_dir) == report["policy"]
    assert backtest_line["metrics"] == report["metrics"]
    assert set(backtest_line["baselines"]) == set(BASELINE_NAMES)
    assert backtest_line["prices_sha256"] == report["prices_sha256"]
    assert {line["path"] for line in lines if line["type"] == "file"} == {
        "backtest.json", "backtest.png"}
    assert verify_run(run_dir).ok
    assert "policy*" in capsys.readouterr().out


def test_run_folder_with_tickers_missing_from_the_backtest_file(tmp_path, monkeypatch):
    install_fake_policy_io(monkeypatch, ["AAPL", "ZZZZ"], 3)
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match=r"ticker\(s\) ZZZZ not in the file"):
        run_backtest_command(STOCKS, str(tmp_path / "run"), None, None, None, None)


def test_bad_inputs_raise_user_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("date,A,B\n2020-01-02,1,2\n2020-01-02,1,2\n")
    with pytest.raises(UserError, match=r"bad.csv: line 3: duplicate date"):
        run_backtest_command(bad, "equal-weight", None, None, None, None)
    with pytest.raises(UserError, match="price file not found"):
        run_backtest_command(tmp_path / "none.csv", "equal-weight", None, None, None, None)
    with pytest.raises(UserError, match=r"--policy: expected one of equal-weight"):
        run_backtest_command(bad, "best-ever", None, None, None, None)
    good = tmp_path / "good.parquet"
    synthetic_prices(100, 3, seed=0).to_parquet(good)
    with pytest.raises(UserError, match=r"--cost-bps: expected a number in \[0, 5000\)"):
        run_backtest_command(good, "equal-weight", None, None, -3.0, None)
    with pytest.raises(UserError, match="needs 60 trading days of history"):
        run_backtest_command(good, "equal-weight", "2000-01-10", None, None, None)
    assert run_backtest_command(good, "min-variance", None, None, None, None) == 0


def test_in_sample_window_of_a_run_is_flagged(tmp_path, monkeypatch, capsys):
    install_fake_policy_io(monkeypatch, ["AAPL", "JPM", "XOM"], 4)
    (tmp_path / "run").mkdir()
    run_backtest_command(STOCKS, str(tmp_path / "run"), "2014-06-02", "2014-09-30", None, None)
    assert "overlaps the policy's training data" in capsys.readouterr().out


@pytest.mark.parametrize("window, in_sample", [
    (("2014-06-02", "2014-09-30"), False),  # ends before training starts: out of sample
    (("2014-11-03", "2015-03-31"), True),  # runs into the training window
    (("2015-03-02", "2015-06-30"), True)])  # inside it
def test_window_before_training_is_out_of_sample(tmp_path, monkeypatch, capsys, window,
                                                 in_sample):
    install_fake_policy_io(monkeypatch, ["AAPL", "JPM", "XOM"], 4,
                           train=("2015-01-01", "2015-12-31"))
    (tmp_path / "run").mkdir()
    out = tmp_path / "bt.json"
    run_backtest_command(STOCKS, str(tmp_path / "run"), *window, None, out)
    assert json.loads(out.read_text())["in_sample"] is in_sample
    assert ("overlaps the policy's training data" in capsys.readouterr().out) is in_sample


def test_policy_with_the_wrong_shape_is_refused(tmp_path, monkeypatch):
    install_fake_policy_io(monkeypatch, ["AAPL", "JPM", "XOM"], 4)
    trained = sys.modules["safe_trpo.run.policy_io"].load_policy(tmp_path)
    (tmp_path / "run").mkdir()
    good = trained.obs_space
    trained.obs_space = spaces.Box(-1.0, 1.0, shape=(99,), dtype=np.float32)
    with pytest.raises(UserError, match=r"observations have shape \(99,\), the backtest env's "
                                        r"\(41,\)"):
        run_backtest_command(STOCKS, str(tmp_path / "run"), None, None, None, None)
    trained.obs_space, trained.action_space = good, spaces.Box(-1.0, 1.0, shape=(5,))
    with pytest.raises(UserError, match=r"actions have shape \(5,\), the backtest env's "
                                        r"\(4,\)"):
        run_backtest_command(STOCKS, str(tmp_path / "run"), None, None, None, None)


def test_json_output_errors_are_user_errors(tmp_path, capsys):
    prices = tmp_path / "p.parquet"
    synthetic_prices(100, 3, seed=0).to_parquet(prices)
    with pytest.raises(UserError, match=r"--json .*out.png: expected a .json path"):
        run_backtest_command(prices, "equal-weight", None, None, None, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    target = blocker / "sub" / "bt.json"
    with pytest.raises(UserError, match=r"--json: cannot write .*a_file/sub/bt.json"):
        run_backtest_command(prices, "equal-weight", None, None, None, target)
