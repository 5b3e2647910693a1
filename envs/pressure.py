"""Gas pressure vessel with an outlet control valve and a relief valve: physics as plain batched
functions, time in minutes, pressures in bar absolute, flows in kg/min.

An ideal-gas vessel is fed by a (disturbed) inflow and drained by a control valve to a header at
``downstream_pressure``; a spring-loaded relief valve vents to atmosphere above its set
pressure. The gas follows a polytropic path ``P / rho^n = const`` through the reference state
(``reference_pressure``, ``gas_temp``), so its density is rho(P) = rho_ref (P/P_ref)^(1/n)::

    dP/dt = n P / (V rho(P)) (w_in - w_valve(P, x) - w_relief(P, mode))
    dx/dt = rate * tanh((u - x) / (tau * rate))

n = 1 (the default of ``Params`` and of the env) is the isothermal vessel: the slow limit, where
the gas has time to exchange heat with the walls and stays at ``gas_temp``; the PID gains were
tuned on it. n = kappa = 1.4 is the adiabatic (isentropic) limit: heat transfer to a 20 m3
vessel's wall takes far longer than a 0.5-3 minute surge, so the gas heats as it is compressed
and the pressure rises faster, and a surge an isothermal vessel absorbs can lift the relief
valve. That is the conservative model for relief, and the one ``scenarios/pressure_relief.toml``
runs.

State rows are ``[P (bar a), x (valve opening, 0..1)]``; the inputs are the valve command u
(0..1) and the inflow w_in (kg/min); the relief valve's mode (closed, or popped open) is a
discrete state carried beside them (``advance``).

- Control valve: the IEC 60534-2-1 gas sizing equation, W = N6 Kv g(x) Y sqrt(x_p P rho1) with
  N6 = 31.6 (the constant for Kv in m3/h, W in kg/h, P in bar, rho in kg/m3; 27.3 is the
  constant for Cv), pressure-drop ratio x_p = (P - P2)/P capped at choked flow F_gamma x_T,
  expansion factor Y = 1 - x_p / (3 F_gamma x_T), and an equal-percentage characteristic with
  exact shut-off g(x) = (R^x - 1)/(R - 1). No reverse flow. Checked against the ``fluids``
  library's independent implementation (tests/envs/test_valve_sizing.py).
- Valve actuator: a first-order lag ``valve_time_constant`` toward the command for small moves,
  its stem speed saturating smoothly (tanh, as a positioner's does) at ``valve_rate``
  (fraction of stroke per minute): the valve ramps within a step, |dx/dt| < rate always.
- Relief valve, a conventional spring-loaded safety valve: closed below its set pressure; at
  set it pops open to ``relief_pop_lift`` and rises to full lift at ``relief_overpressure``
  above set (10 % of the set *gauge* pressure, ASME/API rating), along the smooth S-curve
  3s^2 - 2s^3; once open it stays open at the pop lift as the pressure falls below set and
  snaps shut at the reseat pressure, ``relief_blowdown`` (7 % of set gauge) below set. Critical
  flow W = relief_capacity * lift * P sqrt(T_ref / T(P)).

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
N6_KV = 31.6  # IEC 60534-2-1 constant for Kv (m3/h), W in kg/h, P in bar, rho in kg/m3
ATMOSPHERE = 1.01325  # bar a: gauge pressures (relief set, overpressure, blowdown) are above it
# Default tolerances of ``step`` (see envs.cstr): 1 mbar and 0.1 % of stroke. Measured against
# scipy's Radau at rtol 1e-10 over random states, relief lifts and reseats included: within
# 2 mbar (tests/envs/test_pressure.py holds it to 3 mbar), well under the 20 mbar sensor noise.
RTOL = 1e-4
ATOL_P = 1e-3  # bar
ATOL_X = 1e-3  # valve opening
MODE = 16
"""Column of ``coefficients`` holding the relief valve's mode: 1 popped open, 0 closed."""


