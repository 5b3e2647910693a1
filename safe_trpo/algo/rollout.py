"""Rollout collection from a Gymnasium vector env: it knows nothing of TRPO.

The vector env must use SAME_STEP autoreset (``make_vector_env`` makes sure): when copy i ends at
step t, the returned observation is already the next episode's first one, the last observation is
in ``info["final_obs"][i]`` and the last step's info (costs included) in ``info["final_info"]``.
We keep that final observation so truncated episodes can be bootstrapped from V(final_obs).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from safe_trpo.algo.networks import ObsNormalizer, Policy, clip_action
from safe_trpo.errors import UserError


class Rollout(NamedTuple):
    """One batch, arrays shaped (T, N, ...) for T steps of N env copies.

    ``obs`` are normalised as the policy saw them. ``next_obs`` is the normalised observation
    after each step (the final observation where an episode ended), for bootstrapping.
    """

    obs: np.ndarray  # (T, N, obs_dim) float32
    actions: np.ndarray  # (T, N, act_dim) float32 or (T, N) int64 (unclipped samples)
    log_probs: np.ndarray  # (T, N)
    rewards: np.ndarray  # (T, N)
    costs: np.ndarray  # (T, N, m)
    terminated: np.ndarray  # (T, N) bool: true end, no bootstrap
    done: np.ndarray  # (T, N) bool: terminated or truncated
    next_obs: np.ndarray  # (T, N, obs_dim)
    episode_returns: list[float]  # undiscounted, episodes finished in this batch
    episode_costs: np.ndarray  # (episodes, m) undiscounted sums
    episode_lengths: list[int]
    raw_obs: np.ndarray  # (T, N, obs_dim) as the env returned them, for the normaliser
    # Steps on which the env's safety layer changed the action (info["safety_interventions"]
    # > 0, e.g. the portfolio's hard caps); None when the env has no such layer.
    interventions: int | None = None


class NonFiniteError(RuntimeError):
    """A NaN or inf that stops the run; ``where`` it arose ("environment", "critic") goes
    into the audit record's ``nan_detected`` event."""

    def __init__(self, message: str, where: str = "environment") -> None:
        super().__init__(message)
        self.where = where


class EnvErrors:
    """Context manager: an exception raised inside the environment's ``call`` ends the run as
    a recorded failure with one line naming it, rather than a traceback from deep inside
    someone else's code. Reusable, so the rollout loop builds one and enters it every step."""

    def __init__(self, call: str) -> None:
        self.call = call

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc is None or isinstance(exc, UserError | NonFiniteError) \
                or not isinstance(exc, Exception):
            return  # nothing raised, or already one of ours, or not an error (Ctrl-C)
        raise UserError(f"the environment's {self.call}() raised {type(exc).__name__}: {exc}"
                        ) from exc


