"""Test-only environment whose episode costs are known in advance.

Each copy's k-th episode lasts ``episode_steps`` steps and costs ``pattern[k % len(pattern)]``,
charged whole on its last step (so the sum is exact in floating point), whatever the actions.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class KnownCostEnv(gym.Env):
    def __init__(self, pattern: tuple[float, ...] = (1.0, 12.0, 3.0, 2.0),
                 episode_steps: int = 5, time_limit: bool = False,
                 spike_every: int = 0) -> None:
        self.pattern = tuple(float(x) for x in pattern)
        self.episode_steps = episode_steps
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.time_limit = time_limit
        self.spike_every = spike_every  # > 0: every so many steps, a huge observation
        self.steps = 0
        self.episode = -1
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        spike = self.spike_every and self.steps % self.spike_every == self.spike_every - 1
        second = 40.0 * 4.0 ** (self.steps // self.spike_every) if spike else 0.5
        return np.array([self.t / self.episode_steps, second], dtype=np.float32)

    def step(self, action: np.ndarray):
        self.t += 1
        self.steps += 1
        last = self.t >= self.episode_steps
        cost = self.pattern[self.episode % len(self.pattern)] if last else 0.0
        # Rewarded for following the second observation: the policy must read it.
        reward = float(-np.square(action - np.tanh(self._obs()[1] / 40.0)).sum())
        terminated = last and not self.time_limit
        truncated = last and self.time_limit
        return self._obs(), reward, terminated, truncated, {"cost": cost}
