"""The MPC baselines: their internal models are the plants' equations, and they control."""

from __future__ import annotations

import casadi as ca
import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs import cstr, cstr_env, pressure, pressure_env
from envs.mpc import CSTRMPC, PressureMPC, cstr_mpc, pressure_mpc
from envs.pid import hold_valve
from safe_trpo.run.controllers import evaluate_controller


def test_cstr_model_is_the_plant():
    y = ca.SX.sym("y", 2)
    f = ca.Function("f", [y], [ca.vertcat(*CSTRMPC._rhs(y, 302.0, 352.0, 1.03,
                                                         cstr.Params()))])
    for state in ([0.85, 330.0], [0.6, 345.0], [0.2, 380.0]):
        expected = cstr.derivatives(np.array([state]), 302.0,
                                    cstr.Params(Ti=352.0, Caf=1.03))[0]
        np.testing.assert_allclose(np.asarray(f(state)).ravel(), expected, rtol=1e-12)


@pytest.mark.parametrize("exponent", [1.0, 1.4])
def test_pressure_model_is_the_plant_with_the_relief_shut(exponent):
    params = pressure.Params(polytropic_exponent=exponent, reference_pressure=7.5)
    p = ca.SX.sym("p")
    f = ca.Function("f", [p], [PressureMPC._rhs(p, 0.4, 70.0, 7.5, params)])
    for pres in (3.0, 7.0, 9.0):
        expected = pressure.derivatives(np.array([[pres, 0.4]]), 0.4, 70.0, params, 0.0)[0, 0]
        assert abs(float(f(pres)) - expected) < 1e-10 * max(1.0, abs(expected))


@pytest.mark.parametrize("env_id, factory, module, limits", [
    ("SafeTRPO/CSTR-v0", cstr_mpc, cstr_env, {"temperature": 5.0, "runaway": 0.25}),
    ("SafeTRPO/PressureVessel-v0", pressure_mpc, pressure_env,
     {"pressure": 0.01, "relief": 0.25})])
def test_mpc_tracks_within_limits_and_respects_the_rate_limit(env_id, factory, module, limits):
    kwargs = {"episode_minutes": 12.0, "setpoint_period_minutes": 4.0}
    venv = gym.make_vec(env_id, num_envs=2, **kwargs)
    mpc = factory(module.make_config(kwargs))
    result = evaluate_controller(venv, mpc, 2, seed=5, limits=limits)
    idle = evaluate_controller(venv, hold_valve(module), 2, seed=5, limits=limits)
    assert result["tracking_error_mean"] < 0.5 * idle["tracking_error_mean"]
    assert all(c["frac_over_limit"] == 0.0 for c in result["costs"].values())
    steps = round(12.0 / module.make_config(kwargs).dt_minutes)
    # one solve per copy and step: 2 copies x 1 episode each, plus the evaluation's probe step
    assert len(mpc.solve_seconds) == 2 * steps + 2 and mpc.failures == 0
    # the plan's first move stays within one step's stroke
    obs, _ = venv.reset(seed=5)
    mpc.reset()
    index = module.OBS_NAMES.index("valve_opening")
    opening = obs[:, index] * module.OBS_SCALE[index] + module.OBS_CENTER[index]
    command = (mpc.act(obs)[:, 0] + 1.0) / 2.0
    config = module.make_config(kwargs)
    assert np.all(np.abs(command - opening) <= config.valve_rate_per_min * config.dt_minutes
                  + 1e-6)