def check_finite(x: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(x).all():
        raise NonFiniteError(f"environment returned a non-finite {what}")
    return x


INTERVENTIONS_KEY = "safety_interventions"


def count_interventions(info: dict[str, Any], done: np.ndarray) -> int | None:
    """Copies whose safety layer changed the action on this vector step (finished copies are
    read from final_info, as costs are); None when the env reports no safety layer."""
    final = info.get("final_info", {})
    if INTERVENTIONS_KEY not in info and INTERVENTIONS_KEY not in final:
        return None
    hits = np.zeros(len(done), dtype=bool)
    for source, rows in ((info, ~done), (final, done)):
        if rows.any() and INTERVENTIONS_KEY in source:
            hits[rows] = np.asarray(source[INTERVENTIONS_KEY])[rows] > 0
    return int(np.count_nonzero(hits))


def read_costs(info: dict[str, Any], done: np.ndarray, cost_keys: list[str]) -> np.ndarray:
    """Per-copy costs (N, m) of one vector step; finished copies' costs come from final_info.

    A cost the env does not report is an error, never a silent zero.
    """
    out = np.zeros((len(done), len(cost_keys)))
    final = info.get("final_info", {})
    for j, key in enumerate(cost_keys):
        for source, rows in ((info, ~done), (final, done)):
            if not rows.any():
                continue
            mask = source.get(f"_{key}")
            if key not in source or (mask is not None and not np.all(mask[rows])):
                reported = sorted(k for k in {**info, **final} if k.startswith("cost"))
                raise UserError(f"environment does not report info['{key}'] on every step "
                                f"(needed here); cost keys it reports: "
                                f"{reported or 'none'}")
            out[rows, j] = np.asarray(source[key], dtype=np.float64)[rows]
    check_finite(out, "cost")
    if (out < 0).any():
        j = int(np.argwhere(out < 0)[0, 1])
        raise UserError(f"environment reported a negative info['{cost_keys[j]}'] "
                        f"({out[:, j].min():g}); costs must be >= 0")
    return out


class RolloutCollector:
    """Steps a vector env with a policy; episode sums carry over between batches."""

    def __init__(self, envs: gym.vector.VectorEnv, cost_keys: list[str], seed: int) -> None:
        self.envs = envs
        self.cost_keys = cost_keys
        self.action_space = envs.single_action_space
        with EnvErrors("reset"):
            obs, _ = envs.reset(seed=seed)
        self.raw_obs = check_finite(np.asarray(obs, dtype=np.float64), "initial observation")
        n = envs.num_envs
        self.ep_return = np.zeros(n)
        self.ep_cost = np.zeros((n, len(cost_keys)))
        self.ep_len = np.zeros(n, dtype=np.int64)

    @torch.no_grad()
    def collect(self, policy: Policy, normalizer: ObsNormalizer, steps_per_env: int,
                update_stats_per_step: bool = False) -> Rollout:
        """Run ``steps_per_env`` vector steps. The normaliser's statistics only change here
        when ``update_stats_per_step`` (a fresh run's first rollout); otherwise the caller
        updates them from ``Rollout.raw_obs`` once the update is done."""
        n, m, steps = self.envs.num_envs, len(self.cost_keys), steps_per_env
        obs_dim = self.raw_obs.shape[-1]
        # Preallocated (T, N, ...) buffers written in place: no per-step lists and np.stack.
        raw_buf = np.empty((steps, n, obs_dim))
        final_raw_buf = np.empty((steps, n, obs_dim))  # next raw obs, the final one at an end
        obs_buf = np.empty((steps, n, obs_dim), dtype=np.float32)
        next_buf = np.empty((steps, n, obs_dim), dtype=np.float32)
        rew_buf = np.zeros((steps, n))
        cost_buf = np.zeros((steps, n, m))
        term_buf = np.zeros((steps, n), dtype=bool)
        done_buf = np.zeros((steps, n), dtype=bool)
        actions, aux = [], []  # per step, stacked once at the end
        ep_returns: list[float] = []
        ep_costs: list[np.ndarray] = []
        ep_lens: list[int] = []
        draw = policy.rollout_sampler(steps)
        step_errors = EnvErrors("step")
        normalize = normalizer.frozen()
        interventions: int | None = None
        for t in range(steps):
            if update_stats_per_step:
                normalizer.update(self.raw_obs)
                normalize = normalizer.frozen()
            raw_buf[t] = self.raw_obs
            action, action_aux = draw(normalize(self.raw_obs, out=obs_buf[t]))
            actions.append(action)
            aux.append(action_aux)
            with step_errors:
                next_raw, reward, terminated, truncated, info = self.envs.step(
                    clip_action(action, self.action_space))
            done = np.logical_or(terminated, truncated)
            rew_buf[t], term_buf[t], done_buf[t] = reward, terminated, done
            if m:
                cost_buf[t] = read_costs(info, done, self.cost_keys)
                self.ep_cost += cost_buf[t]
            hits = count_interventions(info, done)
            if hits is not None:
                interventions = (interventions or 0) + hits
            self.raw_obs = check_finite(np.asarray(next_raw, dtype=np.float64), "observation")
            final_raw_buf[t] = self.raw_obs
            self.ep_return += rew_buf[t]
            self.ep_len += 1
            if done.any():  # rare: only steps where an episode ended pay for what follows
                for i in np.flatnonzero(done):
                    final_raw_buf[t, i] = info["final_obs"][i]
                    ep_returns.append(float(self.ep_return[i]))
                    ep_costs.append(self.ep_cost[i].copy())
                    ep_lens.append(int(self.ep_len[i]))
                check_finite(final_raw_buf[t], "final observation")
                self.ep_return[done], self.ep_cost[done], self.ep_len[done] = 0.0, 0.0, 0
            if update_stats_per_step:  # the statistics move every step: use this step's
                normalize(final_raw_buf[t], out=next_buf[t])
        # Rewards do not feed back into acting, so one check at the end is enough (before
        # anything is learnt from them or recorded).
        check_finite(rew_buf, "reward")
        if not update_stats_per_step:  # fixed statistics: one vectorised pass for all steps
            normalize(final_raw_buf, out=next_buf)
        act_np = np.stack(actions)
        log_probs = policy.log_prob_from_aux(torch.from_numpy(act_np),
                                             torch.from_numpy(np.stack(aux)))
        return Rollout(
            obs=obs_buf, actions=act_np.astype(np.float32 if act_np.dtype.kind == "f"
                                               else np.int64),
            log_probs=log_probs.numpy(), rewards=rew_buf,
            costs=cost_buf, terminated=term_buf, done=done_buf, next_obs=next_buf,
            episode_returns=ep_returns, episode_costs=np.array(ep_costs).reshape(len(ep_costs), m),
            episode_lengths=ep_lens, raw_obs=raw_buf, interventions=interventions)


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray,
        terminated: np.ndarray, done: np.ndarray, gamma: float, lam: float
        ) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over (T, N) arrays; returns (advantages, returns).

    ``next_values[t]`` is V of the observation after step t: the final observation where the
    episode ended there. A terminated step does not bootstrap (its next value is multiplied by
    0); a truncated one does (time ran out, the state still had a future). The recursion stops at
    every episode end (``done``), so advantages never leak across episodes.
    """
    not_terminal = 1.0 - terminated.astype(np.float64)
    not_done = 1.0 - done.astype(np.float64)
    deltas = rewards + gamma * not_terminal * next_values - values
    carry = gamma * lam * not_done  # how much of step t+1's advantage flows back to step t
    adv = np.zeros_like(deltas)
    running = np.zeros(deltas.shape[1:])
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + carry[t] * running
        adv[t] = running
    return adv, adv + values
