"""Continuous stirred-tank reactor (CSTR): physics as plain batched functions, time in minutes.

The classic exothermic first-order reaction A -> B in a cooled, perfectly mixed tank (Seborg et
al., *Process Dynamics and Control*; the model pcgym's ``cstr`` steps)::

    dCa/dt = q/V (Caf - Ca) - k0 exp(-E/R / T) Ca
    dT/dt  = q/V (Ti - T) + (-dH)/(rho C) k0 exp(-E/R / T) Ca + UA/(V rho C) (Tc - T)

State rows are ``[Ca (mol/L), T (K)]``; the input is the coolant temperature ``Tc`` (K). Every
array has a leading batch axis of N rows; ``Params`` fields are floats or arrays of shape (N,),
so each row can carry its own (uncertain, disturbed) parameters.

Why not fixed-step RK4: once the reactor ignites, the reaction rate grows with exp(-E/RT) to
hundreds per minute and the model is stiff. One 26/60-minute RK4 step from Ca=0.5, T=360 K with
Tc=310 K lands 12 K low (tests/envs/test_cstr.py shows it). ``step`` instead uses adaptive RODAS4
(Hairer & Wanner's stiffly accurate, L-stable Rosenbrock method, order 4 with an order-3 error
estimate) with the analytic 2x2 Jacobian, solved in closed form, and a step size chosen per row:
a quiet row takes the whole interval in one step, a row that is igniting takes the tens of small
steps it needs. The integrator (``envs._rodas``, shared with ``envs.pressure``) is compiled with
numba and runs each row on its own: the igniting rows' many sequential steps then cost their
arithmetic, not numpy's per-call overhead, and no row's result depends on the other rows in the
batch. It compiles ``rhs_jac`` below for scalars, so the formulas exist once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from numba.extending import register_jitable
from scipy.optimize import brentq

from envs._rodas import compiled, integrate, specialise

Array = np.ndarray
FloatOrArray = float | np.ndarray

# Default tolerances of ``step``: RMS of the per-step error estimate over both states, scaled by
# atol + rtol*|y|. Chosen by measurement against scipy's Radau at rtol 1e-10: the ignition from
# Ca=0.5, T=360 K, Tc=310 K lands 0.001 K off, and runaway steps sampled from the environment
# under random valve moves stay within 0.01 K wherever the answer is well conditioned (benchmarks/
# bench_process_envs.py prints both). Ten times looser (1e-4) let some of those drift 0.15 K.
RTOL = 3e-5
ATOL_CA = 3e-5  # mol/L
ATOL_T = 3e-3  # K


@dataclass(frozen=True)
class Params:
    """CSTR parameters; the defaults are the classic benchmark (Seborg; pcgym's ``cstr``).

    Each field is a float or an array of shape (N,) (one value per batch row).
    """

    q: FloatOrArray = 100.0
    """Feed (and outflow) rate, L/min."""
    V: FloatOrArray = 100.0
    """Liquid volume, L."""
    rho: FloatOrArray = 1000.0
    """Density, g/L."""
    C: FloatOrArray = 0.239
    """Heat capacity, J/(g K)."""
    dH: FloatOrArray = -5e4
    """Heat of reaction, J/mol (negative: exothermic)."""
    E_over_R: FloatOrArray = 8750.0
    """Activation energy over the gas constant, K."""
    k0: FloatOrArray = 7.2e10
    """Pre-exponential factor, 1/min."""
    UA: FloatOrArray = 5e4
    """Jacket heat-transfer coefficient times area, J/(min K)."""
    Ti: FloatOrArray = 350.0
    """Feed temperature, K (a disturbance in the environment)."""
    Caf: FloatOrArray = 1.0
    """Feed concentration of A, mol/L (a disturbance in the environment)."""


Coefficients = tuple[FloatOrArray, ...]


def coefficients(params: Params, coolant_temp: FloatOrArray) -> Coefficients:
    """Group ``params`` and the coolant temperature Tc (K) into the constants the right-hand
    side uses, so that each evaluation is a handful of array operations::

        dCa/dt = feed - dil Ca - r,    dT/dt = source - loss T + heat r,   r = k0 e^(-E/R / T) Ca

    Returns (dil = q/V 1/min, heat = -dH/(rho C) K L/mol, loss = dil + UA/(V rho C) 1/min,
    source = dil Ti + UA/(V rho C) Tc K/min, feed = dil Caf mol/(L min), k0 1/min, E/R K,
    Caf mol/L, floor = min(Ti, Tc) K); the last two only bound the solution (``row_admissible``).
    """
    p = params
    dil = p.q / p.V
    cool = p.UA / (p.V * p.rho * p.C)
    grouped = (dil, -p.dH / (p.rho * p.C), dil + cool, dil * p.Ti + cool * coolant_temp,
               dil * p.Caf, p.k0, p.E_over_R, p.Caf, np.minimum(p.Ti, coolant_temp))
    return tuple(np.asarray(c, dtype=np.float64) for c in grouped)  # scalars as 0-d arrays


@register_jitable  # a plain numpy function, which numba can also compile inside the integrator
def rhs_jac(ca: Array, temp: Array, dil, heat, loss, source, feed, k0, e_r, caf, floor
            ) -> tuple[Array, ...]:
    """dCa/dt (mol/(L min)), dT/dt (K/min) from the grouped ``coefficients``, and their
    Jacobian entries d(dCa, dT)/d(Ca, T): (f1, f2, j11, j12, j21, j22)."""
    k = k0 / np.exp(e_r / temp)
    rate = k * ca
    drate_dtemp = rate * (e_r / (temp * temp))
    return (feed - dil * ca - rate, source - loss * temp + heat * rate,
            -dil - k, -drate_dtemp, heat * k, heat * drate_dtemp - loss)


@compiled
def row_rhs_jac(ca: float, temp: float, c: np.ndarray) -> tuple[float, ...]:
    """For the integrator (``envs._rodas``): ``rhs_jac`` of one row, compiled for float64
    scalars, with that row's ``coefficients()`` in order in ``c``."""
    return rhs_jac(ca, temp, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8])


