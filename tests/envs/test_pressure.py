"""Pressure-vessel physics (envs.pressure): valve equations by hand, integration vs scipy."""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from envs import pressure as pr

P = pr.Params()


def radau(state0, command: float, inflow: float, dt: float):
    sol = solve_ivp(lambda t, y: pr.derivatives(y[None], command, inflow)[0], (0.0, dt),
                    np.asarray(state0, float), method="Radau", rtol=1e-10, atol=1e-12,
                    jac=lambda t, y: pr.jacobian(y[None], command, inflow)[0])
    assert sol.success
    return sol.y[:, -1]


def test_relief_vents_only_above_set_pressure():
    below = np.linspace(1.0, P.relief_set, 50)
    above = np.linspace(P.relief_set + 1e-6, 12.0, 50)
    assert np.all(pr.relief_flow(below) == 0.0)
    assert np.all(pr.relief_flow(above) > 0.0)
    assert np.all(np.diff(pr.relief_flow(above)) > 0.0)
    full = P.relief_set * (1.0 + P.relief_overpressure)
    # at and beyond full lift: critical flow, capacity * P
    np.testing.assert_allclose(pr.relief_flow(np.array([full, 11.5])),
                               P.relief_capacity * np.array([full, 11.5]), rtol=1e-12)


def test_valve_flow_is_the_iec_gas_equation():
    rho_per_bar = 1e5 * P.molar_mass / (8.314462618 * P.gas_temp)

    def iec_kg_per_min(p1: float, opening: float) -> float:
        x = min((p1 - P.downstream_pressure) / p1, P.valve_fgamma * P.valve_xt)  # choked cap
        y = 1.0 - x / (3.0 * P.valve_fgamma * P.valve_xt)
        kv = P.valve_kv * (P.valve_rangeability ** opening - 1.0) / (P.valve_rangeability - 1)
        return 27.3 * kv * y * np.sqrt(x * p1 * rho_per_bar * p1) / 60.0

    for p1, opening in [(3.0, 0.5), (4.5, 0.2), (7.0, 0.68), (9.8, 1.0)]:
        expected = iec_kg_per_min(p1, opening)
        assert abs(pr.valve_flow(p1, opening) - expected) < 1e-12 * expected
    assert pr.valve_flow(8.0, 0.0) == 0.0  # exact shut-off
    assert pr.valve_flow(1.2, 1.0) == 0.0  # no reverse flow below the header pressure
    # choked: flow proportional to upstream pressure
    assert abs(pr.valve_flow(9.0, 0.5) / pr.valve_flow(6.0, 0.5) - 1.5) < 1e-12


def test_jacobian_matches_finite_differences():
    states = np.array([[9.7, 0.6], [4.0, 0.3], [10.2, 0.9], [7.0, 0.5]])
    jac = pr.jacobian(states, 0.55, 60.0)
    for j, eps in enumerate((1e-6, 1e-7)):
        d = np.zeros(2)
        d[j] = eps
        numeric = (pr.derivatives(states + d, 0.55, 60.0)
                   - pr.derivatives(states - d, 0.55, 60.0)) / (2 * eps)
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


def test_step_matches_radau_including_relief_crossings():
    rng = np.random.default_rng(3)
    states = np.column_stack([rng.uniform(1.2, 11.0, 12), rng.uniform(0.0, 1.0, 12)])
    commands, inflows = rng.uniform(0.0, 1.0, 12), rng.uniform(20.0, 150.0, 12)
    # and two that lift the relief valve, and one that reseats it, inside the step
    states = np.vstack([states, [[9.06, 0.75], [9.3, 0.3], [9.8, 0.94]]])
    commands = np.append(commands, [0.16, 0.0, 0.51])
    inflows = np.append(inflows, [120.0, 90.0, 55.0])
    out = pr.step(states, commands, inflows, 0.25)
    for i in range(len(states)):
        ref = radau(states[i], commands[i], inflows[i], 0.25)
        assert abs(out[i, 0] - ref[0]) < 3e-3, i  # bar
        assert abs(out[i, 1] - ref[1]) < 1e-3, i
    crossed = (states[-3:, 0] - P.relief_set) * (out[-3:, 0] - P.relief_set)
    assert np.all(crossed < 0)


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
