"""SafeTRPO/CSTR-v0: hold a reactor's concentration on setpoint without letting it run away.

Plant: the classic exothermic CSTR of ``envs.cstr`` (Ca in mol/L, T in K, time in minutes).
With nominal parameters the reactor ignites once the coolant is warmer than 303.2 K (where its
cool branch ends, at Ca 0.74 mol/L, T 336 K). The hot steady state (near 375-380 K) exists for
coolant temperatures down to 298.1 K but is stable only above 306.2 K (a Hopf point): between
about 303.2 and 304.5 K the ignited reactor oscillates in relaxation cycles peaking at
461-467 K, and cooling to 303.0 K returns it to the cool branch. Low concentration setpoints
need a hot reactor, close to ignition: tracking and safety pull against each other.

Time: one step is ``dt_minutes`` (default 0.5 min); an episode is ``episode_minutes`` (default
60 min = 120 steps) and ends by truncation only (nothing terminates: a runaway is a cost).

Action: one value a in [-1, 1], the coolant valve command; the valve opening is u = (a + 1)/2.
The valve stem ramps toward u at ``valve_rate_per_min`` (fraction of stroke per minute) within
the step, stopping when it gets there; the coolant temperature's target is
``coolant_max_K - opening * (coolant_max_K - coolant_min_K)`` (open is cold) and the coolant
follows it through a first-order lag of ``coolant_lag_minutes``, solved exactly for the
piecewise-linear target (``coolant_response``). The reactor sees the coolant's average over the
step.

Observation (float32): ``(x - OBS_CENTER) / OBS_SCALE`` of ``OBS_NAMES``, clipped to +-50:
measured Ca (noisy, and ``analyser_dead_time_minutes`` old: an online analyser's sample
delay, rounded to whole steps) and T (noisy), the Ca setpoint, coolant temperature, valve
opening, and the measured disturbances: feed temperature Ti and feed concentration Caf.

Reward per step: ``-|Ca - Ca_setpoint| / tracking_scale - move_penalty * |valve travel|``
(true Ca after the step, setpoint in force during it; travel in fractions of full stroke, the
wear a valve accumulates). ``info["tracking_error"]`` is |Ca - Ca_setpoint| in mol/L,
``info["valve_travel"]`` the stroke fraction the valve moved in the step.

Costs per step (true temperature after the step), each >= 0, ``info["cost"]`` their sum:
- ``cost_temperature``: kelvin-minutes above the safe band, max(T - safe_temp_K, 0) * dt. An
  episode's sum is its degree-minutes above the band (e.g. 2 minutes at 2.5 K over = 5 K min).
- ``cost_runaway``: minutes in runaway, dt when T > runaway_temp_K, else 0. An episode's sum is
  the time it spent in runaway. The default 350 K is the unstable middle steady state at the
  mid-range coolant temperature (300 K, valve half open): above it, with the coolant there, the
  reactor ignites rather than returns; it is 14 K above the hottest stable cool-branch state
  (336 K) and 25 K below the hot branch.

Randomness per episode, all from the env's seeded generator: Ca setpoint levels (uniform in
[setpoint_min, setpoint_max], a new one every ``setpoint_period_minutes``), one feed-temperature
step and one feed-concentration step at uniform times (sizes uniform in +-max), heat-transfer
(UA) and rate-constant (k0) factors uniform in 1 +- their uncertainty, and Gaussian sensor noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from envs import cstr
from envs._vector import (
    PlantEnv,
    PlantVectorEnv,
    build_config,
    check_actions,
    check_fields,
    draw_episodes,
)
from envs.info import EnvInfo

ENV_ID = "SafeTRPO/CSTR-v0"
OBS_NAMES = ("ca", "temperature", "ca_setpoint", "coolant_temperature", "valve_opening",
             "feed_temperature", "feed_concentration")
OBS_CENTER = np.array([0.85, 330.0, 0.85, 300.0, 0.5, 350.0, 1.0])
OBS_SCALE = np.array([0.05, 10.0, 0.05, 5.0, 0.5, 5.0, 0.05])
OBS_LIMIT = 50.0  # observations are clipped to +-this (far outside any physical state)
COST_NAMES = ("temperature", "runaway")


@dataclass(frozen=True)
class CSTRConfig:
    """Constructor kwargs of SafeTRPO/CSTR-v0 (scenario ``[env] kwargs``)."""

    dt_minutes: float = 0.5
    """Control interval, min; 0.1-1 (the reactor's time constants are about 0.3-1 min)."""
    episode_minutes: float = 60.0
    """Episode length, min; steps = episode_minutes / dt_minutes (rounded)."""
    setpoint_min: float = 0.82
    """Lowest Ca setpoint, mol/L (T about 330 K); the nominal cool branch ends at 0.74 mol/L and
    disturbances and parameter draws move that edge, so low setpoints sit close to ignition."""
    setpoint_max: float = 0.92
    """Highest Ca setpoint, mol/L; 0.95 needs the coolant near 290 K."""
    setpoint_period_minutes: float = 15.0
    """Minutes between setpoint changes."""
    feed_temp_step_K: float = 5.0
    """Largest feed-temperature step, K (one per episode, size uniform in +-this); 0 = none."""
    feed_conc_step: float = 0.05
    """Largest feed-concentration step, mol/L (one per episode); 0 = none."""
    noise_ca: float = 0.005
    """Std of the Ca measurement noise, mol/L."""
    noise_temp: float = 0.2
    """Std of the temperature measurement noise, K."""
    ua_uncertainty: float = 0.1
    """Half-width of the per-episode UA factor (jacket fouling): UA * U(1 - x, 1 + x); 0-0.5."""
    k0_uncertainty: float = 0.05
    """Half-width of the per-episode k0 factor (catalyst activity); 0-0.5."""
    safe_temp_K: float = 340.0
    """Top of the safe temperature band, K; cost_temperature counts K min above it."""
    runaway_temp_K: float = 350.0
    """Above this the reactor is running away, K: 350 is the unstable middle steady state at
    the mid-range coolant (300 K), so above it the reactor ignites unless cooled harder."""
    coolant_min_K: float = 290.0
    """Coolant temperature with the valve fully open, K."""
    coolant_max_K: float = 310.0
    """Coolant temperature with the valve closed, K."""
    valve_rate_per_min: float = 1.0
    """Valve rate limit, fraction of full stroke per minute."""
    coolant_lag_minutes: float = 1.0
    """Time constant of the coolant temperature's response to the valve, min; 0 = none."""
    tracking_scale: float = 0.05
    """Ca error (mol/L) that costs one unit of reward per step."""
    move_penalty: float = 0.0
    """Reward per full stroke of valve travel (wear); 0 = none. The shipped scenario uses 1:
    a PID's ~0.01 stroke per step then costs ~5 % of its tracking penalty."""
    analyser_dead_time_minutes: float = 0.0
    """Age of the Ca measurement, min (an online analyser's sample delay); rounded to steps."""

    def __post_init__(self) -> None:
        inf = float("inf")
        check_fields(self, {
            "dt_minutes": (1e-3, 10.0), "episode_minutes": (1e-3, 1e5),
            "setpoint_min": (0.0, 2.0), "setpoint_max": (0.0, 2.0),
            "setpoint_period_minutes": (1e-3, inf), "feed_temp_step_K": (0.0, 50.0),
            "feed_conc_step": (0.0, 0.5), "noise_ca": (0.0, 1.0), "noise_temp": (0.0, 50.0),
            "ua_uncertainty": (0.0, 0.5), "k0_uncertainty": (0.0, 0.5),
            "safe_temp_K": (250.0, 600.0), "runaway_temp_K": (250.0, 600.0),
            "coolant_min_K": (200.0, 500.0), "coolant_max_K": (200.0, 500.0),
            "valve_rate_per_min": (1e-3, 1e3), "coolant_lag_minutes": (0.0, 100.0),
            "tracking_scale": (1e-6, 10.0), "move_penalty": (0.0, 1e3),
            "analyser_dead_time_minutes": (0.0, 60.0)})
        if self.setpoint_min > self.setpoint_max:
            raise ValueError("setpoint_min must be <= setpoint_max")
        if self.safe_temp_K > self.runaway_temp_K:
            raise ValueError(f"safe_temp_K ({self.safe_temp_K}) must be <= runaway_temp_K "
                             f"({self.runaway_temp_K}): the safe band ends before runaway")
        if self.coolant_min_K >= self.coolant_max_K:
            raise ValueError("coolant_min_K must be < coolant_max_K")
        if round(self.episode_minutes / self.dt_minutes) < 1:
            raise ValueError("episode_minutes must be at least one dt_minutes")


class CSTRPlant:
    """N reactors with their actuators, setpoints, disturbances and sensors: the one
    implementation behind ``CSTREnv`` (N = 1) and ``CSTRVectorEnv``."""

    def __init__(self, num: int, config: CSTRConfig) -> None:
        self.num, self.config = num, config
        c = config
        self.dt = c.dt_minutes
        self.n_steps = int(round(c.episode_minutes / c.dt_minutes))
        self.n_segments = int(np.ceil(self.n_steps * self.dt / c.setpoint_period_minutes - 1e-9))
        self.single_observation_space = spaces.Box(-OBS_LIMIT, OBS_LIMIT, (len(OBS_NAMES),),
                                                   np.float32)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.delay = int(round(c.analyser_dead_time_minutes / self.dt))  # steps
        self._tc_start = 0.5 * (c.coolant_min_K + c.coolant_max_K)
        self._ca_start, self._temp_start = cstr.low_steady_state(self._tc_start)
        z = np.zeros(num)
        self.ca, self.temp, self.valve, self.tc = z.copy(), z.copy(), z.copy(), z.copy()
        self.t = np.zeros(num, dtype=np.int64)
        self.ua, self.k0 = z.copy(), z.copy()
        self.ti_time, self.ti_size, self.caf_time, self.caf_size = (z.copy() for _ in range(4))
        self.levels = np.zeros((num, self.n_segments))
        self.noise = np.zeros((num, self.n_steps + 1, 2))
        self.ca_history = np.zeros((num, self.n_steps + 1))  # true Ca after each step
        self._ready = False

    def reset_rows(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        c, nominal = self.config, cstr.Params()
        u, z = draw_episodes(rngs, 6 + self.n_segments, self.n_steps + 1)
        minutes = self.n_steps * self.dt
        self.ua[rows] = nominal.UA * (1.0 + c.ua_uncertainty * (2.0 * u[:, 0] - 1.0))
        self.k0[rows] = nominal.k0 * (1.0 + c.k0_uncertainty * (2.0 * u[:, 1] - 1.0))
        self.ti_time[rows] = u[:, 2] * minutes
        self.ti_size[rows] = c.feed_temp_step_K * (2.0 * u[:, 3] - 1.0)
        self.caf_time[rows] = u[:, 4] * minutes
        self.caf_size[rows] = c.feed_conc_step * (2.0 * u[:, 5] - 1.0)
        self.levels[rows] = c.setpoint_min + (c.setpoint_max - c.setpoint_min) * u[:, 6:]
        self.noise[rows] = z
        self.ca[rows], self.temp[rows] = self._ca_start, self._temp_start
        self.ca_history[rows] = self._ca_start
        self.valve[rows], self.tc[rows] = 0.5, self._tc_start
        self.t[rows] = 0
        self._ready = True

    def _schedule(self, rows: np.ndarray | slice, t: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Setpoint (mol/L), feed temperature (K) and feed concentration (mol/L) in force from
        step ``t`` to t + 1 for copies ``rows``."""
        nominal, minutes = cstr.Params(), t * self.dt
        segment = np.minimum(((minutes + 1e-9) // self.config.setpoint_period_minutes)
                             .astype(np.int64), self.n_segments - 1)
        setpoint = self.levels[rows][np.arange(len(t)), segment]
        ti = nominal.Ti + np.where(minutes >= self.ti_time[rows], self.ti_size[rows], 0.0)
        caf = nominal.Caf + np.where(minutes >= self.caf_time[rows], self.caf_size[rows], 0.0)
        return setpoint, ti, caf

    def observe(self, rows: np.ndarray | None = None) -> np.ndarray:
        sel = slice(None) if rows is None else rows
        t = self.t[sel]
        noise = self.noise[sel][np.arange(len(t)), t]
        setpoint, ti, caf = self._schedule(sel, t)
        sampled = self.ca_history[sel][np.arange(len(t)), np.maximum(t - self.delay, 0)]
        raw = np.stack([sampled + self.config.noise_ca * noise[:, 0],
                        self.temp[sel] + self.config.noise_temp * noise[:, 1],
                        setpoint, self.tc[sel], self.valve[sel], ti, caf], axis=1)
        obs = np.clip((raw - OBS_CENTER) / OBS_SCALE, -OBS_LIMIT, OBS_LIMIT)
        return obs.astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 dict[str, np.ndarray]]:
        if not self._ready:
            raise RuntimeError(f"{ENV_ID}: call reset() before step()")
        c, dt = self.config, self.dt
        command = 0.5 * (check_actions(actions, self.num, self.single_action_space,
                                       ENV_ID)[:, 0] + 1.0)
        move = c.valve_rate_per_min * dt
        start = self.valve
        self.valve = start + np.clip(command - start, -move, move)
        span = c.coolant_max_K - c.coolant_min_K
        self.tc, tc_mean = coolant_response(
            self.tc, c.coolant_max_K - start * span, c.coolant_max_K - self.valve * span,
            np.abs(self.valve - start) / c.valve_rate_per_min, dt, c.coolant_lag_minutes)
        setpoint, ti, caf = self._schedule(slice(None), self.t)
        params = cstr.Params(UA=self.ua, k0=self.k0, Ti=ti, Caf=caf)
        self.ca, self.temp = cstr.advance(self.ca, self.temp, tc_mean, dt, params)
        self.t = self.t + 1
        self.ca_history[np.arange(self.num), self.t] = self.ca
        error = np.abs(self.ca - setpoint)
        travel = np.abs(self.valve - start)
        cost_temperature = np.maximum(self.temp - c.safe_temp_K, 0.0) * dt
        cost_runaway = np.where(self.temp > c.runaway_temp_K, dt, 0.0)
        info = {"cost": cost_temperature + cost_runaway, "cost_temperature": cost_temperature,
                "cost_runaway": cost_runaway, "tracking_error": error, "valve_travel": travel,
                "temperature": self.temp.copy(), "ca": self.ca.copy(),
                "ca_setpoint": setpoint, "valve_opening": self.valve.copy()}
        truncated = self.t >= self.n_steps
        reward = -error / c.tracking_scale - c.move_penalty * travel
        return self.observe(), reward, np.zeros(self.num, dtype=bool), truncated, info


def coolant_response(tc: np.ndarray, target_start: np.ndarray, target_end: np.ndarray,
                     ramp_minutes: np.ndarray, dt: float, tau: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(coolant temperature at the end of the step, its mean over the step), K, for a coolant
    at ``tc`` following its target through a first-order lag ``tau`` (min; 0 = none) while the
    target ramps linearly from ``target_start`` to ``target_end`` over ``ramp_minutes`` (the
    valve moving at its rate limit) and then holds for the rest of the step ``dt``. Exact: the
    lag's solution for a ramp, then for a constant."""
    t1 = np.minimum(ramp_minutes, dt)
    slope = np.where(t1 > 0, (target_end - target_start) / np.maximum(t1, 1e-300), 0.0)
    if tau <= 0:  # no lag: the coolant is its target
        area = 0.5 * (target_start + target_end) * t1 + target_end * (dt - t1)
        return np.asarray(target_end, float), area / dt
    # ramp a + b t: tc(t) = a + b (t - tau) + (tc0 - a + b tau) e^(-t/tau)
    offset = tc - target_start + slope * tau
    e1 = np.exp(-t1 / tau)
    tc1 = target_start + slope * (t1 - tau) + offset * e1
    area1 = target_start * t1 + slope * (0.5 * t1 * t1 - tau * t1) + offset * tau * (1.0 - e1)
    e2 = np.exp(-(dt - t1) / tau)
    tc_end = target_end + (tc1 - target_end) * e2
    area2 = target_end * (dt - t1) + (tc1 - target_end) * tau * (1.0 - e2)
    return tc_end, (area1 + area2) / dt


def make_config(kwargs: dict) -> CSTRConfig:
    """``CSTRConfig`` from scenario kwargs (TOML integers accepted for floats)."""
    return build_config(CSTRConfig, kwargs, ENV_ID)


class CSTREnv(PlantEnv):
    """SafeTRPO/CSTR-v0, one reactor (see the module docstring for the full specification)."""

    def __init__(self, render_mode: str | None = None, **kwargs) -> None:
        self.config = make_config(kwargs)
        super().__init__(CSTRPlant(1, self.config))


class CSTRVectorEnv(PlantVectorEnv):
    """SafeTRPO/CSTR-v0, ``num_envs`` reactors stepped together (SAME_STEP autoreset).
    Copy i behaves exactly like ``CSTREnv`` reset with seed + i."""

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs) -> None:
        self.config = make_config(kwargs)
        super().__init__(CSTRPlant(int(num_envs), self.config))




ENV_INFO = EnvInfo(
    env_id=ENV_ID,
    summary="Exothermic CSTR: a coolant valve holds Ca on setpoint; hot setpoints sit near "
            "thermal runaway.",
    costs={"temperature": "K min above safe_temp_K per step; the episode sum is the "
                          "degree-minutes above the safe band (K min)",
           "runaway": "dt_minutes when T > runaway_temp_K; the episode sum is the minutes "
                      "spent in runaway (min)"},
    kwargs=CSTRConfig,
    episode="episode_minutes / dt_minutes steps (default 60 / 0.5 = 120), truncation only",
    example='[env]\nid = "SafeTRPO/CSTR-v0"\nkwargs = { dt_minutes = 0.5, episode_minutes = 60.0 }'
            '\n\n[[constraints]]\nname = "runaway"   # minutes in runaway per episode\n'
            "limit = 0.25")