@compiled
def row_admissible(ca: float, temp: float, new_ca: float, new_temp: float, c: np.ndarray
                   ) -> float:
    """For the integrator: 1 where a step from (Ca, T) to (new Ca, new T) stays where an exact
    trajectory can go, else 0.25 (retry a quarter as long). Reaction only consumes A, so
    0 <= Ca <= max(Ca, Caf); it only releases heat, so T >= min(T, Ti, Tc). (Slack: the
    default tolerances' absolute parts.)"""
    caf, floor = c[7], c[8]  # see ``coefficients``
    inside = (min(ca, 0.0) - ATOL_CA <= new_ca <= max(ca, caf) + ATOL_CA
              and new_temp >= min(temp, floor) - ATOL_T)
    return 1.0 if inside else 0.25


@compiled
def row_switch(ca: float, temp: float, c: np.ndarray) -> None:
    """For the integrator: the CSTR has no discrete modes."""


_integrate_rows = specialise(sys.modules[__name__])
"""``envs._rodas.integrate_rows`` for ``row_rhs_jac`` and ``row_admissible`` above."""


def derivatives(state: Array, coolant_temp: FloatOrArray, params: Params = Params()) -> Array:
    """Time derivatives (N, 2) of ``state`` (N, 2) = [Ca mol/L, T K] at coolant temperature
    ``coolant_temp`` (K, float or (N,)), in mol/(L min) and K/min."""
    state = np.asarray(state, dtype=np.float64)
    f1, f2, *_ = rhs_jac(state[..., 0], state[..., 1], *coefficients(params, coolant_temp))
    return np.stack(np.broadcast_arrays(f1, f2), axis=-1)


def jacobian(state: Array, coolant_temp: FloatOrArray, params: Params = Params()) -> Array:
    """Jacobian (N, 2, 2) of ``derivatives`` with respect to the state."""
    state = np.asarray(state, dtype=np.float64)
    _, _, *j = rhs_jac(state[..., 0], state[..., 1], *coefficients(params, coolant_temp))
    j = np.broadcast_arrays(*j)
    return np.stack([np.stack(j[:2], axis=-1), np.stack(j[2:], axis=-1)], axis=-2)


def step(state: Array, coolant_temp: FloatOrArray, dt: float, params: Params = Params(),
         rtol: float = RTOL, atol: tuple[float, float] = (ATOL_CA, ATOL_T)) -> Array:
    """Advance every row of ``state`` (N, 2) = [Ca mol/L, T K] by ``dt`` minutes with the
    coolant held at ``coolant_temp`` (K, float or (N,)).

    ``rtol`` and ``atol`` (mol/L, K) bound each internal step's error estimate; the defaults keep
    thermal runaway within 0.1 K of a tight Radau solution. Raises ``ValueError`` for a
    non-finite input and ``RuntimeError`` if a row cannot be integrated (never returns NaN).
    """
    state = np.asarray(state, dtype=np.float64)
    if state.ndim != 2 or state.shape[1] != 2:
        raise ValueError(f"cstr.step: state must have shape (N, 2), got {state.shape}")
    ca, temp = advance(state[:, 0], state[:, 1], coolant_temp, dt, params, rtol, atol)
    return np.stack([ca, temp], axis=1)


def advance(ca: Array, temp: Array, coolant_temp: FloatOrArray, dt: float,
            params: Params = Params(), rtol: float = RTOL,
            atol: tuple[float, float] = (ATOL_CA, ATOL_T)) -> tuple[Array, Array]:
    """``step`` on separate (N,) arrays of Ca (mol/L) and T (K): the environments' fast path."""
    return integrate(_integrate_rows, ca, temp, coefficients(params, coolant_temp), dt, rtol,
                     *atol, name="cstr.step")


def low_steady_state(coolant_temp: float, params: Params = Params()) -> tuple[float, float]:
    """The lowest-temperature steady state (Ca mol/L, T K) at a constant coolant temperature:
    the reactor's normal operating branch (it exists up to Tc = 303.23 K with the defaults).
    Scalar parameters only."""
    dil, heat, loss, source, feed, k0, e_r, caf, floor = coefficients(params, coolant_temp)

    def heat_balance(temp: float) -> float:
        # dT/dt with Ca at its own steady state for this temperature, feed / (dil + k)
        k = k0 * np.exp(-e_r / temp)
        return source - loss * temp + heat * k * feed / (dil + k)

    lo = float(floor) - 1.0  # the balance is > 0 below both feed and coolant temperatures
    grid = np.linspace(lo, lo + 300.0, 300_001)  # 1 mK apart: resolves roots near ignition
    values = heat_balance(grid)
    first = int(np.flatnonzero(np.sign(values[:-1]) != np.sign(values[1:]))[0])
    temp = brentq(heat_balance, grid[first], grid[first + 1], xtol=1e-12)
    k = k0 * np.exp(-e_r / temp)
    return float(feed / (dil + k)), float(temp)
