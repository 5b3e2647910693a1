"""SafeTRPO/SpeedLimit-v0: a point mass that is paid for speed and charged for speeding.

The smallest environment where the unconstrained optimum breaks a limit, for tests and demos
(the Safety-Gymnasium "velocity" tasks in one dimension). State: position x and velocity v.
Action a in [-1, 1] is a force: v' = 0.8 v + 0.2 a (so |v| <= 1), x' = x + v'.
Reward: v' (move right). Per-step cost ``cost_speed`` = 1 when v' > ``speed_limit``, else 0;
``info["cost"]`` equals it. Episodes last ``episode_steps`` steps (truncation), so an episode's
cost is the number of speeding steps; the unconstrained optimum (a = 1) speeds on nearly every
step, a constrained one holds v just under the limit.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


def _step(state: np.ndarray, action: np.ndarray, speed_limit: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched dynamics: state (N, 2), action (N,) -> next state, reward, cost."""
    v = 0.8 * state[:, 1] + 0.2 * np.clip(action, -1.0, 1.0)
    x = state[:, 0] + v
    return np.stack([x, v], axis=1), v, (v > speed_limit).astype(np.float64)


def _observe(state: np.ndarray, t: np.ndarray, episode_steps: int) -> np.ndarray:
    # Position is unbounded and irrelevant to the optimum; velocity and time left are the state.
    return np.stack([state[:, 1], 1.0 - t / episode_steps], axis=1).astype(np.float32)


class SpeedLimitVectorEnv(VectorEnv):
    """Native batched version: all copies advance in one numpy call (SAME_STEP autoreset)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, episode_steps: int = 100,
                 speed_limit: float = 0.5) -> None:
        self.num_envs = num_envs
        self.episode_steps = episode_steps
        self.speed_limit = speed_limit
        self.single_observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._state = np.zeros((num_envs, 2))
        self._t = np.zeros(num_envs, dtype=np.int64)
        self._rng = np.random.default_rng()

    def _initial(self, n: int) -> np.ndarray:
        return np.stack([np.zeros(n), self._rng.uniform(-0.1, 0.1, n)], axis=1)

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._state = self._initial(self.num_envs)
        self._t[:] = 0
        return _observe(self._state, self._t, self.episode_steps), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)[:, 0]
        self._state, reward, cost = _step(self._state, actions, self.speed_limit)
        self._t += 1
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = self._t >= self.episode_steps
        obs = _observe(self._state, self._t, self.episode_steps)
        info: dict[str, Any] = {"cost": cost, "cost_speed": cost}
        if truncated.any():
            mask = truncated
            info["final_obs"] = np.array([obs[i] if mask[i] else None
                                          for i in range(self.num_envs)], dtype=object)
            info["_final_obs"] = mask
            info["final_info"] = {"cost": cost.copy(), "cost_speed": cost.copy(),
                                  "_cost": mask, "_cost_speed": mask}
            info["_final_info"] = mask
            n = int(mask.sum())
            self._state[mask] = self._initial(n)
            self._t[mask] = 0
            obs = _observe(self._state, self._t, self.episode_steps)
        return obs, reward, terminated, truncated, info


class SpeedLimitEnv(gym.Env):
    """Single-copy view of ``SpeedLimitVectorEnv`` (the same batched functions, N = 1)."""

    metadata = {"render_modes": []}

    def __init__(self, episode_steps: int = 100, speed_limit: float = 0.5) -> None:
        self.episode_steps = episode_steps
        self.speed_limit = speed_limit
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._state = np.zeros((1, 2))
        self._t = np.zeros(1, dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = np.stack([np.zeros(1), self.np_random.uniform(-0.1, 0.1, 1)], axis=1)
        self._t[:] = 0
        return _observe(self._state, self._t, self.episode_steps)[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._state, reward, cost = _step(self._state, np.asarray(action).reshape(1, -1)[:, 0],
                                          self.speed_limit)
        self._t += 1
        obs = _observe(self._state, self._t, self.episode_steps)[0]
        info = {"cost": float(cost[0]), "cost_speed": float(cost[0])}
        return obs, float(reward[0]), False, bool(self._t[0] >= self.episode_steps), info
