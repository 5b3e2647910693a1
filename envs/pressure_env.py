"""SafeTRPO/PressureVessel-v0: hold a gas vessel on its pressure setpoint through inflow surges
without venting or exceeding the vessel's maximum allowable working pressure (MAWP).

Plant: ``envs.pressure`` (bar absolute, kg/min, minutes): a 20 m3 nitrogen vessel
(isothermal by default, ``polytropic_exponent`` 1.4 for an adiabatic one), an
equal-percentage outlet control valve (IEC 60534 gas flow, choked above about 5 bar a), with a
lagged, rate-limited actuator, and a spring-loaded relief valve set at ``relief_set_bar`` that
pops open at set, reaches full lift at 10 % overpressure (of the set gauge pressure) and
reseats 7 % of set gauge below set. Setpoints go up to ``setpoint_max``, which must keep the
``operating_margin`` below set (API 520/521 practice for spring-loaded valves: operate at most
90 % of set gauge, else the valve simmers and leaks; 8.65 bar a for a 9.5 bar a set). A surge
the valve is too slow to pass still lifts the relief valve, and a large one pushes the pressure
past the MAWP.

Time: one step is ``dt_minutes`` (default 0.25 min = 15 s); an episode is ``episode_minutes``
(default 30 min = 120 steps) and ends by truncation only.

Action: one value a in [-1, 1], the outlet valve command; the commanded opening is (a + 1)/2.

Observation (float32): ``(x - OBS_CENTER) / OBS_SCALE`` of ``OBS_NAMES``, clipped to +-50:
measured pressure (noisy), pressure setpoint, valve opening, measured inflow (noisy).

Reward per step: ``-|P - P_setpoint| / tracking_scale - move_penalty * |valve travel|`` (true
pressure after the step; travel in fractions of full stroke, monotone within a step).
``info["tracking_error"]`` is |P - P_setpoint| in bar, ``info["valve_travel"]`` the travel.

Costs per step, each >= 0, ``info["cost"]`` their sum:
- ``cost_pressure``: bar-minutes above the MAWP, max(P - mawp_bar, 0) * dt (end-of-step P).
- ``cost_relief``: kg of gas vented by the relief valve during the step (trapezoidal estimate
  from the vent flow at the start and end of the step). An episode's sum is the mass vented.

Randomness per episode, all from the env's seeded generator: setpoint levels (uniform in
[setpoint_min, setpoint_max], new every ``setpoint_period_minutes``), base inflow (uniform in
[inflow_min, inflow_max]), ``surges_per_episode`` inflow surges (uniform start, duration uniform
in [0.5, surge_max_minutes] min, size uniform up to ``surge_max_fraction`` of the base), valve
Kv and vessel volume factors (uniform in 1 +- their uncertainty), Gaussian sensor noise. The
episode starts in equilibrium at the first setpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from envs import pressure
from envs._vector import (
    PlantEnv,
    PlantVectorEnv,
    build_config,
    check_actions,
    check_fields,
    draw_episodes,
)
from envs.info import EnvInfo

ENV_ID = "SafeTRPO/PressureVessel-v0"
OBS_NAMES = ("pressure", "pressure_setpoint", "valve_opening", "inflow")
OBS_CENTER = np.array([7.5, 7.5, 0.5, 60.0])
OBS_SCALE = np.array([1.5, 1.5, 0.5, 20.0])
OBS_LIMIT = 50.0  # observations are clipped to +-this (far outside any physical state)
COST_NAMES = ("pressure", "relief")


@dataclass(frozen=True)
class PressureConfig:
    """Constructor kwargs of SafeTRPO/PressureVessel-v0 (scenario ``[env] kwargs``)."""

    dt_minutes: float = 0.25
    """Control interval, min; 0.05-1."""
    episode_minutes: float = 30.0
    """Episode length, min; steps = episode_minutes / dt_minutes (rounded)."""
    setpoint_min: float = 7.0
    """Lowest pressure setpoint, bar a."""
    setpoint_max: float = 8.6
    """Highest pressure setpoint, bar a; at most ``operating_margin`` below the relief set
    pressure (8.65 bar a with the defaults)."""
    operating_margin: float = 0.10
    """Least margin between the highest setpoint and the relief set pressure, as a fraction of
    the set gauge pressure (API 520/521: 10 % for spring-loaded valves); 0-0.5."""
    setpoint_period_minutes: float = 10.0
    """Minutes between setpoint changes."""
    inflow_min: float = 40.0
    """Lowest base inflow, kg/min."""
    inflow_max: float = 70.0
    """Highest base inflow, kg/min."""
    surges_per_episode: int = 3
    """Inflow surges per episode (they may overlap); 0 = none."""
    surge_max_fraction: float = 0.8
    """Largest surge, as a fraction of the base inflow."""
    surge_max_minutes: float = 3.0
    """Longest surge, min (shortest 0.5 min)."""
    noise_pressure: float = 0.02
    """Std of the pressure measurement noise, bar."""
    noise_inflow: float = 1.0
    """Std of the inflow measurement noise, kg/min."""
    kv_uncertainty: float = 0.1
    """Half-width of the per-episode valve Kv factor (wear, sizing); 0-0.5."""
    volume_uncertainty: float = 0.05
    """Half-width of the per-episode effective-volume factor; 0-0.5."""
    mawp_bar: float = 10.0
    """Maximum allowable working pressure, bar a; cost_pressure counts bar min above it."""
    relief_set_bar: float = 9.5
    """Relief valve set pressure, bar a (ASME: at or below the MAWP)."""
    valve_rate_per_min: float = 1.0
    """Outlet valve rate limit, fraction of full stroke per minute."""
    valve_lag_minutes: float = 0.1
    """Outlet valve actuator time constant, min (> 0)."""
    tracking_scale: float = 0.25
    """Pressure error (bar) that costs one unit of reward per step."""
    move_penalty: float = 0.0
    """Reward per full stroke of valve travel (wear); 0 = none (the shipped scenario uses 1)."""
    polytropic_exponent: float = 1.0
    """Gas path in the vessel: 1 isothermal (default), 1.4 adiabatic nitrogen; 1-1.67."""

    def __post_init__(self) -> None:
        inf = float("inf")
        check_fields(self, {
            "dt_minutes": (1e-3, 10.0), "episode_minutes": (1e-3, 1e5),
            "setpoint_min": (1.6, 50.0), "setpoint_max": (1.6, 50.0),
            "setpoint_period_minutes": (1e-3, inf), "inflow_min": (0.0, 1e4),
            "inflow_max": (0.0, 1e4), "surges_per_episode": (0, 100),
            "surge_max_fraction": (0.0, 10.0), "surge_max_minutes": (0.5, 1e4),
            "noise_pressure": (0.0, 10.0), "noise_inflow": (0.0, 1e3),
            "kv_uncertainty": (0.0, 0.5), "volume_uncertainty": (0.0, 0.5),
            "mawp_bar": (1.6, 100.0), "relief_set_bar": (1.6, 100.0),
            "valve_rate_per_min": (1e-3, 1e3), "valve_lag_minutes": (1e-4, 100.0),
            "tracking_scale": (1e-6, 100.0), "operating_margin": (0.0, 0.5),
            "move_penalty": (0.0, 1e3), "polytropic_exponent": (1.0, 1.67)})
        if not isinstance(self.surges_per_episode, int):
            raise ValueError(f"surges_per_episode: expected an integer, got "
                             f"{self.surges_per_episode!r}")
        if self.setpoint_min > self.setpoint_max or self.inflow_min > self.inflow_max:
            raise ValueError("setpoint_min/inflow_min must be <= setpoint_max/inflow_max")
        if self.relief_set_bar > self.mawp_bar:
            raise ValueError(f"relief_set_bar ({self.relief_set_bar}) must be <= mawp_bar "
                             f"({self.mawp_bar}): a relief valve is set at or below the MAWP")
        highest = pressure.ATMOSPHERE + (1.0 - self.operating_margin) * (
            self.relief_set_bar - pressure.ATMOSPHERE)
        if self.setpoint_max > highest + 1e-9:
            raise ValueError(f"setpoint_max ({self.setpoint_max}) must keep the operating_margin "
                             f"({self.operating_margin:g} of set gauge) below relief_set_bar: at "
                             f"most {highest:.3f} bar a")
        if round(self.episode_minutes / self.dt_minutes) < 1:
            raise ValueError("episode_minutes must be at least one dt_minutes")


class PressurePlant:
    """N vessels with their valves, setpoints, inflows and sensors: the one implementation
    behind ``PressureVesselEnv`` (N = 1) and ``PressureVesselVectorEnv``."""

    def __init__(self, num: int, config: PressureConfig) -> None:
        self.num, self.config = num, config
        c = config
        self.dt = c.dt_minutes
        self.n_steps = int(round(c.episode_minutes / c.dt_minutes))
        self.n_segments = int(np.ceil(self.n_steps * self.dt / c.setpoint_period_minutes - 1e-9))
        self.single_observation_space = spaces.Box(-OBS_LIMIT, OBS_LIMIT, (len(OBS_NAMES),),
                                                   np.float32)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.nominal = pressure.Params(valve_rate=c.valve_rate_per_min,
                                       valve_time_constant=c.valve_lag_minutes,
                                       relief_set=c.relief_set_bar,
                                       polytropic_exponent=c.polytropic_exponent)
        z = np.zeros(num)
        self.p, self.x, self.kv, self.volume, self.base = (z.copy() for _ in range(5))
        self.popped, self.p_ref = z.copy(), z.copy()  # relief mode; the gas path's start
        self.t = np.zeros(num, dtype=np.int64)
        k = c.surges_per_episode
        self.surge_start, self.surge_end, self.surge_size = (np.zeros((num, k)) for _ in range(3))
        self.levels = np.zeros((num, self.n_segments))
        self.noise = np.zeros((num, self.n_steps + 1, 2))
        self._ready = False

    def reset_rows(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        c, k = self.config, self.config.surges_per_episode
        u, z = draw_episodes(rngs, 3 + 3 * k + self.n_segments, self.n_steps + 1)
        minutes = self.n_steps * self.dt
        self.kv[rows] = self.nominal.valve_kv * (1.0 + c.kv_uncertainty * (2.0 * u[:, 0] - 1.0))
        self.volume[rows] = self.nominal.volume * (
            1.0 + c.volume_uncertainty * (2.0 * u[:, 1] - 1.0))
        self.base[rows] = c.inflow_min + (c.inflow_max - c.inflow_min) * u[:, 2]
        start = u[:, 3:3 + k] * minutes
        self.surge_start[rows] = start
        self.surge_end[rows] = start + 0.5 + (c.surge_max_minutes - 0.5) * u[:, 3 + k:3 + 2 * k]
        self.surge_size[rows] = (c.surge_max_fraction * u[:, 3 + 2 * k:3 + 3 * k]
                                 * self.base[rows, None])
        self.levels[rows] = c.setpoint_min + (c.setpoint_max - c.setpoint_min) * u[:, 3 + 3 * k:]
        self.noise[rows] = z
        self.t[rows] = 0
        self.p[rows] = self.p_ref[rows] = self.levels[rows, 0]
        self.popped[rows] = 0.0
        self.x[rows] = pressure.balancing_opening(self.p[rows], self._inflow(rows, self.t[rows]),
                                                  self._params(rows))
        self._ready = True

    def _params(self, rows: np.ndarray | slice) -> pressure.Params:
        return pressure.Params(valve_kv=self.kv[rows], volume=self.volume[rows],
                               valve_rate=self.nominal.valve_rate,
                               valve_time_constant=self.nominal.valve_time_constant,
                               relief_set=self.nominal.relief_set,
                               polytropic_exponent=self.nominal.polytropic_exponent,
                               reference_pressure=self.p_ref[rows])

    def _inflow(self, rows: np.ndarray | slice, t: np.ndarray) -> np.ndarray:
        """True inflow (kg/min) in force from step t to t + 1."""
        minutes = (t * self.dt)[:, None]
        active = (minutes >= self.surge_start[rows]) & (minutes < self.surge_end[rows])
        return self.base[rows] + (self.surge_size[rows] * active).sum(axis=1)

    def _setpoint(self, rows: np.ndarray | slice, t: np.ndarray) -> np.ndarray:
        segment = np.minimum(((t * self.dt + 1e-9) // self.config.setpoint_period_minutes)
                             .astype(np.int64), self.n_segments - 1)
        return self.levels[rows][np.arange(len(t)), segment]

    def observe(self, rows: np.ndarray | None = None) -> np.ndarray:
        sel = slice(None) if rows is None else rows
        t = self.t[sel]
        noise = self.noise[sel][np.arange(len(t)), t]
        raw = np.stack([self.p[sel] + self.config.noise_pressure * noise[:, 0],
                        self._setpoint(sel, t), self.x[sel],
                        self._inflow(sel, t) + self.config.noise_inflow * noise[:, 1]], axis=1)
        obs = np.clip((raw - OBS_CENTER) / OBS_SCALE, -OBS_LIMIT, OBS_LIMIT)
        return obs.astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 dict[str, np.ndarray]]:
        if not self._ready:
            raise RuntimeError(f"{ENV_ID}: call reset() before step()")
        c, dt = self.config, self.dt
        command = 0.5 * (check_actions(actions, self.num, self.single_action_space,
                                       ENV_ID)[:, 0] + 1.0)
        setpoint, inflow = self._setpoint(slice(None), self.t), self._inflow(slice(None), self.t)
        params = self._params(slice(None))
        vent_start = pressure.relief_flow(self.p, params, self.popped)
        start = self.x
        self.p, self.x, self.popped = pressure.advance(self.p, self.x, command, inflow, dt,
                                                       params, self.popped)
        self.t = self.t + 1
        error = np.abs(self.p - setpoint)
        travel = np.abs(self.x - start)  # the stem moves monotonically toward the command
        cost_pressure = np.maximum(self.p - c.mawp_bar, 0.0) * dt
        cost_relief = 0.5 * (vent_start + pressure.relief_flow(self.p, params, self.popped)) * dt
        info = {"cost": cost_pressure + cost_relief, "cost_pressure": cost_pressure,
                "cost_relief": cost_relief, "tracking_error": error, "valve_travel": travel,
                "pressure": self.p.copy(), "pressure_setpoint": setpoint,
                "valve_opening": self.x.copy(), "relief_open": self.popped.copy()}
        truncated = self.t >= self.n_steps
        reward = -error / c.tracking_scale - c.move_penalty * travel
        return self.observe(), reward, np.zeros(self.num, dtype=bool), truncated, info


def make_config(kwargs: dict) -> PressureConfig:
    """``PressureConfig`` from scenario kwargs, bad keys or values as one-line UserErrors."""
    return build_config(PressureConfig, kwargs, ENV_ID)


class PressureVesselEnv(PlantEnv):
    """SafeTRPO/PressureVessel-v0, one vessel (the module docstring specifies it)."""

    def __init__(self, render_mode: str | None = None, **kwargs) -> None:
        self.config = make_config(kwargs)
        super().__init__(PressurePlant(1, self.config))


class PressureVesselVectorEnv(PlantVectorEnv):
    """SafeTRPO/PressureVessel-v0, ``num_envs`` vessels stepped together (SAME_STEP autoreset).
    Copy i behaves exactly like ``PressureVesselEnv`` reset with seed + i."""

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs) -> None:
        self.config = make_config(kwargs)
        super().__init__(PressurePlant(int(num_envs), self.config))


ENV_INFO = EnvInfo(
    env_id=ENV_ID,
    summary="Gas vessel: an outlet control valve holds the pressure setpoint through inflow "
            "surges, with a relief valve and a MAWP.",
    costs={"pressure": "bar min above mawp_bar per step; the episode sum is the bar-minutes "
                       "above the MAWP (bar min)",
           "relief": "kg vented by the relief valve per step; the episode sum is the mass "
                     "vented (kg)"},
    kwargs=PressureConfig,
    episode="episode_minutes / dt_minutes steps (default 30 / 0.25 = 120), truncation only",
    example='[env]\nid = "SafeTRPO/PressureVessel-v0"\n\n[[constraints]]\nname = "relief"   '
            "# kg vented per episode\nlimit = 0.25")
