"""Actuator and measurement realism of the process envs: the valve's ramp within a step and
the coolant lag's exact response, analyser dead time, the move penalty, the setpoint margin
below the relief set pressure, and the pressure PID's feedforward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import envs  # noqa: F401  (registers the ids)
from envs import cstr_env, pressure_env
from envs.cstr_env import CSTRVectorEnv, coolant_response
from envs.pid import pressure_pid
from envs.pressure_env import PressureVesselVectorEnv
from safe_trpo.errors import UserError
from safe_trpo.run.controllers import evaluate_controller


@pytest.mark.parametrize("tc0, v0, v1, rate, dt, tau", [
    (300.0, 0.5, 1.0, 1.0, 0.5, 1.0),  # ramps the whole step
    (305.0, 0.5, 0.6, 1.0, 0.5, 1.0),  # ramps 0.1 min, then holds
    (295.0, 0.9, 0.2, 2.0, 0.5, 0.3),
    (300.0, 0.3, 0.3, 1.0, 0.5, 1.0)])  # no move
def test_coolant_response_is_the_lag_driven_by_a_ramping_valve(tc0, v0, v1, rate, dt, tau):
    # Reference: the lag ODE integrated with the valve written as a ramp in time, and the mean
    # by quadrature, independent of the closed form.
    lo, hi = 290.0, 310.0
    move = np.clip(v1 - v0, -rate * dt, rate * dt)

    def valve(t):
        return v0 + np.sign(move) * min(rate * t, abs(move))

    def rhs(t, y):
        target = hi - valve(t) * (hi - lo)
        return [(target - y[0]) / tau, y[0]]

    sol = solve_ivp(rhs, (0.0, dt), [tc0, 0.0], rtol=1e-11, atol=1e-11, max_step=dt / 200)
    end, mean = coolant_response(np.array([tc0]), np.array([hi - v0 * (hi - lo)]),
                                 np.array([hi - (v0 + move) * (hi - lo)]),
                                 np.array([abs(move) / rate]), dt, tau)
    assert abs(end[0] - sol.y[0, -1]) < 1e-7 and abs(mean[0] - sol.y[1, -1] / dt) < 1e-7


def test_cstr_valve_ramps_instead_of_jumping():
    # A full-open command from half open: with the ramp the coolant is warmer at the end of the
    # step than if the valve had jumped at its start (it was colder for less of the step).
    venv = CSTRVectorEnv(num_envs=1)
    venv.reset(seed=0)
    _, _, _, _, info = venv.step(np.ones((1, 1), np.float32))
    plant = venv._plant
    assert abs(info["valve_travel"][0] - 0.5) < 1e-12 and abs(plant.valve[0] - 1.0) < 1e-12
    jumped = 290.0 + (300.0 - 290.0) * np.exp(-0.5)  # target 290 K from the start
    assert plant.tc[0] > jumped + 0.5


def test_analyser_dead_time_delays_the_concentration_only():
    kwargs = {"episode_minutes": 10.0, "noise_ca": 0.0, "noise_temp": 0.0}
    fresh, late = CSTRVectorEnv(2, **kwargs), CSTRVectorEnv(2, analyser_dead_time_minutes=1.5,
                                                              **kwargs)
    a, _ = fresh.reset(seed=3)
    b, _ = late.reset(seed=3)
    seen_a, seen_b = [a], [b]
    for action in np.linspace(-1.0, 1.0, 8):
        act = np.full((2, 1), action, np.float32)
        seen_a.append(fresh.step(act)[0])
        seen_b.append(late.step(act)[0])
    seen_a, seen_b = np.array(seen_a), np.array(seen_b)
    ca = cstr_env.OBS_NAMES.index("ca")
    delay = 3  # 1.5 min / 0.5 min steps
    np.testing.assert_array_equal(seen_b[delay:, :, ca], seen_a[:-delay, :, ca])
    others = [i for i in range(len(cstr_env.OBS_NAMES)) if i != ca]
    np.testing.assert_array_equal(seen_b[:, :, others], seen_a[:, :, others])


@pytest.mark.parametrize("vector", [CSTRVectorEnv, PressureVesselVectorEnv])
def test_move_penalty_charges_valve_travel(vector):
    plain, charged = vector(4), vector(4, move_penalty=2.0)
    plain.reset(seed=1)
    charged.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        act = rng.uniform(-1, 1, (4, 1)).astype(np.float32)
        _, r0, _, _, info = plain.step(act)
        _, r1, _, _, _ = charged.step(act)
        assert np.all(info["valve_travel"] > 0)
        np.testing.assert_allclose(r0 - r1, 2.0 * info["valve_travel"], rtol=1e-12)


def test_setpoints_keep_the_operating_margin_below_relief_set():
    with pytest.raises(UserError, match="setpoint_max \\(9.4\\) must keep the operating_margin"):
        gym.make("SafeTRPO/PressureVessel-v0", setpoint_max=9.4)
    # the default keeps 10 % of set gauge: highest setpoint <= 1.01325 + 0.9 * 8.48675
    config = pressure_env.PressureConfig()
    assert config.setpoint_max <= 1.01325 + 0.9 * (config.relief_set_bar - 1.01325)
    gym.make("SafeTRPO/PressureVessel-v0", setpoint_max=9.3, operating_margin=0.02)


def test_pressure_feedforward_opens_with_the_surge():
    # On the adiabatic vessel with surges up to +120 % (where they lift the relief valve), the
    # same episodes: the feedforward vents less and tracks better than the feedback-only loop.
    venv = gym.make_vec("SafeTRPO/PressureVessel-v0", num_envs=16, polytropic_exponent=1.4,
                        surge_max_fraction=1.2)
    limits = {"pressure": 0.01, "relief": 0.25}
    fb = evaluate_controller(venv, pressure_pid(), 32, seed=77, limits=limits)
    ff = evaluate_controller(venv, pressure_pid(feedforward=True), 32, seed=77, limits=limits)
    assert fb["costs"]["relief"]["ep_cost_mean"] > 1.0  # the surges do lift it
    assert ff["costs"]["relief"]["ep_cost_mean"] < fb["costs"]["relief"]["ep_cost_mean"]
    assert ff["tracking_error_mean"] < fb["tracking_error_mean"]
