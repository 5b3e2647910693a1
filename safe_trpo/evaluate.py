"""Deterministic evaluation of a controller (trained policy or baseline) on fresh seeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from safe_trpo.audit import AuditLog
from safe_trpo.config import Scenario
from safe_trpo.make_env import make_vector_env
from safe_trpo.rollout import check_finite, read_costs


class Controller(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self, mask: np.ndarray | None = None) -> None: ...


@dataclass(frozen=True)
class Episodes:
    returns: np.ndarray  # (E,)
    costs: np.ndarray  # (E, m) undiscounted episode sums
    lengths: np.ndarray  # (E,)


def run_episodes(envs: gym.vector.VectorEnv, controller: Controller, episodes: int, seed: int,
                 cost_keys: list[str], max_steps: int = 10_000_000) -> Episodes:
    """Run exactly ``episodes`` episodes, split evenly over the copies.

    Each copy runs its quota of whole episodes one after another, so short episodes are not
    over-represented (taking the first E to finish would favour them).
    """
    n = envs.num_envs
    quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
    done_count = np.zeros(n, dtype=np.int64)
    obs, _ = envs.reset(seed=seed)
    controller.reset()
    ep_ret, ep_cost, ep_len = np.zeros(n), np.zeros((n, len(cost_keys))), np.zeros(n, int)
    returns, costs, lengths = [], [], []
    for _ in range(max_steps):
        if np.all(done_count >= quota):
            break
        obs, reward, terminated, truncated, info = envs.step(controller.act(np.asarray(obs)))
        done = np.logical_or(terminated, truncated)
        check_finite(np.asarray(obs, dtype=np.float64), "observation")
        active = done_count < quota
        ep_ret += np.where(active, reward, 0.0)
        ep_cost += np.where(active[:, None], read_costs(info, done, cost_keys), 0.0)
        ep_len += active
        for i in np.flatnonzero(done & active):
            returns.append(ep_ret[i])
            costs.append(ep_cost[i].copy())
            lengths.append(ep_len[i])
            done_count[i] += 1
        ep_ret[done], ep_cost[done], ep_len[done] = 0.0, 0.0, 0
        if done.any():
            controller.reset(done)
    return Episodes(np.array(returns), np.array(costs).reshape(len(returns), len(cost_keys)),
                    np.array(lengths))


def summarise(scenario: Scenario, result: Episodes) -> dict[str, Any]:
    out: dict[str, Any] = {
        "episodes": len(result.returns), "return_mean": float(result.returns.mean()),
        "return_std": float(result.returns.std()), "ep_len_mean": float(result.lengths.mean()),
        "constraints": []}
    for j, c in enumerate(scenario.constraints):
        col = result.costs[:, j]
        out["constraints"].append({
            "name": c.name, "limit": c.limit, "ep_cost_mean": float(col.mean()),
            "ep_cost_max": float(col.max()), "frac_over_limit": float((col > c.limit).mean())})
    return out


def evaluate_run(run_dir: Path, episodes: int | None = None, seed: int | None = None
                 ) -> dict[str, Any]:
    """Evaluate a run's latest policy deterministically and append an ``evaluation`` line."""
    from safe_trpo.policy_io import load_policy

    policy = load_policy(run_dir)
    scenario = policy.scenario
    episodes = episodes or scenario.eval.episodes
    seed = scenario.eval.seed if seed is None else seed
    envs = make_vector_env(scenario.env, num_envs=min(episodes, scenario.env.num_envs))
    try:
        result = run_episodes(envs, policy, episodes, seed,
                              [c.info_key for c in scenario.constraints])
    finally:
        envs.close()
    summary = summarise(scenario, result)
    with AuditLog(run_dir) as audit:
        audit.append("evaluation", seed=seed, deterministic=True, policy_update=policy.update,
                     checkpoint=policy.checkpoint.relative_to(run_dir).as_posix(), **summary)
    return summary
