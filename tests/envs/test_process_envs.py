"""The process-control environments through Gymnasium: API, vector contract, costs, seeding,
and the PID baselines through the evaluation path."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import envs  # noqa: F401  (registers the ids)
from envs import cstr_env, pressure_env
from envs.cstr_env import CSTREnv, CSTRVectorEnv
from envs.pid import cstr_pid, hold_valve, pressure_pid
from envs.pressure_env import PressureVesselEnv, PressureVesselVectorEnv
from safe_trpo.config import load_scenario
from safe_trpo.errors import UserError
from safe_trpo.run.controllers import evaluate_controller
from safe_trpo.run.evaluate import run_episodes

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

PLANTS = [
    # (id, single env, vector env, module, short-episode kwargs)
    ("SafeTRPO/CSTR-v0", CSTREnv, CSTRVectorEnv, cstr_env, {"episode_minutes": 5.0}),
    ("SafeTRPO/PressureVessel-v0", PressureVesselEnv, PressureVesselVectorEnv, pressure_env,
     {"episode_minutes": 3.0}),
]
IDS = [p[0] for p in PLANTS]


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_gives_the_native_same_step_env(env_id):
    venv = gym.make_vec(env_id, num_envs=3)
    assert isinstance(venv.unwrapped, (CSTRVectorEnv, PressureVesselVectorEnv))
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3,) + venv.single_observation_space.shape
    assert obs.dtype == np.float32
    assert venv.unwrapped._plant.n_steps == 120  # the documented default episode length


@pytest.mark.parametrize("env_id, single, vector, module, kwargs", PLANTS)
def test_vector_env_equals_sync_vector_env_of_single_envs(env_id, single, vector, module,
                                                          kwargs):
    # Same seeds, same actions, across two autoresets: identical trajectories and infos.
    n = 4
    sync = SyncVectorEnv([lambda: single(**kwargs) for _ in range(n)],
                         autoreset_mode=AutoresetMode.SAME_STEP)
    native = vector(num_envs=n, **kwargs)
    o_sync, _ = sync.reset(seed=11)
    o_nat, _ = native.reset(seed=11)
    np.testing.assert_array_equal(o_sync, o_nat)
    rng = np.random.default_rng(0)
    endings = 0
    for _ in range(2 * native.unwrapped._plant.n_steps + 3):
        actions = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
        s = sync.step(actions)
        v = native.step(actions)
        for a, b in zip(s[:4], v[:4], strict=True):
            np.testing.assert_array_equal(a, b)
        if "final_obs" in s[4]:
            endings += 1
            np.testing.assert_array_equal(s[4]["_final_obs"], v[4]["_final_obs"])
            for i in np.flatnonzero(s[4]["_final_obs"]):
                np.testing.assert_array_equal(s[4]["final_obs"][i], v[4]["final_obs"][i])
            for key, value in s[4]["final_info"].items():
                np.testing.assert_array_equal(value, v[4]["final_info"][key])
        else:
            assert "final_obs" not in v[4]
            for key, value in s[4].items():
                np.testing.assert_array_equal(value, v[4][key])
    assert endings == 2


@pytest.mark.parametrize("env_id, single, vector, module, kwargs", PLANTS)
def test_autoreset_contract_and_truncation(env_id, single, vector, module, kwargs):
    venv = vector(num_envs=3, **kwargs)
    steps = venv._plant.n_steps
    assert steps == round(kwargs["episode_minutes"] / venv.config.dt_minutes)
    first, _ = venv.reset(seed=5)
    for t in range(1, steps + 1):
        obs, reward, terminated, truncated, info = venv.step(np.zeros((3, 1), np.float32))
        assert not terminated.any()  # nothing terminates: a runaway or a vent is a cost
        assert truncated.all() == (t == steps) and truncated.any() == (t == steps)
    assert info["_final_obs"].all() and info["_final_info"].all()
    names = [k for k in info["final_info"] if k.startswith("cost") or k == "tracking_error"]
    for key in names:  # a finished copy's step values are in both places
        np.testing.assert_array_equal(info["final_info"][key], info[key])
    # the returned observation already starts the next episode (its draws are fresh)
    final = np.stack(list(info["final_obs"]))
    assert not np.array_equal(final, obs) and not np.array_equal(obs, first)


@pytest.mark.parametrize("env_id", IDS)
def test_costs_are_non_negative_and_sum_to_cost(env_id):
    venv = gym.make_vec(env_id, num_envs=64)
    venv.reset(seed=2)
    rng = np.random.default_rng(1)
    totals = {}
    for _ in range(60):
        _, _, _, _, info = venv.step(rng.uniform(-1, 1, (64, 1)))
        parts = [k for k in info if k.startswith("cost_")]
        assert len(parts) == 2
        for k in parts + ["cost"]:
            assert np.all(info[k] >= 0.0)
            totals[k] = totals.get(k, 0.0) + info[k].sum()
        np.testing.assert_allclose(info["cost"], sum(info[k] for k in parts), rtol=1e-12)
    # random valve moves do break the limits: the costs are not identically zero
    assert totals["cost"] > 0.0


@pytest.mark.parametrize("env_id, single, vector, module, kwargs", PLANTS)
def test_seeding_is_reproducible(env_id, single, vector, module, kwargs):
    def run(seed):
        env = single(**kwargs)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for _ in range(8):
            obs, reward, *_ = env.step(np.array([0.3], np.float32))
            trace.append(np.append(obs, reward))
        return np.concatenate(trace)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


@pytest.mark.parametrize("env_id", IDS)
def test_bad_kwargs_are_one_line_user_errors(env_id):
    with pytest.raises(UserError, match="unknown .*'bogus'"):
        gym.make(env_id, bogus=1)
    with pytest.raises(UserError, match="dt_minutes"):
        gym.make_vec(env_id, num_envs=2, dt_minutes=-0.5)


@pytest.mark.parametrize("env_id, kwargs, message", [
    ("SafeTRPO/CSTR-v0", {"safe_temp_K": 355.0}, r"safe_temp_K \(355.0\) must be <= runaway"),
    ("SafeTRPO/PressureVessel-v0", {"relief_set_bar": 10.5},
     r"relief_set_bar \(10.5\) must be <= mawp_bar"),
    ("SafeTRPO/SpeedLimit-v0", {"speed_limit": "abc"},
     r"speed_limit: expected a number, got 'abc'"),
    ("SafeTRPO/SpeedLimit-v0", {"speed_limit": 1.5}, r"speed_limit: expected a number in \[-1"),
    ("SafeTRPO/SpeedLimit-v0", {"episode_steps": 0}, r"episode_steps: expected a number in \[1,"),
    ("SafeTRPO/SpeedLimit-v0", {"episode_steps": 2.5}, r"episode_steps: expected an integer"),
    ("SafeTRPO/SpeedLimit-v0", {"bogus": 1}, r"unknown \[env\] kwargs \['bogus'\]")])
def test_inconsistent_kwargs_are_one_line_user_errors(env_id, kwargs, message):
    for build in (lambda: gym.make(env_id, **kwargs),
                  lambda: gym.make_vec(env_id, num_envs=2, **kwargs)):
        with pytest.raises(UserError, match=message) as caught:
            build()
        assert env_id in str(caught.value) and "\n" not in str(caught.value)


def test_speed_limit_kwargs_reach_the_plant():
    from envs.speed_limit import SpeedLimitEnv, SpeedLimitVectorEnv

    venv = SpeedLimitVectorEnv(num_envs=2, episode_steps=4, speed_limit=0.3)
    assert venv.config.episode_steps == 4 and venv.config.speed_limit == 0.3
    venv.reset(seed=0)
    for _ in range(3):
        _, _, _, truncated, _ = venv.step(np.ones((2, 1), np.float32))
    assert not truncated.any() and venv.step(np.ones((2, 1), np.float32))[3].all()
    assert SpeedLimitEnv(speed_limit=-0.2).config.speed_limit == -0.2


def test_pendulum_vector_env_refuses_nan_actions():
    from envs.pendulum_vec import PendulumVectorEnv

    venv = PendulumVectorEnv(num_envs=2)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        venv.step(np.array([[0.5], [np.nan]], np.float32))


@pytest.mark.parametrize("env_id", IDS)
def test_nan_action_is_refused(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan], np.float32))


def test_cstr_valve_rate_limit_is_respected():
    venv = CSTRVectorEnv(num_envs=2)
    obs, _ = venv.reset(seed=0)
    index = cstr_env.OBS_NAMES.index("valve_opening")
    scale, center = cstr_env.OBS_SCALE[index], cstr_env.OBS_CENTER[index]
    opening = [obs[:, index] * scale + center]
    for action in (1.0, 1.0, -1.0, -1.0, -1.0):
        obs, *_ = venv.step(np.full((2, 1), action, np.float32))
        opening.append(obs[:, index] * scale + center)
    moves = np.abs(np.diff(np.array(opening), axis=0))
    limit = venv.config.valve_rate_per_min * venv.config.dt_minutes
    assert moves.max() <= limit + 1e-6 and moves.max() > 0.99 * limit


def test_relief_cost_only_when_the_pressure_is_above_set():
    venv = PressureVesselVectorEnv(num_envs=32)
    venv.reset(seed=4)
    rng = np.random.default_rng(2)
    vented = 0
    for _ in range(100):
        _, _, _, _, info = venv.step(rng.uniform(-1, 1, (32, 1)))
        venting = info["cost_relief"] > 0
        vented += venting.sum()
        # vent flow is zero at or below set at both ends of a step, so some end was above it
        assert np.all(info["pressure"][venting] > venv.config.relief_set_bar - 1.0)
    assert vented > 0


@pytest.mark.parametrize("env_id, module, pid", [
    ("SafeTRPO/CSTR-v0", cstr_env, cstr_pid), ("SafeTRPO/PressureVessel-v0", pressure_env,
                                                pressure_pid)])
def test_pid_beats_holding_the_valve(env_id, module, pid):
    venv = gym.make_vec(env_id, num_envs=16)
    tuned = evaluate_controller(venv, pid(), episodes=16, seed=2024)
    idle = evaluate_controller(venv, hold_valve(module), episodes=16, seed=2024)
    assert tuned["episodes"] == idle["episodes"] == 16
    assert tuned["tracking_error_mean"] < 0.5 * idle["tracking_error_mean"]
    assert tuned["return_mean"] > idle["return_mean"]
    total = sum(c["ep_cost_mean"] for c in tuned["costs"].values())
    assert total < sum(c["ep_cost_mean"] for c in idle["costs"].values())


def test_evaluation_reads_sync_and_native_envs_alike():
    kwargs = {"episode_minutes": 10.0}
    sync = SyncVectorEnv([lambda: CSTREnv(**kwargs) for _ in range(4)],
                         autoreset_mode=AutoresetMode.SAME_STEP)
    native = CSTRVectorEnv(num_envs=4, **kwargs)
    limits = {"temperature": 5.0, "runaway": 0.25}
    a = evaluate_controller(sync, cstr_pid(), 6, seed=9, limits=limits)
    b = evaluate_controller(native, cstr_pid(), 6, seed=9, limits=limits)
    assert a == b
    assert a["costs"]["runaway"]["limit"] == 0.25 and "frac_over_limit" in a["costs"]["runaway"]


def test_evaluation_sums_match_single_env_episodes():
    # Tier 1: evaluate_controller's figures from one copy-by-copy reference loop over single
    # envs seeded like the vector env's copies (seed + i), and run_episodes' extras directly.
    kwargs, seed = {"episode_minutes": 5.0}, 3
    native = CSTRVectorEnv(num_envs=2, **kwargs)
    refs = []
    for i in range(2):
        env, pid = CSTREnv(**kwargs), cstr_pid()
        obs, _ = env.reset(seed=seed + i)
        pid.reset()
        total = {"return": 0.0, "error": 0.0, "steps": 0, "temperature": 0.0, "cost_steps": 0}
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(pid.act(obs[None])[0])
            done = terminated or truncated
            total["return"] += reward
            total["error"] += info["tracking_error"]
            total["temperature"] += info["cost_temperature"]
            total["cost_steps"] += info["cost_temperature"] > 0
            total["steps"] += 1
        refs.append(total)
    out = evaluate_controller(native, cstr_pid(), 2, seed=seed)
    steps = sum(r["steps"] for r in refs)
    assert out["episodes"] == 2
    assert np.isclose(out["return_mean"], np.mean([r["return"] for r in refs]), atol=1e-9)
    assert np.isclose(out["tracking_error_mean"], sum(r["error"] for r in refs) / steps,
                      atol=1e-12)
    assert np.isclose(out["tracking_error_episode_max"],
                      max(r["error"] / r["steps"] for r in refs), atol=1e-12)
    temp = out["costs"]["temperature"]
    assert np.isclose(temp["ep_cost_mean"], np.mean([r["temperature"] for r in refs]))
    assert temp["frac_steps_with_cost"] == sum(r["cost_steps"] for r in refs) / steps
    result = run_episodes(native, cstr_pid(), 2, seed, ["cost_runaway"],
                          extra_keys=("tracking_error", "temperature"))
    assert np.allclose(result.extras["tracking_error"], [r["error"] for r in refs], atol=1e-12)
    assert set(result.extras) == {"tracking_error", "temperature"}
    assert run_episodes(native, cstr_pid(), 2, seed, ["cost_runaway"]).extras == {}
    with pytest.raises(UserError, match="no_such_key"):
        run_episodes(native, cstr_pid(), 2, seed, [], extra_keys=("no_such_key",))


@pytest.mark.parametrize("name, env_id, costs", [
    ("cstr_runaway.toml", "SafeTRPO/CSTR-v0", {"temperature", "runaway"}),
    ("pressure_relief.toml", "SafeTRPO/PressureVessel-v0", {"pressure", "relief"})])
def test_scenarios_name_the_env_and_its_costs(name, env_id, costs):
    scenario = load_scenario(SCENARIOS / name)
    assert scenario.env.id == env_id and scenario.algo.name == "cpo"
    assert {c.name for c in scenario.constraints} == costs
    venv = gym.make_vec(env_id, num_envs=2, **scenario.env.kwargs)
    venv.reset(seed=0)
    _, _, _, _, info = venv.step(np.zeros((2, 1), np.float32))
    assert all(c.info_key in info for c in scenario.constraints)


@pytest.mark.expensive
@pytest.mark.parametrize("name, module, pid", [
    ("cstr_runaway.toml", cstr_env, cstr_pid),
    ("pressure_relief.toml", pressure_env, pressure_pid)])
def test_cpo_learns_the_scenario_within_budget(tmp_path, name, module, pid):
    # Tier 3 (minutes): train the scenario as shipped, then evaluate the trained policy and the
    # baselines on the same fresh episodes through the same evaluation function.
    from safe_trpo.run.policy_io import load_policy
    from safe_trpo.run.trainer import start_run

    scenario = load_scenario(SCENARIOS / name, [f"run.out_dir={str(tmp_path)!r}"])
    outcome = start_run(scenario, progress=False)
    assert outcome.status == "completed"
    limits = {c.name: c.limit for c in scenario.constraints}
    venv = gym.make_vec(scenario.env.id, num_envs=50, **scenario.env.kwargs)
    results = {label: evaluate_controller(venv, controller, 100, 1_000_000, limits)
               for label, controller in (("cpo", load_policy(outcome.run_dir)), ("pid", pid()),
                                         ("hold", hold_valve(module)))}
    cpo = results["cpo"]
    for cost in limits:
        # Episode costs are heavy-tailed (one runaway is ~10 min and ~700 K min), so the mean
        # of 100 episodes is noisy; what must hold is that nearly every episode keeps within.
        assert cpo["costs"][cost]["frac_over_limit"] <= 0.05, (cost, cpo["costs"][cost])
    assert cpo["tracking_error_mean"] < 0.25 * results["hold"]["tracking_error_mean"]
    assert cpo["tracking_error_mean"] < 1.3 * results["pid"]["tracking_error_mean"]
