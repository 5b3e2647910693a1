"""Gymnasium's Pendulum-v1 as a native vector env: N pendulums stepped in one numpy call.

Written for the speed comparison in benchmarks/bench_trpo_vs_sb3.py (its second, clearly
labelled line): with Gymnasium's SyncVectorEnv, stepping 8 Pendulum-v1 copies one by one in
Python is about a third of a safe-trpo update; here it is a few array operations. Everything
else is Pendulum-v1's: the dynamics and reward, arithmetic and dtypes included (the torque
term stays float32 as in the single env), the reset distribution, the 200-step time limit
(a truncation) and the seeding: ``reset(seed=s)`` gives copy i the generator that
``gym.make("Pendulum-v1").reset(seed=s + i)`` gets, so copy i follows that env's trajectory
(tests/envs/test_pendulum_vec.py checks it step by step, through autoresets).

    make_vector_env with [env] id = "envs.pendulum_vec:PendulumVectorEnv"
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces

from envs._vector import PlantVectorEnv

MAX_SPEED = 8.0  # rad/s, |theta_dot| is clipped to it
MAX_TORQUE = 2.0  # N m, actions are clipped to +-this
DT = 0.05  # s per step
GRAVITY = 10.0  # m/s^2
MASS = 1.0  # kg
LENGTH = 1.0  # m
EPISODE_STEPS = 200  # Pendulum-v1's registered time limit
RESET_HIGH = np.array([np.pi, 1.0])  # initial (theta, theta_dot) ~ U(-high, high)


def angle_normalize(x: np.ndarray) -> np.ndarray:
    return ((x + np.pi) % (2 * np.pi)) - np.pi


class PendulumPlant:
    """N Pendulum-v1 copies (the ``envs._vector.Plant`` interface)."""

    def __init__(self, num: int) -> None:
        if num < 1:
            raise ValueError(f"num_envs must be >= 1, got {num}")
        self.num = num
        high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
        self.single_observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = spaces.Box(-MAX_TORQUE, MAX_TORQUE, shape=(1,),
                                              dtype=np.float32)
        self.theta = np.zeros(num)
        self.theta_dot = np.zeros(num)
        self.steps = np.zeros(num, dtype=np.int64)

    def reset_rows(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        for i, rng in zip(rows, rngs, strict=True):
            self.theta[i], self.theta_dot[i] = rng.uniform(low=-RESET_HIGH, high=RESET_HIGH)
        self.steps[rows] = 0

    def observe(self, rows: np.ndarray | None = None) -> np.ndarray:
        theta = self.theta if rows is None else self.theta[rows]
        theta_dot = self.theta_dot if rows is None else self.theta_dot[rows]
        return np.stack([np.cos(theta), np.sin(theta), theta_dot], axis=-1).astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 dict[str, np.ndarray]]:
        # Pendulum-v1's expressions, operation for operation: with float32 actions, numpy keeps
        # the torque terms (u**2, 3 u) in float32, exactly as the single env does.
        u = np.asarray(actions).reshape(self.num)
        if np.isnan(u).any():  # np.clip would pass NaN on into the state: an error, not a zero
            raise ValueError("PendulumVectorEnv: action contains NaN")
        u = np.clip(u, -MAX_TORQUE, MAX_TORQUE)
        theta, theta_dot = self.theta, self.theta_dot
        costs = angle_normalize(theta) ** 2 + 0.1 * theta_dot**2 + 0.001 * (u**2)
        new_theta_dot = theta_dot + (3 * GRAVITY / (2 * LENGTH) * np.sin(theta)
                                     + 3.0 / (MASS * LENGTH**2) * u) * DT
        new_theta_dot = np.clip(new_theta_dot, -MAX_SPEED, MAX_SPEED)
        self.theta = theta + new_theta_dot * DT
        self.theta_dot = new_theta_dot
        self.steps += 1
        truncated = self.steps >= EPISODE_STEPS
        return (self.observe(), -costs, np.zeros(self.num, dtype=bool), truncated, {})


class PendulumVectorEnv(PlantVectorEnv):
    """``num_envs`` Pendulum-v1 copies, SAME_STEP autoreset (see the module docstring)."""

    def __init__(self, num_envs: int = 8) -> None:
        super().__init__(PendulumPlant(num_envs))
