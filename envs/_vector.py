"""One batched plant, two Gymnasium faces: a single env (the batch of one) and a native
VectorEnv with SAME_STEP autoreset.

A *plant* is any object with the small interface below that advances N copies in one numpy
call. ``PlantEnv`` and ``PlantVectorEnv`` add only Gymnasium bookkeeping (seeding, autoreset,
``final_obs`` / ``final_info``), so the dynamics, reward and costs exist once, in the plant.

Seeding matches ``gymnasium.vector.SyncVectorEnv`` over single envs: ``reset(seed=s)`` gives copy
i the generator a single env gets from ``reset(seed=s + i)``, and a plant draws each copy's
randomness from that copy's generator only, so copy i of the vector env follows the same
trajectory as a single env seeded s + i (tests/envs/test_process_envs.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from scipy.special import ndtr

from safe_trpo.errors import UserError


class Plant(Protocol):
    """N copies of a simulated plant, stepped together."""

    num: int
    single_observation_space: spaces.Box
    single_action_space: spaces.Box

    def reset_rows(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        """Start a new episode in copies ``rows``, drawing copy rows[j]'s randomness from
        ``rngs[j]`` only."""

    def observe(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Observations (len(rows), obs_dim) float32 of copies ``rows`` (all when None)."""

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 dict[str, np.ndarray]]:
        """Advance all copies: (obs, reward, terminated, truncated, info of (N,) arrays)."""


def per_copy_seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    """SyncVectorEnv's rule: None -> unseeded, int s -> s, s+1, ..., a list -> itself."""
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"reset: {len(seeds)} seeds given for {n} copies")
    return seeds


def same_step_info(info: dict[str, np.ndarray], done: np.ndarray, final_obs: np.ndarray
                   ) -> dict[str, Any]:
    """The info dict of a SAME_STEP vector step, laid out as ``SyncVectorEnv`` lays it out.

    ``info`` holds one (N,) array per key for this step, ``done`` marks copies whose episode
    ended, ``final_obs`` (N, obs_dim) is their last observation (before reset). Unlike
    SyncVectorEnv (which puts the *reset* info of a finished copy at the top level), every
    top-level key keeps this step's value for all copies, so a finished copy's costs are in both
    ``info`` and ``info["final_info"]``.
    """
    n = done.shape[0]
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key] = value
        out[f"_{key}"] = np.ones(n, dtype=bool)
    if done.any():
        rows = np.flatnonzero(done)
        last = np.full(n, None, dtype=object)
        for i in rows:
            last[i] = final_obs[i].copy()  # a copy: the row is overwritten by the reset
        final_info: dict[str, np.ndarray] = {}
        for key, value in info.items():
            final_info[key] = np.where(done, value, np.zeros_like(value))
            final_info[f"_{key}"] = done.copy()
        out["final_obs"], out["_final_obs"] = last, done.copy()
        out["final_info"], out["_final_info"] = final_info, done.copy()
    return out


def draw_episodes(rngs: Sequence[np.random.Generator], n_uniform: int, n_steps: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Each copy's episode randomness from its own generator in one call: ``n_uniform``
    uniforms in (0, 1) and (n_steps, 2) standard normals (sensor noise) per copy.

    One generator call per copy because with thousands of copies the calls, not the numbers,
    are the cost; the uniforms are normals mapped through the normal CDF (exactly uniform).
    """
    draws = np.empty((len(rngs), n_uniform + 2 * n_steps))
    for j, rng in enumerate(rngs):
        draws[j] = rng.standard_normal(draws.shape[1])
    return ndtr(draws[:, :n_uniform]), draws[:, n_uniform:].reshape(len(rngs), n_steps, 2)


def check_actions(actions: Any, n: int, space: spaces.Box, where: str) -> np.ndarray:
    """Actions as float64 (n, act_dim), clipped to ``space``; NaN is an error, never a zero."""
    a = np.asarray(actions, dtype=np.float64).reshape(n, -1)
    if a.shape[1] != space.shape[0]:
        raise ValueError(f"{where}: expected actions of shape ({n}, {space.shape[0]}), "
                         f"got {np.shape(actions)}")
    if np.isnan(a).any():
        raise ValueError(f"{where}: action contains NaN")
    return np.clip(a, space.low, space.high)


class PlantEnv(gym.Env):
    """A single Gymnasium env that is the batch-of-one case of a plant."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, plant: Plant) -> None:
        if plant.num != 1:
            raise ValueError("PlantEnv wraps a plant of exactly one copy")
        self._plant = plant
        self.observation_space = plant.single_observation_space
        self.action_space = plant.single_action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._plant.reset_rows(np.array([0]), [self.np_random])
        return self._plant.observe()[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._plant.step(np.asarray(action)[None])
        return (obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]),
                {key: float(value[0]) for key, value in info.items()})


class PlantVectorEnv(VectorEnv):
    """N copies of a plant stepped by one call of its batched physics, SAME_STEP autoreset."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, plant: Plant) -> None:
        self._plant = plant
        self.num_envs = plant.num
        self.single_observation_space = plant.single_observation_space
        self.single_action_space = plant.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs: list[np.random.Generator] | None = None

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        seeds = per_copy_seeds(seed, n)
        mask = (options or {}).get("reset_mask")
        rows = np.arange(n) if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
        if self._rngs is None:
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        else:  # like single envs: an unseeded reset continues each copy's generator
            for i in rows:
                if seeds[i] is not None:
                    self._rngs[i] = seeding.np_random(seeds[i])[0]
        self._plant.reset_rows(rows, [self._rngs[i] for i in rows])
        return self._plant.observe(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                  dict[str, Any]]:
        if self._rngs is None:
            raise RuntimeError("call reset() before step()")
        obs, reward, terminated, truncated, info = self._plant.step(actions)
        done = terminated | truncated
        out = same_step_info(info, done, obs)
        if done.any():
            rows = np.flatnonzero(done)
            self._plant.reset_rows(rows, [self._rngs[i] for i in rows])
            obs[rows] = self._plant.observe(rows)
        return obs, reward, terminated, truncated, out


def build_config(cls: type, kwargs: dict[str, Any], env_id: str) -> Any:
    """``cls(**kwargs)`` for a frozen config dataclass, with bad kwargs as one-line UserErrors.

    Unknown keys and values the dataclass's ``__post_init__`` rejects (ValueError, TypeError)
    name the env id and the key; nothing is silently dropped or defaulted.
    """
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise UserError(f"{env_id}: unknown [env] kwargs {unknown}; expected some of "
                        f"{sorted(known)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{env_id}: [env] kwargs: {exc}") from None


def check_fields(config: Any, rules: dict[str, tuple[float, float]]) -> None:
    """Raise ValueError naming the first field of ``config`` that is not a finite number in
    its closed range ``rules[name] = (low, high)``."""
    for name, (low, high) in rules.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        if not (np.isfinite(value) and low <= value <= high):
            raise ValueError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
