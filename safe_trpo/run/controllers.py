"""Run a controller (a trained policy or a baseline) on a vector env and report what a process
engineer asks: how well it tracked, what it cost, how often it broke a limit.

A thin summary over :func:`safe_trpo.run.evaluate.run_episodes` (the one episode loop: per-copy
quotas of whole episodes, costs read from ``final_info`` for finished copies). A controller is
anything with ``act(obs (N, obs_dim)) -> actions (N, act_dim)`` and ``reset(mask=None)`` (the
project's :class:`~safe_trpo.run.evaluate.Controller` protocol). The env is any Gymnasium vector
env with SAME_STEP autoreset whose info carries ``tracking_error`` and ``cost_<name>`` per step
(both process envs here do).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from safe_trpo.run.evaluate import Controller, Episodes, run_episodes

__all__ = ["Controller", "evaluate_controller"]


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
    limits = limits or {}
    cost_names = _cost_names(env, controller, seed)
    unknown = sorted(set(limits) - set(cost_names))
    if unknown:
        raise KeyError(f"limits name costs the env does not report: {unknown}")
    result = run_episodes(env, controller, episodes, seed, [f"cost_{c}" for c in cost_names],
                          extra_keys=("tracking_error",))
    return _summarise(result, cost_names, limits)


def _cost_names(env: gym.vector.VectorEnv, controller: Controller, seed: int) -> list[str]:
    """The cost names (``cost_<name>``) the env reports, from one probe step.

    Harmless to the evaluation: ``run_episodes`` resets the env with the same seed and the
    controller before its first step, so the episodes are those of a fresh start.
    """
    obs, _ = env.reset(seed=seed)
    controller.reset()
    _, _, _, _, info = env.step(controller.act(np.asarray(obs)))
    keys = set(info) | set(info.get("final_info", {}))
    return sorted(k[5:] for k in keys if k.startswith("cost_"))


def _summarise(result: Episodes, cost_names: list[str], limits: dict[str, float]
               ) -> dict[str, Any]:
    steps, errors = result.lengths, result.extras["tracking_error"]
    out: dict[str, Any] = {
        "episodes": len(result.returns), "return_mean": float(result.returns.mean()),
        "return_std": float(result.returns.std()),
        "tracking_error_mean": float(errors.sum() / steps.sum()),
        "tracking_error_episode_max": float((errors / steps).max()), "costs": {}}
    for j, name in enumerate(cost_names):
        sums = result.costs[:, j]
        entry = {"ep_cost_mean": float(sums.mean()), "ep_cost_max": float(sums.max()),
                 "frac_steps_with_cost": float(result.cost_steps[:, j].sum() / steps.sum())}
        if name in limits:
            entry["limit"] = float(limits[name])
            entry["frac_over_limit"] = float((sums > limits[name]).mean())
        out["costs"][name] = entry
    return out
