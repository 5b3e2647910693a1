"""CSTR physics (envs.cstr): exact checks against independent references (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import fsolve

from envs import _rodas, cstr
from envs.cstr_env import CSTRVectorEnv

RUNAWAY_DT = 26.0 / 60.0  # pcgym's CSTR control interval, min


def radau(state0, coolant_temp: float, dt: float, params: cstr.Params | None = None,
          rtol: float = 1e-10):
    """Reference: scipy's Radau IIA (rtol 1e-10 unless told), one row at a time."""
    params = params or cstr.Params()
    sol = solve_ivp(lambda t, y: cstr.derivatives(y[None], coolant_temp, params)[0], (0.0, dt),
                    np.asarray(state0, float), method="Radau", rtol=rtol, atol=1e-12,
                    jac=lambda t, y: cstr.jacobian(y[None], coolant_temp, params)[0])
    assert sol.success
    return sol.y[:, -1]


def rk4(state, coolant_temp: float, h: float):
    """One classic fixed-step RK4 step (what a non-stiff simulator would do)."""
    def f(y):
        return cstr.derivatives(y[None], coolant_temp)[0]
    k1 = f(state)
    k2 = f(state + h / 2 * k1)
    k3 = f(state + h / 2 * k2)
    k4 = f(state + h * k3)
    return state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def test_low_steady_state_at_300K_matches_the_benchmark():
    # The published steady state of the classic benchmark at Tc = 300 K.
    root = fsolve(lambda y: cstr.derivatives(y[None], 300.0)[0], [0.9, 320.0], xtol=1e-12)
    assert abs(root[0] - 0.87725) < 5e-6 and abs(root[1] - 324.475) < 5e-4
    assert cstr.low_steady_state(300.0) == pytest.approx(tuple(root), abs=1e-9)


def test_step_holds_the_steady_state():
    ss = np.array([cstr.low_steady_state(300.0)])
    after = ss
    for _ in range(20):  # 10 minutes
        after = cstr.step(after, 300.0, 0.5)
    assert np.abs(after - ss).max() < 1e-8


def test_runaway_step_matches_radau_within_0_1_K():
    start = np.array([[0.5, 360.0]])
    out = cstr.step(start, 310.0, RUNAWAY_DT)[0]
    ref = radau(start[0], 310.0, RUNAWAY_DT)
    assert ref[1] > 410.0  # it really runs away in this step
    assert abs(out[1] - ref[1]) < 0.1
    assert abs(out[0] - ref[0]) < 1e-4


def test_fixed_step_rk4_fails_the_runaway_step():
    # Why the adaptive Rosenbrock method exists: one RK4 step over the same interval misses
    # most of the ignition (about 12 K low, several times too much A left).
    out = rk4(np.array([0.5, 360.0]), 310.0, RUNAWAY_DT)
    ref = radau([0.5, 360.0], 310.0, RUNAWAY_DT)
    assert abs(out[1] - ref[1]) > 5.0
    assert out[0] > 5 * ref[0]


def test_runaway_transients_match_radau():
    # Ignitions from several starting points and coolant temperatures, per-row parameters,
    # all in one batch; none is near the ignition boundary (where any tolerance is too loose).
    states = np.array([[0.9, 345.0], [0.7, 355.0], [0.6, 370.0], [0.3, 390.0], [0.8, 380.0],
                       [0.95, 340.0]])
    coolant = np.array([312.0, 305.0, 300.0, 295.0, 308.0, 315.0])
    params = cstr.Params(UA=np.array([5e4, 4.5e4, 5.5e4, 5e4, 5e4, 4.6e4]),
                         Ti=np.array([350.0, 355.0, 345.0, 350.0, 350.0, 352.0]))
    out = cstr.step(states, coolant, 0.5, params)
    for i in range(len(states)):
        row = cstr.Params(UA=params.UA[i], Ti=params.Ti[i])
        ref = radau(states[i], coolant[i], 0.5, row)
        assert abs(out[i, 1] - ref[1]) < 0.05, i
        assert abs(out[i, 0] - ref[0]) < 1e-4, i
    assert out[:, 1].max() > 420.0


