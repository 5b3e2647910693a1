"""Gas pressure vessel with an outlet control valve and a relief valve: physics as plain batched
functions, time in minutes, pressures in bar absolute, flows in kg/min.

An isothermal ideal-gas vessel is fed by a (disturbed) inflow and drained by a control valve to
a header at ``downstream_pressure``; a spring-loaded relief valve vents to atmosphere above its
set pressure::

    dP/dt = (w_in - w_valve(P, x) - w_relief(P)) / (V * rho_per_bar)
    dx/dt = rate * tanh((u - x) / (tau * rate))

State rows are ``[P (bar a), x (valve opening, 0..1)]``; the inputs are the valve command u
(0..1) and the inflow w_in (kg/min). ``rho_per_bar = 1e5 M / (R T)`` is the gas density per bar.

- Control valve: the IEC 60534-2-1 gas sizing equation, W = N6 Kv g(x) Y sqrt(x_p P rho1)
  (N6 = 27.3 for kg/h, bar, kg/m3), with pressure-drop ratio x_p = (P - P2)/P capped at choked
  flow F_gamma x_T, expansion factor Y = 1 - x_p / (3 F_gamma x_T), and an equal-percentage
  characteristic with exact shut-off g(x) = (R^x - 1)/(R - 1). No reverse flow.
- Valve actuator: a first-order lag ``valve_time_constant`` toward the command for small moves,
  its stem speed saturating smoothly (tanh, as a positioner's does) at ``valve_rate``
  (fraction of stroke per minute), so |dx/dt| < rate always. Smooth, not a hard clip, because a
  kink in the right-hand side costs the integrator many small steps at every saturation.
- Relief valve: closed at or below ``relief_set``; its lift rises to full at
  ``relief_overpressure`` above set (the ASME 10 % accumulation) along the smooth S-curve
  3s^2 - 2s^3 of s = (P - set) / (overpressure * set) (a modulating valve; smooth for the same
  reason as the actuator), critical flow W = relief_capacity * lift * P.

Every field of ``Params`` is a float or an array of shape (N,). ``step`` integrates each row
with its own adaptive RODAS4 steps, compiled with numba (``envs._rodas``, shared with
``envs.cstr``; the relief valve makes the model stiff while venting). The integrator compiles
``rhs_jac`` below for scalars, so the formulas exist once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from numba.extending import register_jitable

from envs._rodas import compiled, integrate, specialise

Array = np.ndarray
FloatOrArray = float | np.ndarray

GAS_CONSTANT = 8.314462618  # J/(mol K)
N6_KG_PER_H = 27.3  # IEC 60534 numerical constant for W in kg/h, P in bar, rho in kg/m3
# Default tolerances of ``step`` (see envs.cstr): 1 mbar and 0.1 % of stroke. Measured against
# scipy's Radau at rtol 1e-10 over random states, relief lifts and reseats included: within
# 2 mbar (tests/envs/test_pressure.py holds it to 3 mbar), well under the 20 mbar sensor noise.
RTOL = 1e-4
ATOL_P = 1e-3  # bar
ATOL_X = 1e-3  # valve opening


@dataclass(frozen=True)
class Params:
    """Vessel, valves and gas; each field a float or an array of shape (N,)."""

    volume: FloatOrArray = 20.0
    """Vessel volume, m3."""
    molar_mass: FloatOrArray = 0.028
    """Gas molar mass, kg/mol (nitrogen)."""
    gas_temp: FloatOrArray = 300.0
    """Gas temperature, K (isothermal vessel)."""
    valve_kv: FloatOrArray = 100.0
    """Control valve flow coefficient at full opening, Kv (m3/h)."""
    valve_rangeability: FloatOrArray = 30.0
    """Equal-percentage rangeability R of the control valve's characteristic."""
    valve_xt: FloatOrArray = 0.7
    """Pressure differential ratio factor x_T at choked flow (globe valve ~0.7)."""
    valve_fgamma: FloatOrArray = 1.0
    """Specific heat ratio factor F_gamma = kappa / 1.4 (1 for nitrogen)."""
    downstream_pressure: FloatOrArray = 1.5
    """Header pressure behind the control valve, bar a."""
    valve_time_constant: FloatOrArray = 0.1
    """Valve actuator lag, min (> 0)."""
    valve_rate: FloatOrArray = 1.0
    """Valve stem rate limit, fraction of full stroke per minute."""
    relief_set: FloatOrArray = 9.5
    """Relief valve set pressure, bar a."""
    relief_overpressure: FloatOrArray = 0.1
    """Overpressure at full lift, fraction of the set pressure."""
    relief_capacity: FloatOrArray = 14.0
    """Relief flow at full lift per bar of vessel pressure, kg/(min bar)."""


