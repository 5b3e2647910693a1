"""Baseline PID controllers for the process envs, run through the same evaluation path as a
trained policy (the Controller protocol: ``act(obs batch) -> action batch``, ``reset(mask)``).

Each PID reads its process variable and setpoint from the observation, de-normalised with the
env module's ``OBS_CENTER`` / ``OBS_SCALE``, and writes a valve opening u in [0, 1] as the
action 2u - 1. ISA form, per copy::

    e = sp - pv
    u = I + sign * kp * (e - td * d(pv_f)/dt),   I += sign * kp * dt / ti * e

plus an optional static feedforward ``ff(measured disturbance, setpoint)`` (the pressure loop's:
the opening that passes the measured inflow at the setpoint on the nominal valve, so the valve
opens with a surge instead of after the pressure has risen), with derivative on the
(filtered) measurement so setpoint steps do not kick the valve,
conditional integration (the integral stops while the output is saturated in the direction the
error pushes: anti-windup), and a bumpless start: on the first step of an episode I is set so
that u equals the valve's current opening.

Tuned gains (``CSTR_GAINS``, ``PRESSURE_GAINS``) come from
``python -m safe_trpo.run.pid_tuning cstr`` / ``... pressure``: a grid search over (kp, ti,
td) that minimises the mean tracking error on 64 tuning episodes (seed 10_000, default env
kwargs) among gains whose mean episode costs stay within the budgets of
``scenarios/cstr_runaway.toml`` / ``pressure_relief.toml``; evaluation uses other seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs import cstr_env, pressure, pressure_env


@dataclass(frozen=True)
class PIDGains:
    """Gains of one loop, in the process variable's units (mol/L, bar) and minutes."""

    kp: float
    """Proportional gain: valve opening (0..1) per unit of error."""
    ti_minutes: float
    """Integral time, min; inf disables integral action."""
    td_minutes: float = 0.0
    """Derivative time, min; 0 disables derivative action."""
    derivative_filter: float = 8.0
    """N: the measurement feeding the derivative is filtered with time constant td / N."""


# From ``python -m safe_trpo.run.pid_tuning cstr`` / ``pressure`` (grids in that module's
# ``GRIDS``; the best gains are inside the grid, not on its edge).
CSTR_GAINS = PIDGains(kp=2.0, ti_minutes=2.0, td_minutes=1.0)
"""Ca loop, opening per mol/L of Ca error (opening the coolant valve raises Ca). On the tuning
episodes (re-tuned after the valve ramp change, same best gains): mean |Ca - setpoint| 0.0118
mol/L, 4.3 K min above the band and 0.11 min in runaway per episode (within the 5 K min /
0.25 min budgets). More integral or derivative action runs away."""
PRESSURE_GAINS = PIDGains(kp=0.3, ti_minutes=1.0, td_minutes=0.1)
"""Pressure loop, opening per bar of error (reverse acting: opening lowers the pressure). Tuned
on the shipped scenario's adiabatic vessel (``pid_tuning.ENV_KWARGS``) with setpoints up to
8.6 bar a (the 10 % margin below the 9.5 bar a relief set): mean |P - setpoint| 0.071 bar and
nothing vented on the tuning episodes. The integral time sits on the grid's shortest value."""