def test_runaway_steps_under_random_valve_moves_match_radau(monkeypatch):
    # The accuracy the environments rely on, where it is hardest: steps of the vector env under
    # uniform random valve commands in which a reactor runs away (T above 350 K, moving more
    # than 2 K), each re-integrated alone with Radau: within 0.1 K.
    record = []
    original = cstr.advance

    def recording(ca, temp, coolant, dt, params):
        out = original(ca, temp, coolant, dt, params)
        per_row = [np.broadcast_to(v, ca.shape).copy()
                   for v in (coolant, params.UA, params.k0, params.Ti, params.Caf)]
        record.append((ca.copy(), temp.copy(), *per_row, out[0].copy(), out[1].copy()))
        return out

    monkeypatch.setattr(cstr, "advance", recording)
    venv = CSTRVectorEnv(num_envs=256)
    venv.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(20):
        venv.step(rng.uniform(-1, 1, (256, 1)).astype(np.float32))
    ca, temp, coolant, ua, k0, ti, caf, new_ca, new_temp = (
        np.concatenate([r[i] for r in record]) for i in range(9))
    hot = np.flatnonzero((np.maximum(temp, new_temp) > 350.0) & (np.abs(new_temp - temp) > 2.0))
    assert hot.size > 100
    for i in rng.choice(hot, size=16, replace=False):
        row = cstr.Params(UA=ua[i], k0=k0[i], Ti=ti[i], Caf=caf[i])
        ref = radau([ca[i], temp[i]], coolant[i], venv.config.dt_minutes, row)
        assert abs(new_temp[i] - ref[1]) < 0.1, (i, new_temp[i] - ref[1])
        assert abs(new_ca[i] - ref[0]) < 1e-3, (i, new_ca[i] - ref[0])


def test_rodas4_converges_with_order_four():
    # Fixed steps, halving h: the error must shrink ~16x (a wrong coefficient breaks this).
    tc, span = 302.0, 1.0
    ref = radau([0.7, 335.0], tc, span, rtol=1e-13)
    row = np.array([float(c) for c in cstr.coefficients(cstr.Params(), tc)])
    errors = []
    for n in (16, 32, 64):
        ca, temp = 0.7, 335.0
        for _ in range(n):
            ca, temp, _, _ = _rodas.rodas4_step(cstr.row_rhs_jac, ca, temp, row, span / n)
        errors.append(abs(temp - ref[1]))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all(ratios > 12.0) and np.all(ratios < 20.0), ratios


def test_jacobian_matches_finite_differences():
    states = np.array([[0.5, 360.0], [0.9, 320.0], [0.05, 440.0]])
    jac = cstr.jacobian(states, 305.0)
    for j, eps in enumerate((1e-7, 1e-5)):
        d = np.zeros(2)
        d[j] = eps
        numeric = (cstr.derivatives(states + d, 305.0) - cstr.derivatives(states - d, 305.0))
        np.testing.assert_allclose(numeric / (2 * eps), jac[:, :, j], rtol=1e-6, atol=1e-9)


def test_rows_do_not_depend_on_the_batch():
    # Each row integrates with its own steps: alone, or in any batch in any order (next to
    # igniting rows and with other rows' parameters), it gives the same bits.
    rng = np.random.default_rng(7)
    n = 40
    states = np.column_stack([rng.uniform(0.3, 0.95, n), rng.uniform(320.0, 390.0, n)])
    coolant = rng.uniform(295.0, 315.0, n)
    ua, ti = rng.uniform(4.5e4, 5.5e4, n), rng.uniform(345.0, 355.0, n)
    out = cstr.step(states, coolant, 0.5, cstr.Params(UA=ua, Ti=ti))
    assert np.any(out[:, 1] - states[:, 1] > 30.0)  # some rows ignite in this step
    order = rng.permutation(n)
    shuffled = cstr.step(states[order], coolant[order], 0.5, cstr.Params(UA=ua[order],
                                                                         Ti=ti[order]))
    assert np.array_equal(shuffled, out[order])
    for i in range(0, n, 7):
        alone = cstr.step(states[i:i + 1], coolant[i], 0.5, cstr.Params(UA=ua[i], Ti=ti[i]))
        assert np.array_equal(alone[0], out[i]), i


def test_a_row_that_cannot_finish_is_named(monkeypatch):
    # Out of step attempts, the igniting row (and only it) is reported, not returned as is.
    monkeypatch.setattr(_rodas, "MAX_STEPS", 3)
    states = np.array([[0.85, 327.0], [0.5, 360.0], [0.86, 326.0]])
    with pytest.raises(RuntimeError, match=r"cstr.step: rows \[1\] \(of 1 failing\)"):
        cstr.step(states, np.array([301.0, 310.0, 301.0]), RUNAWAY_DT)


def test_extreme_inputs_stay_finite_and_physical():
    ca, temp, tc = np.meshgrid([0.0, 1e-9, 0.5, 2.0, 10.0], [200.0, 300.0, 500.0, 1000.0],
                               [200.0, 300.0, 500.0])
    states = np.column_stack([ca.ravel(), temp.ravel()])
    out = cstr.step(states, tc.ravel(), 0.5)
    assert np.all(np.isfinite(out))
    assert np.all(out[:, 0] >= -1e-6)
    assert np.all(out[:, 0] <= np.maximum(states[:, 0], 1.0) + 1e-6)
    floor = np.minimum(states[:, 1], np.minimum(350.0, tc.ravel()))
    assert np.all(out[:, 1] >= floor - 1e-3)


def test_non_finite_input_is_refused():
    with pytest.raises(ValueError, match="non-finite"):
        cstr.step(np.array([[np.nan, 350.0]]), 300.0, 0.5)
    with pytest.raises(ValueError, match="non-finite"):
        cstr.step(np.array([[0.5, 350.0]]), np.inf, 0.5)