def density_per_bar(params: Params) -> FloatOrArray:
    """Gas density per bar of pressure, kg/(m3 bar)."""
    return 1e5 * params.molar_mass / (GAS_CONSTANT * params.gas_temp)


def coefficients(params: Params, valve_command: FloatOrArray, inflow: FloatOrArray) -> tuple:
    """The constants the right-hand side uses, in its argument order: valve gain (kg/min per
    unit of g*Y*sqrt(x_p rho1)*P), rangeability, choked ratio F_gamma x_T, density per bar,
    header pressure, 1/(V rho_per_bar) (bar/kg), actuator lag, rate limit, relief set pressure,
    relief lift span (bar), relief capacity, valve command, inflow."""
    p = params
    rho = density_per_bar(p)
    grouped = (N6_KG_PER_H / 60.0 * p.valve_kv, p.valve_rangeability,
               p.valve_fgamma * p.valve_xt, rho, p.downstream_pressure, 1.0 / (p.volume * rho),
               p.valve_time_constant, p.valve_rate, p.relief_set,
               p.relief_overpressure * p.relief_set, p.relief_capacity, valve_command, inflow)
    return tuple(np.asarray(c, dtype=np.float64) for c in grouped)  # scalars as 0-d arrays


# The helpers below are plain numpy functions that numba can also compile for scalars inside the
# integrator (register_jitable), so they use only operations both accept: no np.clip, np.where.
@register_jitable
def _valve_terms(pressure: Array, opening: Array, gain, r, choke, rho, p2
                 ) -> tuple[Array, Array, Array]:
    """(flow kg/min, d flow/dP, d flow/dx) of the control valve."""
    safe_p = np.maximum(pressure, 1e-9)
    ratio = 1.0 - p2 / safe_p
    xp = np.minimum(np.maximum(ratio, 0.0), choke)
    y = 1.0 - xp / (3.0 * choke)
    root = np.sqrt(xp * rho)
    r_x = r ** opening
    char = (r_x - 1.0) / (r - 1.0)
    flow = gain * char * y * root * pressure
    # d/dP of y sqrt(xp rho) P; xp is constant when choked or shut (P <= P2).
    dxp = p2 / (safe_p * safe_p) * ((ratio < choke) & (ratio > 0.0))
    droot = 0.5 * np.sqrt(rho / np.maximum(xp, 1e-6)) * dxp
    dflow_dp = gain * char * (y * root + pressure * (y * droot - root * dxp / (3.0 * choke)))
    dflow_dx = gain * np.log(r) * r_x / (r - 1.0) * y * root * pressure
    return flow, dflow_dp, dflow_dx


@register_jitable
def _relief_terms(pressure: Array, pset, span, capacity) -> tuple[Array, Array]:
    """(vent flow kg/min, d vent/dP) of the relief valve."""
    s = np.minimum(np.maximum((pressure - pset) / span, 0.0), 1.0)
    lift = s * s * (3.0 - 2.0 * s)
    dlift = 6.0 * s * (1.0 - s) / span
    return capacity * lift * pressure, capacity * (lift + pressure * dlift)


def valve_flow(pressure: FloatOrArray, opening: FloatOrArray, params: Params = Params()
               ) -> Array:
    """Control-valve mass flow, kg/min, at vessel pressure (bar a) and opening (0..1)."""
    c = coefficients(params, 0.0, 0.0)
    return _valve_terms(np.asarray(pressure, float), np.asarray(opening, float), *c[:5])[0]


def relief_flow(pressure: FloatOrArray, params: Params = Params()) -> Array:
    """Relief-valve vent flow, kg/min: zero at or below the set pressure."""
    c = coefficients(params, 0.0, 0.0)
    return _relief_terms(np.asarray(pressure, float), *c[8:11])[0]


@register_jitable
def rhs_jac(pressure: Array, opening: Array, gain, r, choke, rho, p2, inv_cap, tau, rate,
            pset, span, capacity, command, inflow) -> tuple[Array, ...]:
    """(dP/dt, dx/dt, j11, j12, j21, j22) from the grouped ``coefficients``."""
    flow, dflow_dp, dflow_dx = _valve_terms(pressure, opening, gain, r, choke, rho, p2)
    vent, dvent_dp = _relief_terms(pressure, pset, span, capacity)
    move = np.tanh((command - opening) / (tau * rate))
    dmove = -(1.0 - move * move) / tau
    return ((inflow - flow - vent) * inv_cap, rate * move,
            -(dflow_dp + dvent_dp) * inv_cap, -dflow_dx * inv_cap, 0.0 * dmove, dmove)


KINK_BAND = 5e-3
"""bar: a step may cross a kink of the right-hand side only from this close, see
``row_admissible``."""


