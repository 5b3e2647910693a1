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
Tc=310 K lands 12 K low (tests/test_cstr.py shows it). ``step`` instead uses RODAS4 (Hairer &
Wanner's stiffly accurate, L-stable Rosenbrock method, order 4 with an order-3 error estimate)
with the analytic 2x2 Jacobian, solved in closed form, and a step size chosen per row: a quiet
row takes the whole interval in one step, a row that is igniting takes the tens of small steps
it needs, and no row's result depends on the other rows in the batch.

``rosenbrock_2d`` is generic over any two-state right-hand side (``envs.pressure`` uses it too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

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
    Caf mol/L, floor = min(Ti, Tc) K); the last two only bound the solution (``admissible``).
    """
    p = params
    dil = p.q / p.V
    cool = p.UA / (p.V * p.rho * p.C)
    grouped = (dil, -p.dH / (p.rho * p.C), dil + cool, dil * p.Ti + cool * coolant_temp,
               dil * p.Caf, p.k0, p.E_over_R, p.Caf, np.minimum(p.Ti, coolant_temp))
    return tuple(np.asarray(c, dtype=np.float64) for c in grouped)  # scalars as 0-d arrays


def rhs(ca: Array, temp: Array, dil, heat, loss, source, feed, k0, e_r, caf, floor
        ) -> tuple[Array, Array]:
    """dCa/dt (mol/(L min)) and dT/dt (K/min) from the grouped ``coefficients``."""
    rate = k0 / np.exp(e_r / temp) * ca  # k0 exp(-E/RT) Ca, one operation fewer
    return feed - dil * ca - rate, source - loss * temp + heat * rate


def rhs_jac(ca: Array, temp: Array, dil, heat, loss, source, feed, k0, e_r, caf, floor
            ) -> tuple[Array, ...]:
    """``rhs`` and its Jacobian entries d(dCa, dT)/d(Ca, T): (f1, f2, j11, j12, j21, j22)."""
    k = k0 / np.exp(e_r / temp)
    rate = k * ca
    drate_dtemp = rate * (e_r / (temp * temp))
    return (feed - dil * ca - rate, source - loss * temp + heat * rate,
            -dil - k, -drate_dtemp, heat * k, heat * drate_dtemp - loss)


def admissible(ca: Array, temp: Array, new_ca: Array, new_temp: Array, h: Array, dil, heat,
               loss, source, feed, k0, e_r, caf, floor) -> Array:
    """For ``rosenbrock_2d``: 1 where a step from (Ca, T) to (new Ca, new T) stays where an
    exact trajectory can go, else 0.25 (retry a quarter as long). Reaction only consumes A, so
    0 <= Ca <= max(Ca, Caf); it only releases heat, so T >= min(T, Ti, Tc). (Slack: the
    default tolerances' absolute parts.)"""
    inside = ((new_ca >= np.minimum(ca, 0.0) - ATOL_CA) & (new_ca <= np.maximum(ca, caf) + ATOL_CA)
              & (new_temp >= np.minimum(temp, floor) - ATOL_T))
    return np.where(inside, 1.0, 0.25)


def derivatives(state: Array, coolant_temp: FloatOrArray, params: Params = Params()) -> Array:
    """Time derivatives (N, 2) of ``state`` (N, 2) = [Ca mol/L, T K] at coolant temperature
    ``coolant_temp`` (K, float or (N,)), in mol/(L min) and K/min."""
    state = np.asarray(state, dtype=np.float64)
    f1, f2 = rhs(state[..., 0], state[..., 1], *coefficients(params, coolant_temp))
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
    coeffs = coefficients(params, coolant_temp)
    return rosenbrock_2d(rhs, rhs_jac, ca, temp, coeffs, dt, rtol, *atol, admissible=admissible)


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


# RODAS4 coefficients (Hairer & Wanner, rodas.f, METH=1), in the transformed form where each
# stage solves (I/(gamma h) - J) k_i = f(y + sum a_ij k_j) + sum (c_ij / h) k_j.
_GAMMA = 0.25


def _k(*values: float) -> tuple[np.ndarray, ...]:
    # 0-d arrays, not Python floats: numpy multiplies an array by a 0-d array about a third
    # faster than by a Python float, and the integrator is made of such products.
    return tuple(np.array(v) for v in values)


_A21, = _k(1.544)
_A31, _A32 = _k(0.9466785280815826, 0.2557011698983284)
_A41, _A42, _A43 = _k(3.314825187068521, 2.896124015972201, 0.9986419139977817)
_A51, _A52, _A53, _A54 = _k(1.221224509226641, 6.019134481288629, 12.53708332932087,
                            -0.6878860361058950)
_C21, = _k(-5.6688)
_C31, _C32 = _k(-2.430093356833875, -0.2063599157091915)
_C41, _C42, _C43 = _k(-0.1073529058151375, -9.594562251023355, -20.47028614809616)
_C51, _C52, _C53, _C54 = _k(7.496443313967647, -10.24680431464352, -33.99990352819905,
                            11.70890893206160)
_C61, _C62, _C63, _C64, _C65 = _k(8.083246795921522, -7.981132988064893, -31.52159432874371,
                                  16.31930543123136, -6.058818238834054)
_FOUR, _ONE = _k(1.0 / _GAMMA, 1.0)


def rodas4_step(rhs_: Callable, rhs_jac_: Callable, y1: Array, y2: Array, args: tuple,
                h: Array) -> tuple[Array, Array, Array, Array]:
    """One RODAS4 step of size ``h`` (per row) for a two-state autonomous system.

    Returns the new state and the embedded error estimate (new minus order-3 solution). Written
    out stage by stage (no loops over coefficient tables): with small batches the cost is the
    number of numpy calls, not arithmetic.
    """
    f1, f2, j11, j12, j21, j22 = rhs_jac_(y1, y2, *args)
    fac = _FOUR / h  # 1 / (gamma h)
    e11, e22 = fac - j11, fac - j22
    inv_det = _ONE / (e11 * e22 - j12 * j21)
    # (I/(gamma h) - J)^-1 of a 2x2 matrix, entry by entry: exact and cheap.
    m11, m12, m21, m22 = e22 * inv_det, j12 * inv_det, j21 * inv_det, e11 * inv_det
    ih = _ONE / h
    p1 = m11 * f1 + m12 * f2
    p2 = m21 * f1 + m22 * f2
    g1, g2 = rhs_(y1 + _A21 * p1, y2 + _A21 * p2, *args)
    b1, b2 = g1 + (_C21 * ih) * p1, g2 + (_C21 * ih) * p2
    q1, q2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    g1, g2 = rhs_(y1 + _A31 * p1 + _A32 * q1, y2 + _A31 * p2 + _A32 * q2, *args)
    b1 = g1 + ih * (_C31 * p1 + _C32 * q1)
    b2 = g2 + ih * (_C31 * p2 + _C32 * q2)
    r1, r2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    g1, g2 = rhs_(y1 + _A41 * p1 + _A42 * q1 + _A43 * r1,
                  y2 + _A41 * p2 + _A42 * q2 + _A43 * r2, *args)
    b1 = g1 + ih * (_C41 * p1 + _C42 * q1 + _C43 * r1)
    b2 = g2 + ih * (_C41 * p2 + _C42 * q2 + _C43 * r2)
    s1, s2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    z1 = y1 + _A51 * p1 + _A52 * q1 + _A53 * r1 + _A54 * s1
    z2 = y2 + _A51 * p2 + _A52 * q2 + _A53 * r2 + _A54 * s2
    g1, g2 = rhs_(z1, z2, *args)
    b1 = g1 + ih * (_C51 * p1 + _C52 * q1 + _C53 * r1 + _C54 * s1)
    b2 = g2 + ih * (_C51 * p2 + _C52 * q2 + _C53 * r2 + _C54 * s2)
    u1, u2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    z1, z2 = z1 + u1, z2 + u2  # stiffly accurate: stage 6 starts from the stage-5 solution
    g1, g2 = rhs_(z1, z2, *args)
    b1 = g1 + ih * (_C61 * p1 + _C62 * q1 + _C63 * r1 + _C64 * s1 + _C65 * u1)
    b2 = g2 + ih * (_C61 * p2 + _C62 * q2 + _C63 * r2 + _C64 * s2 + _C65 * u2)
    v1, v2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    return z1 + v1, z2 + v2, v1, v2


def rosenbrock_2d(rhs_: Callable, rhs_jac_: Callable, y1: Array, y2: Array, args: tuple,
                  dt: float, rtol: float, atol1: float, atol2: float,
                  admissible: Callable | None = None,
                  max_iterations: int = 10_000) -> tuple[Array, Array]:
    """Integrate a two-state autonomous ODE over ``dt`` for every row, each row with its own
    adaptive RODAS4 step size; a row's result does not depend on the other rows.

    ``rhs_(y1, y2, *args)`` returns the two derivatives and ``rhs_jac_`` those plus the four
    Jacobian entries (see ``rhs_jac``); each element of ``args`` is a float or an array of shape
    (N,). Every row first tries the whole interval; rows that need smaller steps go on in a
    smaller working set (re-gathered only when it has halved: with few rows the cost is the
    number of numpy calls, not their size). Step-size control as in Hairer & Wanner's rodas.f:
    accept when the scaled RMS error <= 1, next h = h * clip(0.9 err^-1/4, 0.2, 6), never
    growing right after a rejection, with Gustafsson's predictive controller after an accepted
    step (it uses the error trend and saves many rejections through an ignition).

    ``admissible(y1, y2, new1, new2, h, *args)``, if given, returns per row a factor: >= 1 lets
    the step be judged by its error estimate, f < 1 rejects it whatever the estimate says and
    retries with h * f. Why: a linearly implicit step far longer than an ignition can
    extrapolate the exponential the wrong way (Ca rising above the feed, T falling below every
    inlet) while its embedded estimate is equally wrong and looks small; and a long step across
    a kink of the right-hand side (a relief valve lifting) can look smooth to the estimate too.
    """
    y1 = np.array(y1, dtype=np.float64)
    y2 = np.array(y2, dtype=np.float64)
    args_ok = all(np.all(np.isfinite(a)) for a in args)
    if not (args_ok and np.all(np.isfinite(y1)) and np.all(np.isfinite(y2))):
        raise ValueError("rosenbrock_2d: non-finite state or input")
    n = y1.shape[0]
    rows = np.arange(n)  # the working set: rows of the full arrays that w_* hold
    w1, w2 = y1, y2
    w_args = tuple(np.broadcast_to(a, (n,)) if np.ndim(a) else a for a in args)
    w_t, w_h = np.zeros(n), np.full(n, float(dt))
    # last accepted step and its error, for Gustafsson's predictive controller (nan: none yet)
    w_hacc, w_eacc = np.full(n, np.nan), np.full(n, np.nan)
    end = dt * (1.0 - 1e-12)
    minimum, maximum, where = np.minimum, np.maximum, np.where  # ufuncs: no Python wrappers
    rtol, atol1, atol2, c_dt, c_end = _k(rtol, atol1, atol2, dt, end)
    safe, shrink, grow_max, reject, half, err_floor = _k(0.9, 0.2, 6.0, 0.25, 0.5, 1e-2)
    one, inf = _k(1.0, np.inf)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for iteration in range(max_iterations):
            active = w_t < c_end  # finished rows ride along until the set shrinks, frozen
            hs = minimum(w_h, c_dt - w_t)
            n1, n2, e1, e2 = rodas4_step(rhs_, rhs_jac_, w1, w2, w_args, hs)
            e1 = e1 / (atol1 + rtol * maximum(np.abs(w1), np.abs(n1)))
            e2 = e2 / (atol2 + rtol * maximum(np.abs(w2), np.abs(n2)))
            err = np.sqrt(half * (e1 * e1 + e2 * e2))
            # A huge trial step can overflow exp(); such a step is rejected, never accepted.
            finite = err < inf
            retry = one if admissible is None else admissible(w1, w2, n1, n2, hs, *w_args)
            sane = finite & (retry >= one)
            ok = sane & (err <= one) & active
            root = np.sqrt(np.sqrt(err))
            grow = minimum(maximum(safe / root, shrink), grow_max)
            trend = safe * hs / w_hacc * np.sqrt(np.sqrt(w_eacc)) / (root * root)
            grow = where(ok, np.fmin(grow, maximum(trend, shrink)),
                         where(sane, minimum(grow, safe), where(finite, retry, reject)))
            w_h = hs * grow
            w_hacc = where(ok, hs, w_hacc)
            w_eacc = where(ok, maximum(err, err_floor), w_eacc)
            w_t = where(ok, w_t + hs, w_t)
            w1, w2 = where(ok, n1, w1), where(ok, n2, w2)
            still = w_t < c_end
            count = int(np.count_nonzero(still))
            if 2 * count <= rows.size or rows.size - count >= 64:  # shrink the working set
                y1[rows], y2[rows] = w1, w2
                if count == 0:
                    return y1, y2
                left = np.flatnonzero(still)
                rows = rows[left]
                w1, w2, w_t, w_h, w_hacc, w_eacc = (a[left] for a in
                                                    (w1, w2, w_t, w_h, w_hacc, w_eacc))
                w_args = tuple(a[left] if np.ndim(a) else a for a in w_args)
            if iteration % 64 == 63 and minimum.reduce(w_h[w_t < end]) < dt * 1e-13:
                break
    raise RuntimeError(f"rosenbrock_2d: rows {rows[:5].tolist()} did not reach dt={dt} "
                       f"(step size collapsed or more than {max_iterations} steps)")
