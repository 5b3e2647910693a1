"""SafeTRPO/SpeedLimit-v0: a point mass that is paid for speed and charged for speeding.

The smallest environment where the unconstrained optimum breaks a limit, for tests and demos
(the Safety-Gymnasium "velocity" tasks in one dimension). Action a in [-1, 1] is a force:
v' = 0.8 v + 0.2 a, so |v| <= 1 and v settles at a under a constant force. Reward: v' (move
right). Per-step cost ``cost_speed`` = 1 when v' > ``speed_limit``, else 0; ``info["cost"]``
equals it. Episodes last ``episode_steps`` steps (truncation), so an episode's cost is the number
of speeding steps: the unconstrained optimum (a = 1) speeds on nearly every step, a constrained
policy holds v just under the limit. Observation: velocity and the fraction of time left.

One batched plant (``SpeedLimitPlant``) serves both faces, through ``envs._vector``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs._vector import PlantEnv, PlantVectorEnv, build_config, check_actions, check_fields
from envs.info import EnvInfo

ENV_ID = "SafeTRPO/SpeedLimit-v0"


@dataclass(frozen=True)
class SpeedLimitConfig:
    """Constructor kwargs of SafeTRPO/SpeedLimit-v0 (scenario ``[env] kwargs``)."""

    episode_steps: int = 100
    """Steps per episode (the time limit), an integer >= 1; 100 in the shipped scenario."""
    speed_limit: float = 0.5
    """Velocity above which a step costs 1; in [-1, 1] (|v| <= 1), 0.5 in the scenario."""
    cost_per_step: float = 1.0
    """What one speeding step costs: the cost's unit (a limit is then in the same unit). 1.0 in
    the scenario; other values express the same task in other units (tests unit invariance)."""

    def __post_init__(self) -> None:
        check_fields(self, {"episode_steps": (1, 10_000_000), "speed_limit": (-1.0, 1.0),
                            "cost_per_step": (1e-300, 1e300)})
        # An integer: the observation's time left is 1 - t / episode_steps, on a step grid.
        if not isinstance(self.episode_steps, (int, np.integer)):
            raise ValueError(f"episode_steps: expected an integer, got {self.episode_steps!r}")


def make_config(kwargs: dict[str, Any]) -> SpeedLimitConfig:
    """``SpeedLimitConfig`` from scenario kwargs, bad keys or values as one-line UserErrors."""
    return build_config(SpeedLimitConfig, kwargs, ENV_ID)


class SpeedLimitPlant:
    """N point masses; see the module docstring."""

    def __init__(self, num: int, config: SpeedLimitConfig) -> None:
        self.num = num
        self.episode_steps = int(config.episode_steps)
        self.speed_limit = float(config.speed_limit)
        self.cost_per_step = float(config.cost_per_step)
        self.single_observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.v = np.zeros(num)
        self.t = np.zeros(num, dtype=np.int64)

    def reset_rows(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        self.v[rows] = [rng.uniform(-0.1, 0.1) for rng in rngs]
        self.t[rows] = 0

    def observe(self, rows: np.ndarray | None = None) -> np.ndarray:
        rows = slice(None) if rows is None else rows
        time_left = 1.0 - self.t[rows] / self.episode_steps
        return np.stack([self.v[rows], time_left], axis=1).astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 dict[str, np.ndarray]]:
        a = check_actions(actions, self.num, self.single_action_space, ENV_ID)[:, 0]
        self.v = 0.8 * self.v + 0.2 * a
        self.t = self.t + 1
        cost = self.cost_per_step * (self.v > self.speed_limit)
        info: dict[str, Any] = {"cost": cost, "cost_speed": cost.copy()}
        terminated = np.zeros(self.num, dtype=bool)
        return self.observe(), self.v.copy(), terminated, self.t >= self.episode_steps, info


class SpeedLimitEnv(PlantEnv):
    """One point mass; kwargs: see :class:`SpeedLimitConfig`."""

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.config = make_config(kwargs)
        super().__init__(SpeedLimitPlant(1, self.config))


class SpeedLimitVectorEnv(PlantVectorEnv):
    """``num_envs`` point masses in one numpy call (SAME_STEP autoreset); copy i behaves like
    ``SpeedLimitEnv`` reset with seed + i. kwargs: see :class:`SpeedLimitConfig`."""

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        self.config = make_config(kwargs)
        super().__init__(SpeedLimitPlant(int(num_envs), self.config))


ENV_INFO = EnvInfo(
    env_id=ENV_ID,
    summary="Point mass paid for speed and charged for speeding (the smallest env where the "
            "unconstrained optimum breaks a limit).",
    costs={"speed": "1 per step with velocity above speed_limit; the episode sum is the "
                    "number of speeding steps (steps)"},
    kwargs=SpeedLimitConfig,
    episode="episode_steps steps (default 100), truncation only",
    example='[env]\nid = "SafeTRPO/SpeedLimit-v0"\nkwargs = { episode_steps = 100, speed_limit '
            '= 0.5 }\n\n[[constraints]]\nname = "speed"   # speeding steps per episode\n'
            "limit = 10.0")
