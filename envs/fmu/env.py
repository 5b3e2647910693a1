"""``SafeTRPO/FMU-v0``: any FMI 2.0 or 3.0 co-simulation FMU as a constrained Gymnasium env.

One env step sets the action inputs, calls ``fmi2DoStep`` (``fmi3DoStep``) over
``step_size`` model seconds and reads the observations, the reward and the costs at the end of
the step. Costs land in ``info["cost_<name>"]`` (their sum in ``info["cost"]``), as for the
shipped plants; an episode is truncated (never terminated) after ``episode_steps`` steps.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.fmu.simulator import FMUSimulator
from envs.fmu.spec import FMUSpec, Variable, parse_spec
from safe_trpo.errors import UserError


class FMUEnv(gym.Env):
    """A constrained env around one FMU instance.

    Args:
        fmu: path of the ``.fmu`` file; give it as ``[env] data_files = { fmu = "plant.fmu" }``
            so its SHA-256 enters the audit record.
        step_size: model seconds per env step (the communication step of ``fmi2DoStep``).
        episode_steps: env steps per episode (then truncation).
        actions: list of ``{ name, low, high }``: FMU inputs (Real); the policy's [-1, 1] is
            mapped linearly onto [low, high].
        observations: list of output or state (local) names, or ``{ name, low, high }``. An
            observation with a range (given, else the FMU's declared min/max) is scaled to
            [-1, 1] at the ends of its range; without one it is passed in its own unit and the
            trainer's running normaliser (``[algo] normalize_obs``, measured) scales it.
        reward: ``{ output = NAME }`` (the value of NAME at the end of the step, maximised) or
            ``{ track = NAME, setpoint = X, scale = S }`` (reward ``-|NAME - X| / S``).
        costs: name -> ``{ output = NAME }`` (NAME itself is the per-step cost; it must be
            >= 0) or ``{ output = NAME, above = X }`` / ``below = X`` (how far NAME is beyond
            the bound at the end of the step, in NAME's unit; 0 inside it).
        start_values: NAME -> value set before initialisation of every episode.
        randomize: NAME -> [low, high]: a uniform draw per episode from the env's seeded
            generator, set before initialisation (after ``start_values``), in the order given.
        start_time: model time at which every episode starts (s).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, fmu: Any = None, step_size: Any = None, episode_steps: Any = None,
                 actions: Any = None, observations: Any = None, reward: Any = None,
                 costs: Any = None, start_values: Any = None, randomize: Any = None,
                 start_time: Any = 0.0) -> None:
        missing = [k for k, v in (("fmu", fmu), ("step_size", step_size),
                                  ("episode_steps", episode_steps), ("actions", actions),
                                  ("observations", observations), ("reward", reward))
                   if v is None]
        if missing:
            raise UserError(f"SafeTRPO/FMU-v0: [env.kwargs] {missing[0]} is required "
                            f"(the fmu comes from [env] data_files = {{ fmu = \"plant.fmu\" }})")
        self.fmu_spec: FMUSpec = parse_spec(fmu, step_size, episode_steps, actions,
                                            observations, reward, costs, start_values,
                                            randomize, start_time)
        spec = self.fmu_spec
        self.action_space = spaces.Box(-1.0, 1.0, (len(spec.actions),), np.float32)
        # Unbounded: a plant can leave its declared range, and clipping would hide it.
        self.observation_space = spaces.Box(-np.inf, np.inf, (len(spec.observations),),
                                            np.float32)
        self._act_low = np.array([v.low for v in spec.actions])
        self._act_high = np.array([v.high for v in spec.actions])
        self._sim: FMUSimulator | None = None  # instantiated at the first reset, in the worker
        self._steps = 0
        self._values: dict[str, float] = {}

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        spec = self.fmu_spec
        values: list[tuple[Variable, float]] = list(spec.start_values)
        for var, low, high in spec.randomize:  # one draw each, in order: seeded and stable
            values.append((var, float(self.np_random.uniform(low, high))))
        if self._sim is None:
            self._sim = FMUSimulator(spec, instance_name=f"safe_trpo_{id(self):x}")
        self._values = self._sim.reset(values)
        self._steps = 0
        return self._observe(), {"model_time": self._sim.time}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._sim is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != self.action_space.shape:
            raise ValueError(f"{self.fmu_spec.label}: expected an action of shape "
                             f"{self.action_space.shape}, got {np.shape(action)}")
        if np.isnan(a).any():
            raise ValueError(f"{self.fmu_spec.label}: action contains NaN at model time "
                             f"{self._sim.time:g} s")
        a = np.clip(a, -1.0, 1.0)
        inputs = self._act_low + (a + 1.0) * 0.5 * (self._act_high - self._act_low)
        self._values = self._sim.step(inputs.tolist())
        self._steps += 1
        info = self._costs()
        info["model_time"] = self._sim.time
        truncated = self._steps >= self.fmu_spec.episode_steps
        return self._observe(), self._reward(), False, truncated, info

    def _observe(self) -> np.ndarray:
        out = np.empty(len(self.fmu_spec.observations), dtype=np.float32)
        for i, var in enumerate(self.fmu_spec.observations):
            x = self._values[var.name]
            if var.low is not None and var.high is not None:
                x = 2.0 * (x - var.low) / (var.high - var.low) - 1.0
            out[i] = x
        return out

    def _reward(self) -> float:
        r = self.fmu_spec.reward
        x = self._values[r.var.name]
        return float(x) if r.kind == "output" else -abs(x - r.setpoint) / r.scale

    def _costs(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        total = 0.0
        for cost in self.fmu_spec.costs:
            x = self._values[cost.var.name]
            if cost.above is not None:
                c = max(0.0, x - cost.above)
            elif cost.below is not None:
                c = max(0.0, cost.below - x)
            else:
                if x < 0:
                    raise UserError(f"{self.fmu_spec.label}: costs.{cost.name}: output "
                                    f"{cost.var.name!r} is {x:g} < 0 at model time "
                                    f"{self._sim.time:g} s; a cost must be >= 0 (use "
                                    f"above/below for a bound)")
                c = x
            info[f"cost_{cost.name}"] = float(c)
            total += c
        info["cost"] = float(total)
        return info

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
