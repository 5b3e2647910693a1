"""Test-only environment: Pendulum whose observation turns NaN after a number of steps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv


class NanAfterSteps(gym.Wrapper):
    def __init__(self, nan_after: int = 300) -> None:
        super().__init__(gym.wrappers.TimeLimit(PendulumEnv(), 200))
        self.nan_after = nan_after
        self.steps = 0

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps > self.nan_after:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info