@dataclass(frozen=True)
class Params:
    """Vessel, valves and gas; each field a float or an array of shape (N,)."""

    volume: FloatOrArray = 20.0
    """Vessel volume, m3."""
    molar_mass: FloatOrArray = 0.028
    """Gas molar mass, kg/mol (nitrogen)."""
    gas_temp: FloatOrArray = 300.0
    """Gas temperature at ``reference_pressure``, K (at every pressure when isothermal)."""
    polytropic_exponent: FloatOrArray = 1.0
    """n of P/rho^n = const: 1 isothermal (default, see the module docstring), 1.4 adiabatic
    nitrogen; 1-1.67."""
    reference_pressure: FloatOrArray = 8.0
    """Pressure where the gas is at ``gas_temp``, bar a (no effect when isothermal)."""
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
    """Overpressure at full lift, fraction of the set gauge pressure (ASME/API: 10 %)."""
    relief_blowdown: FloatOrArray = 0.07
    """Blowdown: the valve reseats this fraction of the set gauge pressure below set (4-10 %)."""
    relief_pop_lift: FloatOrArray = 0.7
    """Lift the valve pops to at set pressure, fraction of full lift (0-1)."""
    relief_capacity: FloatOrArray = 14.0
    """Relief flow at full lift per bar of vessel pressure at ``gas_temp``, kg/(min bar)."""


def density_per_bar(params: Params) -> FloatOrArray:
    """Gas density per bar of pressure at ``gas_temp``, kg/(m3 bar)."""
    return 1e5 * params.molar_mass / (GAS_CONSTANT * params.gas_temp)


def density(pressure: FloatOrArray, params: Params = Params()) -> FloatOrArray:
    """Gas density (kg/m3) at ``pressure`` (bar a) on the polytropic path."""
    p, n = params.reference_pressure, params.polytropic_exponent
    return density_per_bar(params) * p * (np.asarray(pressure, float) / p) ** (1.0 / n)


def relief_points(params: Params) -> tuple[FloatOrArray, FloatOrArray, FloatOrArray]:
    """(set, full lift, reseat) pressures of the relief valve, bar a."""
    gauge = params.relief_set - ATMOSPHERE
    return (params.relief_set, params.relief_set + params.relief_overpressure * gauge,
            params.relief_set - params.relief_blowdown * gauge)


def coefficients(params: Params, valve_command: FloatOrArray, inflow: FloatOrArray,
                 popped: FloatOrArray = 0.0) -> tuple:
    """The constants the right-hand side uses, in its argument order: valve gain (kg/min per
    unit of g*Y*sqrt(x_p a)*P^e), rangeability, choked ratio F_gamma x_T, density coefficient
    a (rho(P) = a P^(1/n)), header pressure, n/(V a), actuator lag, rate limit, relief set
    pressure, relief lift span (bar), relief capacity times P_ref^(1-e), valve command, inflow,
    e = (1 + 1/n)/2, pop lift, reseat pressure, relief mode (column ``MODE``)."""
    p = params
    n = np.asarray(p.polytropic_exponent, float)
    a = density_per_bar(p) * p.reference_pressure ** (1.0 - 1.0 / n)
    e = 0.5 * (1.0 + 1.0 / n)
    pset, full, reseat = relief_points(p)
    grouped = (N6_KV / 60.0 * p.valve_kv, p.valve_rangeability,
               p.valve_fgamma * p.valve_xt, a, p.downstream_pressure, n / (p.volume * a),
               p.valve_time_constant, p.valve_rate, pset, full - pset,
               p.relief_capacity * p.reference_pressure ** (1.0 - e), valve_command, inflow,
               e, p.relief_pop_lift, reseat, popped)
    return tuple(np.asarray(c, dtype=np.float64) for c in grouped)  # scalars as 0-d arrays


