"""Portfolio-v0: accounting, costs, seeding, vectorisation and no look-ahead."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers SafeTRPO/Portfolio-v0)
from envs.portfolio import accounting as acc
from envs.portfolio.env import COST_NAMES, PortfolioEnv, PortfolioVectorEnv
from envs.portfolio.synthetic import synthetic_prices
from safe_trpo.errors import UserError


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return synthetic_prices(400, 3, seed=5)


def small_env(panel, **kw):
    return PortfolioEnv(prices=panel, episode_days=30, window=5, **kw)


def test_rebalance_charges_costs_on_drifted_weights():
    # Held 50/50 in A/B yesterday; today A rose 20%, B flat: drifted = (0.6/1.1, 0.5/1.1, 0).
    drifted = np.array([[0.6 / 1.1, 0.5 / 1.1, 0.0]])
    gross = np.array([[1.05, 0.90]])
    same = acc.rebalance(np.array([1.1]), drifted, drifted, gross, cost_rate=0.01)
    assert same.turnover[0] == 0.0 and same.trade_cost[0] == 0.0
    growth = 0.6 / 1.1 * 1.05 + 0.5 / 1.1 * 0.90
    assert math.isclose(same.wealth[0], 1.1 * growth, rel_tol=0, abs_tol=1e-12)
    # Back to 50/50: turnover is measured from the drifted weights, not yesterday's targets.
    target = np.array([[0.5, 0.5, 0.0]])
    out = acc.rebalance(np.array([1.1]), drifted, target, gross, cost_rate=0.01)
    turnover = abs(0.5 - 0.6 / 1.1) + abs(0.5 - 0.5 / 1.1)
    assert math.isclose(out.turnover[0], turnover, abs_tol=1e-15)
    assert math.isclose(out.trade_cost[0], 1.1 * 0.01 * turnover, abs_tol=1e-15)
    wealth = 1.1 * (1 - 0.01 * turnover) * (0.5 * 1.05 + 0.5 * 0.90)
    assert math.isclose(out.wealth[0], wealth, abs_tol=1e-12)
    assert math.isclose(out.log_return[0], math.log(wealth / 1.1), abs_tol=1e-12)
    assert np.allclose(out.drifted, [[0.525 / 0.975, 0.45 / 0.975, 0.0]], atol=1e-15)


def test_cash_is_the_settlement_account_in_turnover():
    cash = np.array([[0.0, 0.0, 1.0]])
    out = acc.rebalance(np.ones(1), cash, np.array([[0.3, 0.3, 0.4]]), np.ones((1, 2)), 0.001)
    assert math.isclose(out.turnover[0], 0.6, abs_tol=1e-15)


def test_cap_weights_iterates_until_no_asset_is_above_the_cap():
    w = acc.cap_weights(np.array([[0.7, 0.2, 0.1], [0.6, 0.35, 0.05], [0.3, 0.3, 0.4]]), 0.4)
    # Row 0: excess 0.3 shared 2:1 by B and cash. Row 1: B overflows in round two, cash takes it.
    assert np.allclose(w, [[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.3, 0.3, 0.4]], atol=1e-12)
    rng = np.random.default_rng(0)
    many = acc.cap_weights(acc.softmax(3 * rng.standard_normal((500, 6))), 0.25)
    assert (many[:, :-1] <= 0.25 + 1e-12).all() and np.allclose(many.sum(axis=1), 1.0)
    assert (many >= 0).all()


def test_cvar_is_the_mean_of_the_worst_five_percent():
    r = np.linspace(-0.05, 0.05, 40)  # worst 5% of 40 = 2 days
    assert math.isclose(acc.cvar(r)[0], -(-0.05 + -0.05 + 0.1 / 39) / 2, abs_tol=1e-15)
    assert math.isclose(acc.cvar(np.linspace(-0.05, 0.05, 60))[0],
                        -np.mean(np.linspace(-0.05, 0.05, 60)[:3]), abs_tol=1e-15)


def test_check_env_single_and_registered(panel):
    check_env(small_env(panel))
    env = gym.make("SafeTRPO/Portfolio-v0", prices=panel, episode_days=30, window=5)
    check_env(env.unwrapped)
    vec = gym.make_vec("SafeTRPO/Portfolio-v0", num_envs=3, vectorization_mode="vector_entry_point",
                       prices=panel, episode_days=30, window=5)
    assert isinstance(vec, PortfolioVectorEnv) and vec.observation_space.shape == (3, 5 * 3 + 11)


def test_observation_layout_and_info(panel):
    env = small_env(panel, execution_lag_days=0)
    obs, _ = env.reset(seed=1)
    t = env.day
    p = panel.to_numpy()
    logret = np.log(p[t - 4:t + 1] / p[t - 5:t])
    assert np.allclose(obs[:15], logret.ravel(), atol=1e-6)
    assert np.array_equal(obs[15:19], [0, 0, 0, 1]) and obs[19] == 0.0
    assert np.allclose(obs[20:23], logret.std(axis=0, ddof=1), atol=1e-6)
    assert np.array_equal(obs[23:], [1, 1, 1])  # every ticker holdable
    _, reward, terminated, truncated, info = env.step(np.zeros(4, dtype=np.float32))
    # Zero logits: 1/4 in each asset and in cash; all bought from cash (turnover 0.75).
    assert math.isclose(info["turnover"], 0.75, abs_tol=1e-12) and not terminated
    growth = 0.25 * (p[t + 1] / p[t]).sum() + 0.25
    assert math.isclose(reward, math.log((1 - 0.001 * 0.75) * growth), abs_tol=1e-12)
    assert info["cost"] == sum(info[f"cost_{k}"] for k in ("drawdown", "concentration",
                                                          "turnover", "cvar"))


def test_episode_length_truncation_and_seeded_starts(panel):
    env = small_env(panel)
    starts = []
    for seed in range(20):
        env.reset(seed=seed)
        starts.append(env.day)
    env.reset(seed=3)
    assert env.day == starts[3]
    assert len(set(starts)) > 10 and min(starts) >= 5 and max(starts) <= len(panel) - 1 - 30
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        steps += 1
    assert steps == 30
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(env.action_space.sample())


def test_costs_fire_on_their_limits():
    dates = pd.bdate_range("2021-01-04", periods=120, name="date")
    rises = np.cumprod(np.full(120, 1.001))
    prices = pd.DataFrame({"A": rises, "B": rises.copy()}, index=dates)
    prices.iloc[60:, 0] *= 0.7  # A crashes 30% on day 60
    env = PortfolioEnv(prices=prices, backtest=True, window=5, cvar_window=20,
                       execution_lag_days=0,
                       concentration_cap=0.6, turnover_cap=0.3, drawdown_limit=0.1,
                       cvar_limit=0.01)
    env.reset()
    infos = []
    while True:
        _, _, _, done, info = env.step_weights(np.array([0.7, 0.3, 0.0]))
        infos.append(info)
        if done:
            break
    day = [i["day"] for i in infos]
    crash = day.index(59)  # the trade at the close of 59 is hit by the drop to day 60
    assert all(i["cost_concentration"] == 1.0 for i in infos)
    assert infos[0]["cost_turnover"] == 1.0 and all(i["cost_turnover"] == 0 for i in infos[1:])
    assert [i["cost_drawdown"] for i in infos[crash - 1:crash + 2]] == [0.0, 1.0, 1.0]
    assert infos[crash]["drawdown"] > 0.1
    # CVaR over the last 20 days includes the -21% day for 20 days, then drops out.
    cvar = [i["cost_cvar"] for i in infos]
    assert cvar[crash:crash + 20] == [1.0] * 20 and cvar[crash + 20] == 0.0
    assert sum(cvar[:crash]) == 0.0


def test_vector_env_matches_single_envs_through_autoreset(panel):
    n, kw = 3, {"prices": panel, "episode_days": 25, "window": 5}
    vec = PortfolioVectorEnv(num_envs=n, **kw)
    ref = gym.vector.SyncVectorEnv([lambda: PortfolioEnv(**kw) for _ in range(n)],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs_v, _ = vec.reset(seed=42)
    obs_r, _ = ref.reset(seed=42)
    assert np.array_equal(obs_v, obs_r)
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(60):
        a = rng.normal(size=(n, 4)).astype(np.float32)
        out_v, out_r = vec.step(a), ref.step(a)
        for x, y in zip(out_v[:4], out_r[:4], strict=True):
            assert np.array_equal(x, y)
        iv, ir = out_v[4], out_r[4]
        done = out_v[3]
        for key in ("cost", "cost_drawdown", "cost_cvar", "wealth", "turnover"):
            if not done.all():  # SyncVectorEnv replaces a finished copy's info by reset's
                assert np.array_equal(iv[key][~done], ir[key][~done])
            if done.any():
                assert np.array_equal(iv["final_info"][key][done], ir["final_info"][key][done])
                assert np.array_equal(iv[key][done], iv["final_info"][key][done])
        if out_v[3].any():
            finished += int(out_v[3].sum())
            for i in np.flatnonzero(out_v[3]):
                assert np.array_equal(iv["final_obs"][i], ir["final_obs"][i])
            assert np.array_equal(iv["_final_obs"], ir["_final_obs"])
    assert finished == 2 * n


def test_no_look_ahead_in_backtest_observations(panel):
    t = 150  # perturb every price after day t
    future = panel.copy()
    future.iloc[t + 1:] *= np.random.default_rng(1).uniform(0.5, 1.5, future.iloc[t + 1:].shape)

    def observations(prices):
        env = PortfolioEnv(prices=prices, backtest=True, window=5,
                           backtest_start=str(panel.index[100].date()))
        obs, _ = env.reset()
        seen = {env.day: obs}
        while env.day < t + 2:
            obs, *_ = env.step(np.array([1.0, -1.0, 0.5, 0.0]))
            seen[env.day] = obs
        return seen

    base, moved = observations(panel), observations(future)
    for day in range(100, t + 1):
        assert np.array_equal(base[day], moved[day]), day
    assert not np.array_equal(base[t + 1], moved[t + 1])  # the perturbation is visible later


def test_training_never_reads_after_train_end(panel):
    end = panel.index[250]
    future = panel.copy()
    future.iloc[251:] *= 3.0
    kw = {"episode_days": 40, "window": 5, "train_end": str(end.date())}
    a = PortfolioVectorEnv(num_envs=4, prices=panel, **kw)
    b = PortfolioVectorEnv(num_envs=4, prices=future, **kw)
    oa, _ = a.reset(seed=0)
    ob, _ = b.reset(seed=0)
    last_day = 0
    for _ in range(200):
        act = np.zeros((4, 4))
        oa, ra, *_, ia = a.step(act)
        ob, rb, *_, ib = b.step(act)
        assert np.array_equal(oa, ob) and np.array_equal(ra, rb)
        last_day = max(last_day, int(ia["day"].max()) + 1)  # price read when realising
    assert last_day <= 250 and len(a.core.panel) == 251


def test_bad_kwargs_are_user_errors(panel):
    with pytest.raises(UserError, match="unknown option 'windw'"):
        PortfolioEnv(prices=panel, windw=5)
    with pytest.raises(UserError, match=r"window: expected an integer >= 2, got 1"):
        PortfolioEnv(prices=panel, window=1)
    with pytest.raises(UserError, match="train_end: expected a date before test_start"):
        PortfolioEnv(prices=panel, test_start="2000-05-01")
    with pytest.raises(UserError, match="test_start: expected a date after train_end"):
        PortfolioEnv(prices=panel, train_end="2000-06-01", test_start="2000-05-01")
    with pytest.raises(UserError, match=r"fewer than episode_days=1000 \+ 1"):
        PortfolioEnv(prices=panel, episode_days=1000)
    with pytest.raises(UserError, match=r"cost_rate: expected a number in \[0, 0.5\), got 'x'"):
        PortfolioEnv(prices=panel, cost_rate="x")
    with pytest.raises(UserError, match=r"episode_days: expected an integer >= 1, got 2.5"):
        PortfolioEnv(prices=panel, episode_days=2.5)
    with pytest.raises(UserError, match=r"ticker\(s\) ZZ not in the file"):
        PortfolioEnv(prices=panel, tickers=["S0", "ZZ"])
    # A TOML integer is not a year: pd.Timestamp(2014) would be 2014 ns after 1970.
    with pytest.raises(UserError, match=r"train_start: expected a date such as 2015-01-02 "
                                        r"\(a TOML date or a string\), got 2014$"):
        PortfolioEnv(prices=panel, train_start=2014)
    with pytest.raises(UserError, match=r"train_end: expected a date .*got 2000.5"):
        PortfolioEnv(prices=panel, train_end=2000.5)
    end = panel.index[300].date()  # a TOML date (datetime.date) is accepted
    assert PortfolioEnv(prices=panel, train_end=end).core.panel.index[-1].date() == end


def test_vector_env_takes_a_list_of_seeds_like_sync(panel):
    n, kw = 3, {"prices": panel, "episode_days": 10, "window": 5}
    vec = PortfolioVectorEnv(num_envs=n, **kw)
    ref = gym.vector.SyncVectorEnv([lambda: PortfolioEnv(**kw) for _ in range(n)],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    seeds = [7, 100, 3]
    obs_v, _ = vec.reset(seed=seeds)
    obs_r, _ = ref.reset(seed=seeds)
    assert np.array_equal(obs_v, obs_r)
    # Re-seeding only copy 1 through reset_mask leaves the others' generators running.
    obs_v, _ = vec.reset(seed=[None, 100, None], options={"reset_mask": [False, True, False]})
    assert np.array_equal(obs_v[1], obs_r[1])
    with pytest.raises(ValueError, match="2 seeds given for 3 copies"):
        vec.reset(seed=[1, 2])


def test_step_weights_refuses_invalid_weights(panel):
    env = small_env(panel)
    env.reset(seed=0)
    for bad in ([0.5, 0.5, 0.5, 0.0], [1.2, -0.2, 0.0, 0.0], [np.nan, 0.5, 0.5, 0.0]):
        with pytest.raises(ValueError, match="sum to 1"):
            env.step_weights(np.array(bad))
    with pytest.raises(ValueError, match="non-finite action"):
        env.step(np.array([np.nan, 0, 0, 0], dtype=np.float32))


def test_weight_cap_is_applied_to_actions(panel):
    env = small_env(panel, weight_cap=0.3, concentration_cap=0.35, execution_lag_days=0)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([5.0, 0.0, 0.0, 0.0], dtype=np.float32))
    assert math.isclose(info["max_weight"], 0.3, abs_tol=1e-12)
    assert info["cost_concentration"] == 0.0


SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "portfolio_drawdown.toml"


def test_scenario_builds_the_env_on_the_shipped_data():
    from safe_trpo.config import load_scenario
    from safe_trpo.run.make_env import env_kwargs, make_vector_env

    scenario = load_scenario(SCENARIO)
    assert scenario.env.id == "SafeTRPO/Portfolio-v0" and scenario.algo.name == "cpo"
    assert {c.name for c in scenario.constraints} == {"drawdown", "concentration"}
    assert {c.name for c in scenario.constraints} <= set(COST_NAMES)
    kwargs = env_kwargs(scenario.env)
    assert Path(kwargs["prices"]).samefile(Path(__file__).resolve().parents[2]
                                           / "data" / "stock_prices.csv")
    vec = make_vector_env(scenario.env, num_envs=2)
    assert isinstance(vec, PortfolioVectorEnv)
    assert list(vec.core.panel.columns) == list(kwargs["tickers"])
    assert vec.core.panel.index[-1] <= pd.Timestamp(kwargs["train_end"])
    # The test window has every ticker too (strict), with history for the observation window.
    test = PortfolioEnv(**{**kwargs, "backtest": True, "backtest_start": kwargs["test_start"],
                           "backtest_end": kwargs["test_end"]})
    assert test.panel.index[test.core.first_day] == pd.Timestamp("2015-01-02")
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 20 * 8 + 3 * 8 + 2) and np.isfinite(obs).all()
