"""Pressure-vessel physics (envs.pressure): valve equations by hand, integration vs scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from envs import pressure as pr

P = pr.Params()


def radau(state0, command: float, inflow: float, dt: float, params=P):
    """Reference: scipy's Radau, relief mode switched by events at set (rising, shut) and at
    reseat (falling, open): the hysteresis written independently of ``row_switch``."""
    pset, _, reseat = pr.relief_points(params)
    t, y = 0.0, np.asarray(state0, float)
    popped = float(y[0] >= pset)
    while t < dt:
        level = reseat if popped else pset

        def event(_t, yy, level=level):
            return yy[0] - level
        event.terminal, event.direction = True, (-1.0 if popped else 1.0)
        sol = solve_ivp(lambda _t, yy, m=popped: pr.derivatives(yy[None], command, inflow,
                                                                params, m)[0],
                        (t, dt), y, method="Radau", rtol=1e-10, atol=1e-12, events=event,
                        jac=lambda _t, yy, m=popped: pr.jacobian(yy[None], command, inflow,
                                                                 params, m)[0])
        assert sol.success
        t, y = sol.t[-1], sol.y[:, -1]
        if sol.status == 1:
            popped = 1.0 - popped
    return y


def test_relief_pops_at_set_and_reseats_after_blowdown():
    pset, full, reseat = pr.relief_points(P)
    gauge = P.relief_set - pr.ATMOSPHERE
    assert abs(full - (pset + 0.1 * gauge)) < 1e-12 and abs(reseat - (pset - 0.07 * gauge)) < 1e-12
    grid = np.linspace(1.0, 12.0, 400)
    assert np.all(pr.relief_flow(grid, P, np.zeros_like(grid)) == 0.0)  # shut: never vents
    opened = pr.relief_flow(grid, P, np.ones_like(grid))
    assert np.all(opened[grid <= reseat] == 0.0) and np.all(opened[grid > reseat] > 0.0)
    assert np.all(np.diff(opened[grid > reseat]) > 0.0)
    between = (grid > reseat) & (grid < pset)  # open below set: held at the pop lift
    np.testing.assert_allclose(opened[between], 0.7 * P.relief_capacity * grid[between],
                               rtol=1e-12)
    # pop: 70 % of full lift right at set; full lift (critical flow capacity * P) from 10 %
    # overpressure on the gauge pressure
    np.testing.assert_allclose(pr.relief_flow(pset, P, 1.0), 0.7 * P.relief_capacity * pset,
                               rtol=1e-12)
    np.testing.assert_allclose(pr.relief_flow(np.array([full, 11.5]), P, np.ones(2)),
                               P.relief_capacity * np.array([full, 11.5]), rtol=1e-12)
    # default mode: shut below set, open from set (a rising pressure)
    assert pr.relief_flow(pset - 1e-6) == 0.0 and pr.relief_flow(pset) > 0.0


def test_relief_hysteresis_in_time():
    # Rising through set the valve pops; blown down below set it keeps venting until reseat.
    p, x, mode = pr.advance(np.array([9.3]), np.array([0.0]), 0.0, 150.0, 0.5)
    assert mode[0] == 1.0 and p[0] > P.relief_set - 0.05
    p, x, mode = pr.advance(p, x, 0.0, 0.0, 0.2, popped=mode)  # inflow stops: blowing down
    pset, _, reseat = pr.relief_points(P)
    assert reseat < p[0] < pset and mode[0] == 1.0
    assert pr.relief_flow(p, P, mode)[0] > 0.0
    p, x, mode = pr.advance(p, x, 0.0, 0.0, 2.0, popped=mode)
    assert mode[0] == 0.0 and abs(p[0] - reseat) < 2e-3  # snapped shut at reseat, then tight
    p2, _, mode2 = pr.advance(np.array([9.3]), np.array([0.0]), 0.0, 0.0, 1.0,
                              popped=np.array([0.0]))
    assert mode2[0] == 0.0 and abs(p2[0] - 9.3) < 1e-12  # shut below set: no vent at all


def test_valve_flow_is_the_iec_gas_equation():
    rho_per_bar = 1e5 * P.molar_mass / (8.314462618 * P.gas_temp)

    def iec_kg_per_min(p1: float, opening: float) -> float:
        x = min((p1 - P.downstream_pressure) / p1, P.valve_fgamma * P.valve_xt)  # choked cap
        y = 1.0 - x / (3.0 * P.valve_fgamma * P.valve_xt)
        kv = P.valve_kv * (P.valve_rangeability ** opening - 1.0) / (P.valve_rangeability - 1)
        return 31.6 * kv * y * np.sqrt(x * p1 * rho_per_bar * p1) / 60.0  # N6 for Kv

    for p1, opening in [(3.0, 0.5), (4.5, 0.2), (7.0, 0.68), (9.8, 1.0)]:
        expected = iec_kg_per_min(p1, opening)
        assert abs(pr.valve_flow(p1, opening) - expected) < 1e-12 * expected
    assert pr.valve_flow(8.0, 0.0) == 0.0  # exact shut-off
    assert pr.valve_flow(1.2, 1.0) == 0.0  # no reverse flow below the header pressure
    # choked: flow proportional to upstream pressure
    assert abs(pr.valve_flow(9.0, 0.5) / pr.valve_flow(6.0, 0.5) - 1.5) < 1e-12


def test_polytropic_vessel_follows_its_path():
    # Valve shut, relief shut, constant inflow: the density rises linearly, rho = rho0 + w t/V,
    # and P = P_ref (rho / rho_ref)^n on the path: written here from the definition.
    adiabatic = pr.Params(polytropic_exponent=1.4, reference_pressure=7.0)
    rho_ref = 1e5 * P.molar_mass / (8.314462618 * P.gas_temp) * 7.0
    p0, w, dt = 4.0, 60.0, 0.5
    out, _, _ = pr.advance(np.array([p0]), np.array([0.0]), 0.0, w, dt, adiabatic,
                           np.array([0.0]))
    rho0 = rho_ref * (p0 / 7.0) ** (1.0 / 1.4)
    expected = 7.0 * ((rho0 + w * dt / P.volume) / rho_ref) ** 1.4
    assert abs(out[0] - expected) < 2e-3
    iso, _, _ = pr.advance(np.array([p0]), np.array([0.0]), 0.0, w, dt, P, np.array([0.0]))
    assert out[0] - p0 > 1.2 * (iso[0] - p0)  # heating: the pressure rises faster


@pytest.mark.parametrize("exponent", [1.0, 1.4])
def test_jacobian_matches_finite_differences(exponent):
    params = pr.Params(polytropic_exponent=exponent)
    states = np.array([[9.7, 0.6], [4.0, 0.3], [10.2, 0.9], [7.0, 0.5], [9.2, 0.4]])
    mode = np.array([1.0, 0.0, 1.0, 0.0, 1.0])  # the last: open between reseat and set
    jac = pr.jacobian(states, 0.55, 60.0, params, mode)
    for j, eps in enumerate((1e-6, 1e-7)):
        d = np.zeros(2)
        d[j] = eps
        numeric = (pr.derivatives(states + d, 0.55, 60.0, params, mode)
                   - pr.derivatives(states - d, 0.55, 60.0, params, mode)) / (2 * eps)
        np.testing.assert_allclose(numeric, jac[:, :, j], rtol=1e-5, atol=1e-6)


def test_closed_vessel_obeys_the_mass_balance():
    # Valve shut and held shut, relief closed: every kg in raises P by 1/(V rho_per_bar).
    out = pr.step(np.array([[5.0, 0.0]]), 0.0, 60.0, 0.25)[0]
    rho_per_bar = 1e5 * P.molar_mass / (8.314462618 * P.gas_temp)
    assert abs(out[0] - (5.0 + 60.0 * 0.25 / (P.volume * rho_per_bar))) < 1e-9
    assert out[1] == 0.0


def test_equilibrium_is_held():
    opening = float(pr.balancing_opening(7.0, 60.0))
    assert abs(pr.valve_flow(7.0, opening) - 60.0) < 1e-9
    out = pr.step(np.array([[7.0, opening]]), opening, 60.0, 5.0)[0]
    assert abs(out[0] - 7.0) < 1e-9 and abs(out[1] - opening) < 1e-12


@pytest.mark.parametrize("exponent", [1.0, 1.4])
def test_step_matches_radau_including_relief_crossings(exponent):
    params = pr.Params(polytropic_exponent=exponent)
    rng = np.random.default_rng(3)
    states = np.column_stack([rng.uniform(1.2, 11.0, 12), rng.uniform(0.0, 1.0, 12)])
    commands, inflows = rng.uniform(0.0, 1.0, 12), rng.uniform(20.0, 150.0, 12)
    # and two that pop the relief valve, and one that blows down through set and reseat,
    # inside the step
    states = np.vstack([states, [[9.06, 0.2], [9.3, 0.1], [9.8, 0.94]]])
    commands = np.append(commands, [0.1, 0.0, 0.7])
    inflows = np.append(inflows, [120.0, 140.0, 55.0])
    out = pr.step(states, commands, inflows, 0.25, params)
    for i in range(len(states)):
        ref = radau(states[i], commands[i], inflows[i], 0.25, params)
        assert abs(out[i, 0] - ref[0]) < 3e-3, i  # bar
        assert abs(out[i, 1] - ref[1]) < 1e-3, i
    crossed = (states[-3:, 0] - P.relief_set) * (out[-3:, 0] - P.relief_set)
    assert np.all(crossed < 0)
    assert out[-1, 0] < pr.relief_points(params)[2]  # and below reseat: shut again


def test_valve_rate_limit_is_respected():
    dt, state = 0.25, np.array([[7.0, 0.0]])
    positions = [0.0]
    for _ in range(8):  # full-open command from shut: the stem moves at most rate * dt per step
        state = pr.step(state, 1.0, 60.0, dt)
        positions.append(state[0, 1])
    moves = np.diff(positions)
    assert np.all(moves <= P.valve_rate * dt + 1e-9)
    assert moves[0] > 0.9 * P.valve_rate * dt  # and it does move at about that speed
    assert abs(positions[-1] - 1.0) < 0.05


def test_rows_do_not_depend_on_the_batch():
    # Per-row step sizes: a row alone gives the same bits as in a batch with venting rows.
    rng = np.random.default_rng(5)
    n = 24
    states = np.column_stack([rng.uniform(8.5, 10.5, n), rng.uniform(0.0, 1.0, n)])
    commands, inflows = rng.uniform(0.0, 1.0, n), rng.uniform(20.0, 150.0, n)
    out = pr.step(states, commands, inflows, 0.25)
    assert np.any(pr.relief_flow(out[:, 0]) > 0.0) and np.any(pr.relief_flow(out[:, 0]) == 0.0)
    for i in range(0, n, 5):
        alone = pr.step(states[i:i + 1], commands[i], inflows[i], 0.25)
        assert np.array_equal(alone[0], out[i]), i