# The helpers below are plain numpy functions that numba can also compile for scalars inside the
# integrator (register_jitable), so they use only operations both accept: no np.clip, np.where.
@register_jitable
def _valve_terms(pressure: Array, opening: Array, gain, r, choke, a, p2, e
                 ) -> tuple[Array, Array, Array]:
    """(flow kg/min, d flow/dP, d flow/dx) of the control valve: sqrt(x_p P rho(P)) is
    sqrt(x_p a) P^e."""
    safe_p = np.maximum(pressure, 1e-9)
    ratio = 1.0 - p2 / safe_p
    xp = np.minimum(np.maximum(ratio, 0.0), choke)
    y = 1.0 - xp / (3.0 * choke)
    root = np.sqrt(xp * a)
    power = safe_p ** e
    r_x = r ** opening
    char = (r_x - 1.0) / (r - 1.0)
    flow = gain * char * y * root * power
    # d/dP of y sqrt(xp a) P^e; xp is constant when choked or shut (P <= P2).
    dxp = p2 / (safe_p * safe_p) * ((ratio < choke) & (ratio > 0.0))
    droot = 0.5 * np.sqrt(a / np.maximum(xp, 1e-6)) * dxp
    dflow_dp = gain * char * (y * root * e * power / safe_p
                              + power * (y * droot - root * dxp / (3.0 * choke)))
    dflow_dx = gain * np.log(r) * r_x / (r - 1.0) * y * root * power
    return flow, dflow_dp, dflow_dx


@register_jitable
def _relief_terms(pressure: Array, pset, span, capacity, e, pop, reseat, popped
                  ) -> tuple[Array, Array]:
    """(vent flow kg/min, d vent/dP) of the relief valve in mode ``popped`` (1 open, 0 shut):
    open, lift = pop + (1 - pop) S((P - set)/span) at or above set and pop between reseat and
    set (the disc stays up on its huddling chamber until it snaps shut at reseat); shut, none."""
    above = pressure >= pset
    s = np.minimum(np.maximum((pressure - pset) / span, 0.0), 1.0)
    lift = popped * (above * (pop + (1.0 - pop) * s * s * (3.0 - 2.0 * s))
                     + (1.0 - above) * (pressure > reseat) * pop)
    dlift = popped * above * (1.0 - pop) * 6.0 * s * (1.0 - s) / span
    safe_p = np.maximum(pressure, 1e-9)
    power = safe_p ** e
    return (capacity * lift * power,
            capacity * (lift * e * power / safe_p + power * dlift))


def valve_flow(pressure: FloatOrArray, opening: FloatOrArray, params: Params = Params()
               ) -> Array:
    """Control-valve mass flow, kg/min, at vessel pressure (bar a) and opening (0..1)."""
    c = coefficients(params, 0.0, 0.0)
    return _valve_terms(np.asarray(pressure, float), np.asarray(opening, float), *c[:5],
                        c[13])[0]


def relief_flow(pressure: FloatOrArray, params: Params = Params(),
                popped: FloatOrArray | None = None) -> Array:
    """Relief-valve vent flow, kg/min, in mode ``popped`` (1 open, 0 shut; default: open at or
    above the set pressure, as on a rising pressure)."""
    pressure = np.asarray(pressure, float)
    if popped is None:
        popped = pressure >= params.relief_set
    c = coefficients(params, 0.0, 0.0, np.asarray(popped, float))
    return _relief_terms(pressure, c[8], c[9], c[10], c[13], c[14], c[15], c[16])[0]