class PID:
    """A batch of independent PID loops, one per env copy."""

    def __init__(self, gains: PIDGains, dt_minutes: float, *, pv_index: int, sp_index: int,
                 opening_index: int, center: np.ndarray, scale: np.ndarray,
                 sign: float, feedforward: Callable[[np.ndarray], np.ndarray] | None = None
                 ) -> None:
        """``pv_index``/``sp_index``/``opening_index``: observation columns of the process
        variable, its setpoint and the valve opening; ``center``/``scale``: the env's
        observation normalisation; ``sign``: +1 if opening the valve raises the process
        variable, -1 if it lowers it; ``feedforward``: de-normalised observations (N, obs_dim)
        -> an opening (N,) added to the PID's output (None: none)."""
        self.feedforward = feedforward
        self.gains, self.dt, self.sign = gains, float(dt_minutes), float(sign)
        self.pv_index, self.sp_index, self.opening_index = pv_index, sp_index, opening_index
        self.center, self.scale = np.asarray(center, float), np.asarray(scale, float)
        self._integral = self._pv_filtered = self._fresh = None

    def reset(self, mask: np.ndarray | None = None) -> None:
        if self._fresh is None or mask is None:
            self._fresh = None  # sized on the next act()
        else:
            self._fresh[np.asarray(mask, dtype=bool)] = True

    def act(self, obs: np.ndarray) -> np.ndarray:
        raw = np.asarray(obs, dtype=np.float64) * self.scale + self.center
        pv, sp, opening = raw[:, self.pv_index], raw[:, self.sp_index], raw[:, self.opening_index]
        g, dt = self.gains, self.dt
        error = sp - pv
        if self._fresh is None:
            n = raw.shape[0]
            self._integral, self._pv_filtered = np.zeros(n), pv.copy()
            self._fresh = np.ones(n, dtype=bool)
        fresh = self._fresh
        ff = np.zeros_like(pv) if self.feedforward is None else self.feedforward(raw)
        self._pv_filtered = np.where(fresh, pv, self._pv_filtered)
        self._integral = np.where(fresh, opening - self.sign * g.kp * error - ff, self._integral)
        fresh[:] = False
        derivative = np.zeros_like(pv)
        if g.td_minutes > 0:
            alpha = dt / (g.td_minutes / g.derivative_filter + dt)
            previous = self._pv_filtered
            self._pv_filtered = previous + alpha * (pv - previous)
            derivative = (self._pv_filtered - previous) / dt
        unclipped = (self._integral + ff
                     + self.sign * g.kp * (error - g.td_minutes * derivative))
        u = np.clip(unclipped, 0.0, 1.0)
        if np.isfinite(g.ti_minutes):
            push = self.sign * error  # the direction the error moves the output
            stuck = ((unclipped >= 1.0) & (push > 0)) | ((unclipped <= 0.0) & (push < 0))
            self._integral = self._integral + np.where(
                stuck, 0.0, self.sign * g.kp * dt / g.ti_minutes * error)
        return (2.0 * u - 1.0).astype(np.float32)[:, None]


def cstr_pid(gains: PIDGains = CSTR_GAINS, dt_minutes: float = 0.5) -> PID:
    """The Ca-concentration loop of SafeTRPO/CSTR-v0 (pass the env's ``dt_minutes``)."""
    names = cstr_env.OBS_NAMES
    return PID(gains, dt_minutes, pv_index=names.index("ca"),
               sp_index=names.index("ca_setpoint"), opening_index=names.index("valve_opening"),
               center=cstr_env.OBS_CENTER, scale=cstr_env.OBS_SCALE, sign=+1.0)


def pressure_pid(gains: PIDGains = PRESSURE_GAINS, dt_minutes: float = 0.25,
                 feedforward: bool = False) -> PID:
    """The pressure loop of SafeTRPO/PressureVessel-v0 (pass the env's ``dt_minutes``); with
    ``feedforward`` it adds the nominal valve's opening that passes the measured inflow at the
    setpoint (the policy sees the measured inflow too: a fair PID uses it)."""
    names = pressure_env.OBS_NAMES
    sp, flow = names.index("pressure_setpoint"), names.index("inflow")

    def balancing(raw: np.ndarray) -> np.ndarray:
        return pressure.balancing_opening(raw[:, sp], np.maximum(raw[:, flow], 0.0))

    return PID(gains, dt_minutes, pv_index=names.index("pressure"), sp_index=sp,
               opening_index=names.index("valve_opening"), center=pressure_env.OBS_CENTER,
               scale=pressure_env.OBS_SCALE, sign=-1.0,
               feedforward=balancing if feedforward else None)


class HoldValve:
    """'Doing nothing': hold the valve where each episode starts (read from the observation)."""

    def __init__(self, opening_index: int, center: np.ndarray, scale: np.ndarray) -> None:
        self.opening_index = opening_index
        self.center, self.scale = float(center[opening_index]), float(scale[opening_index])
        self._held: np.ndarray | None = None
        self._fresh: np.ndarray | None = None

    def reset(self, mask: np.ndarray | None = None) -> None:
        if self._fresh is None or mask is None:
            self._fresh = None
        else:
            self._fresh[np.asarray(mask, dtype=bool)] = True

    def act(self, obs: np.ndarray) -> np.ndarray:
        opening = np.asarray(obs, dtype=np.float64)[:, self.opening_index] * self.scale
        opening = opening + self.center
        if self._fresh is None:
            self._held, self._fresh = opening.copy(), np.zeros(len(opening), dtype=bool)
        self._held = np.where(self._fresh, opening, self._held)
        self._fresh[:] = False
        return (2.0 * self._held - 1.0).astype(np.float32)[:, None]


def hold_valve(env_module) -> HoldValve:
    """``HoldValve`` for ``envs.cstr_env`` or ``envs.pressure_env``."""
    return HoldValve(env_module.OBS_NAMES.index("valve_opening"), env_module.OBS_CENTER,
                     env_module.OBS_SCALE)