@compiled
def row_rhs_jac(pressure: float, opening: float, c: np.ndarray) -> tuple[float, ...]:
    """For the integrator (``envs._rodas``): ``rhs_jac`` of one row, compiled for float64
    scalars, with that row's ``coefficients()`` in order in ``c``."""
    return rhs_jac(pressure, opening, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8],
                   c[9], c[10], c[11], c[12])


@compiled
def row_admissible(pressure: float, opening: float, new_p: float, new_x: float, c: np.ndarray
                   ) -> float:
    """For the integrator: 1 where a step may be judged by its error estimate, else the factor
    to retry it with. Nothing leaves below the header pressure, so P stays >= min(P, P2), and
    the valve moves monotonically toward its command (else retry a quarter as long). A step may
    cross a pressure where the right-hand side has a kink (relief set pressure, full lift,
    onset of choked flow, no flow) only when it starts within ``KINK_BAND`` of it: the error
    estimate of one long step across a kink can miss it entirely. A longer crossing step is
    retried with the fraction of it that (linearly) ends just short of the kink."""
    choke, p2, pset, span, command = c[2], c[4], c[8], c[9], c[11]  # see ``coefficients``
    inside = (new_p >= min(pressure, p2) - ATOL_P
              and min(opening, command) - ATOL_X <= new_x <= max(opening, command) + ATOL_X)
    factor = 1.0 if inside else 0.25
    for kink in (pset, pset + span, p2 / (1.0 - choke), p2):
        before, after = pressure - kink, new_p - kink
        if before * after < 0.0 and abs(before) > KINK_BAND:
            factor = min(factor, min(max(0.99 * before / (before - after), 0.01), 0.9))
    return factor


_integrate_rows = specialise(sys.modules[__name__])
"""``envs._rodas.integrate_rows`` for ``row_rhs_jac`` and ``row_admissible`` above."""


def derivatives(state: Array, valve_command: FloatOrArray, inflow: FloatOrArray,
                params: Params = Params()) -> Array:
    """dP/dt (bar/min) and dx/dt (1/min), shape (N, 2), for ``state`` (N, 2) = [P, x]."""
    state = np.asarray(state, dtype=np.float64)
    f1, f2, *_ = rhs_jac(state[:, 0], state[:, 1], *coefficients(params, valve_command, inflow))
    return np.stack(np.broadcast_arrays(f1, f2), axis=-1)


def jacobian(state: Array, valve_command: FloatOrArray, inflow: FloatOrArray,
             params: Params = Params()) -> Array:
    """Jacobian (N, 2, 2) of ``derivatives`` with respect to the state."""
    state = np.asarray(state, dtype=np.float64)
    _, _, *j = rhs_jac(state[:, 0], state[:, 1], *coefficients(params, valve_command, inflow))
    j = np.broadcast_arrays(*j)
    return np.stack([np.stack(j[:2], axis=-1), np.stack(j[2:], axis=-1)], axis=-2)


def advance(pressure: Array, opening: Array, valve_command: FloatOrArray, inflow: FloatOrArray,
            dt: float, params: Params = Params(), rtol: float = RTOL,
            atol: tuple[float, float] = (ATOL_P, ATOL_X)) -> tuple[Array, Array]:
    """``step`` on separate (N,) arrays of P (bar a) and x: the environments' fast path."""
    return integrate(_integrate_rows, pressure, opening,
                     coefficients(params, valve_command, inflow), dt, rtol, *atol,
                     name="pressure.step")


def step(state: Array, valve_command: FloatOrArray, inflow: FloatOrArray, dt: float,
         params: Params = Params(), rtol: float = RTOL,
         atol: tuple[float, float] = (ATOL_P, ATOL_X)) -> Array:
    """Advance every row of ``state`` (N, 2) = [P bar a, x] by ``dt`` minutes with the valve
    command (0..1) and inflow (kg/min) held over the step."""
    state = np.asarray(state, dtype=np.float64)
    if state.ndim != 2 or state.shape[1] != 2:
        raise ValueError(f"pressure.step: state must have shape (N, 2), got {state.shape}")
    p, x = advance(state[:, 0], state[:, 1], valve_command, inflow, dt, params, rtol, atol)
    return np.stack([p, x], axis=1)


def balancing_opening(pressure: FloatOrArray, inflow: FloatOrArray,
                      params: Params = Params()) -> Array:
    """The valve opening whose flow equals ``inflow`` at ``pressure`` (an equilibrium), clipped
    to [0, 1] when the valve cannot pass it."""
    full = valve_flow(pressure, np.ones_like(np.asarray(pressure, float)), params)
    r = params.valve_rangeability
    char = np.clip(np.asarray(inflow, float) / full, 0.0, 1.0)
    return np.log1p(char * (r - 1.0)) / np.log(r)