@register_jitable
def rhs_jac(pressure: Array, opening: Array, gain, r, choke, a, p2, capk, tau, rate,
            pset, span, capacity, command, inflow, e, pop, reseat, popped
            ) -> tuple[Array, ...]:
    """(dP/dt, dx/dt, j11, j12, j21, j22) from the grouped ``coefficients``."""
    flow, dflow_dp, dflow_dx = _valve_terms(pressure, opening, gain, r, choke, a, p2, e)
    vent, dvent_dp = _relief_terms(pressure, pset, span, capacity, e, pop, reseat, popped)
    move = np.tanh((command - opening) / (tau * rate))
    dmove = -(1.0 - move * move) / tau
    safe_p = np.maximum(pressure, 1e-9)
    cap = capk * safe_p ** (2.0 - 2.0 * e)  # n P / (V rho(P)), bar/kg
    net = inflow - flow - vent
    return (net * cap, rate * move,
            -(dflow_dp + dvent_dp) * cap + net * cap * (2.0 - 2.0 * e) / safe_p,
            -dflow_dx * cap, 0.0 * dmove, dmove)


KINK_BAND = 5e-3
"""bar: a step may cross a kink of the right-hand side only from this close, see
``row_admissible``."""


@compiled
def row_rhs_jac(pressure: float, opening: float, c: np.ndarray) -> tuple[float, ...]:
    """For the integrator (``envs._rodas``): ``rhs_jac`` of one row, compiled for float64
    scalars, with that row's ``coefficients()`` in order in ``c``."""
    return rhs_jac(pressure, opening, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8],
                   c[9], c[10], c[11], c[12], c[13], c[14], c[15], c[16])


@compiled
def row_admissible(pressure: float, opening: float, new_p: float, new_x: float, c: np.ndarray
                   ) -> float:
    """For the integrator: 1 where a step may be judged by its error estimate, else the factor
    to retry it with. Nothing leaves below the header pressure, so P stays >= min(P, P2), and
    the valve moves monotonically toward its command (else retry a quarter as long). A step may
    cross a pressure where the right-hand side has a kink (relief set pressure, full lift,
    reseat, onset of choked flow, no flow) only when it starts within ``KINK_BAND`` of it: the
    error estimate of one long step across a kink can miss it entirely. A longer crossing step
    is retried with the fraction of it that (linearly) ends just short of the kink. A shut
    relief valve pops at set and snaps shut at reseat: a step may not end more than ``ATOL_P``
    past either in the mode that switches there, so ``row_switch`` changes the mode within
    1 mbar of where it should."""
    choke, p2, pset, span, command = c[2], c[4], c[8], c[9], c[11]  # see ``coefficients``
    inside = (new_p >= min(pressure, p2) - ATOL_P
              and min(opening, command) - ATOL_X <= new_x <= max(opening, command) + ATOL_X)
    factor = 1.0 if inside else 0.25
    for kink in (pset, pset + span, c[15], p2 / (1.0 - choke), p2):
        before, after = pressure - kink, new_p - kink
        if before * after < 0.0 and abs(before) > KINK_BAND:
            factor = min(factor, min(max(0.99 * before / (before - after), 0.01), 0.9))
    # the valve's two snap points: popping open at set, snapping shut at reseat
    if c[MODE] < 0.5 and new_p > pset + ATOL_P and pressure < pset:
        factor = min(factor, min(max((pset + 0.5 * ATOL_P - pressure) / (new_p - pressure),
                                     0.01), 0.9))
    if c[MODE] > 0.5 and new_p < c[15] - ATOL_P and pressure > c[15]:
        factor = min(factor, min(max((pressure - c[15] + 0.5 * ATOL_P) / (pressure - new_p),
                                     0.01), 0.9))
    return factor


@compiled
def row_switch(pressure: float, opening: float, c: np.ndarray) -> None:
    """For the integrator: the relief valve pops at its set pressure and reseats at its reseat
    pressure (hysteresis: between the two it keeps its mode)."""
    if pressure >= c[8]:
        c[MODE] = 1.0
    elif pressure <= c[15]:
        c[MODE] = 0.0


_integrate_rows = specialise(sys.modules[__name__])
"""``envs._rodas.integrate_rows`` for ``row_rhs_jac``, ``row_admissible``, ``row_switch``."""


