"""Test-only environment whose constructor fails after its module imported fine (as a real
env does when its licence server, simulator binary or data is not there)."""

from __future__ import annotations

import gymnasium as gym


class BrokenEnv(gym.Env):
    def __init__(self, divisor: int = 0) -> None:
        self.scale = 1 / divisor  # ZeroDivisionError: neither TypeError nor ValueError
