"""SafeTRPO/FMU-v0 on real FMUs built in the tests: a C FMU and a pythonfmu FMU."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers SafeTRPO/FMU-v0)
from envs.fmu import FMUEnv
from tests.envs import fmu_fixtures
from tests.envs.fmu_fixtures import TANK_KWARGS

tank_fmu = fmu_fixtures.tank_fmu
tank3_fmu = fmu_fixtures.tank3_fmu
valve_fmu = fmu_fixtures.valve_fmu


def tank(fmu: Path, **changes: object) -> FMUEnv:
    return FMUEnv(fmu=str(fmu), **{**TANK_KWARGS, **changes})


def euler_tank(T: float, heat: float, steps: int, k: float = 0.1, substeps: int = 10) -> float:
    """The C model's integration, here, to check the env drives the FMU as declared."""
    for _ in range(steps * substeps):
        T += (1.0 / substeps) * (10.0 * heat - k * (T - 20.0))
    return T


def test_c_fmu_passes_the_gymnasium_checker(tank_fmu: Path) -> None:
    env = gym.make("SafeTRPO/FMU-v0", fmu=str(tank_fmu), **TANK_KWARGS)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_actions_map_onto_the_input_range_and_costs_measure_the_excess(tank_fmu: Path) -> None:
    env = tank(tank_fmu, randomize=None, start_values={"T0": 75.0}, episode_steps=50)
    obs, info = env.reset(seed=0)
    assert obs[0] == pytest.approx(2 * 75.0 / 150 - 1, abs=1e-6)  # declared range [0, 150]
    assert info["model_time"] == 0.0
    T, peak = 75.0, 0.0
    for step, action in enumerate([1.0, 1.0, -1.0, 0.0]):  # heat 1, 1, 0, 0.5
        heat = (action + 1) / 2
        obs, reward, terminated, truncated, info = env.step(np.array([action], np.float32))
        T = euler_tank(T, heat, 1)
        peak = max(peak, T)
        assert obs[0] == pytest.approx(2 * T / 150 - 1, abs=1e-5)
        assert reward == pytest.approx((T - 20.0) / 100.0)
        assert info["cost_overheat"] == pytest.approx(max(0.0, T - 80.0))
        assert info["cost"] == info["cost_overheat"]
        assert info["model_time"] == pytest.approx(step + 1.0)
        assert not terminated and not truncated
    assert peak > 80.0  # the full-heat steps did overheat: the cost above was not always 0


def test_below_bound_track_reward_and_truncation(tank_fmu: Path) -> None:
    env = tank(tank_fmu, randomize=None, start_values={"T0": 30.0}, episode_steps=3,
               reward={"track": "T", "setpoint": 50.0, "scale": 5.0},
               costs={"cold": {"output": "T", "below": 35.0}})
    env.reset(seed=1)
    T = 30.0
    for step in range(3):
        _, reward, terminated, truncated, info = env.step(np.array([-1.0]))  # heater off
        T = euler_tank(T, 0.0, 1)
        assert reward == pytest.approx(-abs(T - 50.0) / 5.0)
        assert info["cost_cold"] == pytest.approx(35.0 - T)
        assert truncated == (step == 2) and not terminated


def test_randomized_parameters_are_seeded(tank_fmu: Path) -> None:
    env = tank(tank_fmu)
    first = [env.reset(seed=s)[0][0] for s in (3, 3, 4)]
    assert first[0] == first[1] != first[2]
    starts = [env.reset()[0][0] * 75 + 75 for _ in range(30)]  # unseeded resets continue
    assert 20.0 <= min(starts) < max(starts) <= 40.0


def test_python_fmu_built_with_pythonfmu(valve_fmu: Path) -> None:
    env = FMUEnv(fmu=str(valve_fmu), step_size=0.5, episode_steps=4,
                 actions=[{"name": "u", "low": 0.0, "high": 1.0}],
                 observations=["level", "flow"], reward={"output": "flow"},
                 costs={"flow": {"output": "flow"}}, start_values={"outflow": 1.0})
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [1.0, 0.0]  # no declared range: raw units
    obs, reward, _, _, info = env.step(np.array([0.0]))  # u = 0.5 -> flow 5
    assert reward == pytest.approx(5.0) and info["cost_flow"] == pytest.approx(5.0)
    assert obs[0] == pytest.approx(1.0 + 0.5 * (5.0 - 1.0))  # outflow start value was applied
    env.close()


def test_fmi3_fmu_runs_the_same_plant_as_its_fmi2_twin(tank_fmu: Path, tank3_fmu: Path) -> None:
    """One model (tank_core.h) behind both standards: identical rollouts, step for step."""
    rollouts = []
    for fmu in (tank_fmu, tank3_fmu):
        env = tank(fmu, randomize={"T0": [70.0, 80.0], "k": [0.05, 0.15]})
        if fmu == tank3_fmu:
            check_env(env, skip_render_check=True)
            assert env.fmu_spec.fmi_version == "3.0"
        steps = [env.reset(seed=4)[0].tolist()]
        for action in np.linspace(0, 1, 12):
            obs, reward, _, truncated, info = env.step(np.array([action], np.float32))
            steps.append((obs.tolist(), reward, info["cost_overheat"], info["model_time"]))
            if truncated:
                steps.append(env.reset()[0].tolist())
        env.close()
        rollouts.append(steps)
    assert rollouts[0] == rollouts[1]
    assert any(step[2] > 0 for step in rollouts[1] if isinstance(step, tuple))  # it overheated