def _mode(pressure: Array, params: Params, popped: FloatOrArray | None) -> Array:
    """``popped`` as floats, or by default open at or above the set pressure."""
    if popped is None:
        return (np.asarray(pressure) >= params.relief_set).astype(np.float64)
    return np.asarray(popped, dtype=np.float64)


def derivatives(state: Array, valve_command: FloatOrArray, inflow: FloatOrArray,
                params: Params = Params(), popped: FloatOrArray | None = None) -> Array:
    """dP/dt (bar/min) and dx/dt (1/min), shape (N, 2), for ``state`` (N, 2) = [P, x] with the
    relief valve in mode ``popped`` (default: open at or above set)."""
    state = np.asarray(state, dtype=np.float64)
    c = coefficients(params, valve_command, inflow, _mode(state[:, 0], params, popped))
    f1, f2, *_ = rhs_jac(state[:, 0], state[:, 1], *c)
    return np.stack(np.broadcast_arrays(f1, f2), axis=-1)


def jacobian(state: Array, valve_command: FloatOrArray, inflow: FloatOrArray,
             params: Params = Params(), popped: FloatOrArray | None = None) -> Array:
    """Jacobian (N, 2, 2) of ``derivatives`` with respect to the state."""
    state = np.asarray(state, dtype=np.float64)
    c = coefficients(params, valve_command, inflow, _mode(state[:, 0], params, popped))
    _, _, *j = rhs_jac(state[:, 0], state[:, 1], *c)
    j = np.broadcast_arrays(*j)
    return np.stack([np.stack(j[:2], axis=-1), np.stack(j[2:], axis=-1)], axis=-2)


def advance(pressure: Array, opening: Array, valve_command: FloatOrArray, inflow: FloatOrArray,
            dt: float, params: Params = Params(), popped: FloatOrArray | None = None,
            rtol: float = RTOL, atol: tuple[float, float] = (ATOL_P, ATOL_X)
            ) -> tuple[Array, Array, Array]:
    """``step`` on separate (N,) arrays of P (bar a) and x, with the relief valve's mode
    ``popped`` (N,) (1 open, 0 shut; default open at or above set): the environments' fast
    path. Returns the new P, x and mode."""
    mode = _mode(pressure, params, popped)
    p, x, table = integrate(_integrate_rows, pressure, opening,
                            coefficients(params, valve_command, inflow, mode), dt, rtol, *atol,
                            name="pressure.step", return_coeffs=True)
    return p, x, table[:, MODE].copy()


def step(state: Array, valve_command: FloatOrArray, inflow: FloatOrArray, dt: float,
         params: Params = Params(), rtol: float = RTOL,
         atol: tuple[float, float] = (ATOL_P, ATOL_X), popped: FloatOrArray | None = None
         ) -> Array:
    """Advance every row of ``state`` (N, 2) = [P bar a, x] by ``dt`` minutes with the valve
    command (0..1) and inflow (kg/min) held over the step, the relief valve starting in mode
    ``popped`` (default: open at or above set)."""
    state = np.asarray(state, dtype=np.float64)
    if state.ndim != 2 or state.shape[1] != 2:
        raise ValueError(f"pressure.step: state must have shape (N, 2), got {state.shape}")
    p, x, _ = advance(state[:, 0], state[:, 1], valve_command, inflow, dt, params, popped,
                      rtol, atol)
    return np.stack([p, x], axis=1)


def balancing_opening(pressure: FloatOrArray, inflow: FloatOrArray,
                      params: Params = Params()) -> Array:
    """The valve opening whose flow equals ``inflow`` at ``pressure`` (an equilibrium), clipped
    to [0, 1] when the valve cannot pass it."""
    full = valve_flow(pressure, np.ones_like(np.asarray(pressure, float)), params)
    r = params.valve_rangeability
    char = np.clip(np.asarray(inflow, float) / full, 0.0, 1.0)
    return np.log1p(char * (r - 1.0)) / np.log(r)
