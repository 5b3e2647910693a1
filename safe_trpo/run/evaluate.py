"""Deterministic evaluation of a controller (trained policy or baseline) on fresh seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from safe_trpo.algo.learn import count_over
from safe_trpo.algo.rollout import check_finite, read_costs
from safe_trpo.config import Scenario
from safe_trpo.record.audit import AuditLog
from safe_trpo.run.make_env import make_vector_env


class Controller(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self, mask: np.ndarray | None = None) -> None: ...


@dataclass(frozen=True)
class Episodes:
    returns: np.ndarray  # (E,)
    costs: np.ndarray  # (E, m) undiscounted episode sums
    lengths: np.ndarray  # (E,)
    cost_steps: np.ndarray | None = None  # (E, m) steps whose cost was > 0
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (E,) episode sums


def run_episodes(envs: gym.vector.VectorEnv, controller: Controller, episodes: int, seed: int,
                 cost_keys: list[str], max_steps: int = 10_000_000,
                 extra_keys: tuple[str, ...] = ()) -> Episodes:
    """Run exactly ``episodes`` episodes, split evenly over the copies.

    Each copy runs its quota of whole episodes one after another, so short episodes are not
    over-represented (taking the first E to finish would favour them). ``cost_keys`` are info
    keys (``cost_<name>``) summed per episode into ``costs``; ``extra_keys`` are further per-step
    info keys (e.g. ``"tracking_error"``) summed per episode into ``extras[key]``. Finished
    copies' values are read from ``info["final_info"]``; a missing or non-finite one is an error.
    """
    n, keys = envs.num_envs, list(cost_keys) + list(extra_keys)
    quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
    done_count = np.zeros(n, dtype=np.int64)
    obs, _ = envs.reset(seed=seed)
    controller.reset()
    m = len(cost_keys)
    ep_ret, ep_sum, ep_len = np.zeros(n), np.zeros((n, len(keys))), np.zeros(n, int)
    ep_cost_steps = np.zeros((n, m), dtype=np.int64)
    returns, sums, cost_steps, lengths = [], [], [], []
    for _ in range(max_steps):
        if np.all(done_count >= quota):
            break
        obs, reward, terminated, truncated, info = envs.step(controller.act(np.asarray(obs)))
        done = np.logical_or(terminated, truncated)
        check_finite(np.asarray(obs, dtype=np.float64), "observation")
        active = done_count < quota
        step = read_costs(info, done, keys)  # any per-step info key, not only costs
        ep_ret += np.where(active, reward, 0.0)
        ep_sum += np.where(active[:, None], step, 0.0)
        ep_cost_steps += active[:, None] & (step[:, :m] > 0)
        ep_len += active
        for i in np.flatnonzero(done & active):
            returns.append(ep_ret[i])
            sums.append(ep_sum[i].copy())
            cost_steps.append(ep_cost_steps[i].copy())
            lengths.append(ep_len[i])
            done_count[i] += 1
        ep_ret[done], ep_sum[done], ep_cost_steps[done], ep_len[done] = 0.0, 0.0, 0, 0
        if done.any():
            controller.reset(done)
    e = len(returns)
    sums_arr = np.array(sums).reshape(e, len(keys))
    return Episodes(np.array(returns), sums_arr[:, :m], np.array(lengths),
                    cost_steps=np.array(cost_steps, dtype=np.int64).reshape(e, m),
                    extras={k: sums_arr[:, m + j] for j, k in enumerate(extra_keys)})


def summarise(scenario: Scenario, result: Episodes) -> dict[str, Any]:
    out: dict[str, Any] = {
        "episodes": len(result.returns), "return_mean": float(result.returns.mean()),
        "return_std": float(result.returns.std()), "ep_len_mean": float(result.lengths.mean()),
        "constraints": []}
    for j, c in enumerate(scenario.constraints):
        col = result.costs[:, j]
        out["constraints"].append({
            "name": c.name, "limit": c.limit, "ep_cost_mean": float(col.mean()),
            "ep_cost_max": float(col.max()),
            "frac_over_limit": count_over(col, c.limit) / max(len(col), 1),
            "episodes_over": count_over(col, c.limit)})
    return out


def evaluate_run(run_dir: Path, episodes: int | None = None, seed: int | None = None
                 ) -> dict[str, Any]:
    """Evaluate a run's latest policy deterministically and append an ``evaluation`` line."""
    from safe_trpo.run.policy_io import load_policy

    policy = load_policy(run_dir)
    scenario = policy.scenario
    episodes = scenario.eval.episodes if episodes is None else episodes
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
