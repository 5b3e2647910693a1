"""Run a controller (a trained policy or a baseline) on a vector env and report what a process
engineer asks: how well it tracked, what it cost, how often it broke a limit.

A controller is anything with ``act(obs (N, obs_dim)) -> actions (N, act_dim)`` and
``reset(mask=None)`` (the project's Controller protocol). The env is any Gymnasium vector env
with SAME_STEP autoreset whose info carries ``tracking_error`` and ``cost_<name>`` per step (both
process envs here do); a finished copy's last info is read from ``info["final_info"]``.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np


class Controller(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self, mask: np.ndarray | None = None) -> None: ...


def _step_values(info: dict[str, Any], done: np.ndarray, key: str) -> np.ndarray:
    """This step's ``info[key]`` per copy, finished copies' values from ``final_info``."""
    values = np.full(done.shape, np.nan)
    for source, rows in ((info, ~done), (info.get("final_info", {}), done)):
        if rows.any():
            if key not in source:
                raise KeyError(f"the environment's info has no {key!r}")
            values[rows] = np.asarray(source[key], dtype=np.float64)[rows]
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the environment returned a non-finite info[{key!r}]")
    return values


def evaluate_controller(env: gym.vector.VectorEnv, controller: Controller, episodes: int,
                        seed: int, limits: dict[str, float] | None = None) -> dict[str, Any]:
    """Run exactly ``episodes`` whole episodes (each copy its share, one after another) from
    ``env.reset(seed=seed)`` and summarise them.

    ``limits`` maps cost names (``cost_<name>`` without the prefix) to episode budgets.
    Returns a dict: ``episodes``; ``return_mean``/``return_std`` (undiscounted);
    ``tracking_error_mean`` (mean of info["tracking_error"] over all steps, the env's units) and
    ``tracking_error_episode_max``; ``costs``: per name, ``ep_cost_mean``, ``ep_cost_max``,
    ``frac_steps_with_cost`` (steps where the cost was > 0) and, with a limit,
    ``limit`` and ``frac_over_limit`` (episodes whose sum exceeded it).
    """
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    n = env.num_envs
    quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
    finished = np.zeros(n, dtype=np.int64)
    obs, _ = env.reset(seed=seed)
    controller.reset()
    ep_return, ep_error, ep_len = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
    cost_names: list[str] | None = None
    rows: list[dict[str, Any]] = []
    while np.any(finished < quota):
        obs, reward, terminated, truncated, info = env.step(controller.act(np.asarray(obs)))
        done = np.logical_or(terminated, truncated)
        if cost_names is None:
            keys = set(info) | set(info.get("final_info", {}))
            cost_names = sorted(k[5:] for k in keys if k.startswith("cost_"))
            ep_cost = np.zeros((n, len(cost_names)))
            ep_cost_steps = np.zeros((n, len(cost_names)), dtype=np.int64)
        costs = np.stack([_step_values(info, done, f"cost_{c}") for c in cost_names], axis=1)
        ep_return += reward
        ep_error += _step_values(info, done, "tracking_error")
        ep_cost += costs
        ep_cost_steps += costs > 0
        ep_len += 1
        for i in np.flatnonzero(done & (finished < quota)):
            rows.append({"return": ep_return[i], "error": ep_error[i], "steps": ep_len[i],
                         "costs": ep_cost[i].copy(), "cost_steps": ep_cost_steps[i].copy()})
            finished[i] += 1
        for array in (ep_return, ep_error, ep_len, ep_cost, ep_cost_steps):
            array[done] = 0
        if done.any():
            controller.reset(done)
    return _summarise(rows, cost_names or [], limits or {})


def _summarise(rows: list[dict[str, Any]], cost_names: list[str], limits: dict[str, float]
               ) -> dict[str, Any]:
    unknown = sorted(set(limits) - set(cost_names))
    if unknown:
        raise KeyError(f"limits name costs the env does not report: {unknown}")
    returns = np.array([r["return"] for r in rows])
    steps = np.array([r["steps"] for r in rows])
    errors = np.array([r["error"] for r in rows])
    out: dict[str, Any] = {
        "episodes": len(rows), "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "tracking_error_mean": float(errors.sum() / steps.sum()),
        "tracking_error_episode_max": float((errors / steps).max()), "costs": {}}
    for j, name in enumerate(cost_names):
        sums = np.array([r["costs"][j] for r in rows])
        with_cost = np.array([r["cost_steps"][j] for r in rows])
        entry = {"ep_cost_mean": float(sums.mean()), "ep_cost_max": float(sums.max()),
                 "frac_steps_with_cost": float(with_cost.sum() / steps.sum())}
        if name in limits:
            entry["limit"] = float(limits[name])
            entry["frac_over_limit"] = float((sums > limits[name]).mean())
        out["costs"][name] = entry
    return out
