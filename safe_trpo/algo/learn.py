"""One update from one rollout: advantages, the policy step, the critic fit.

``learn`` returns the fields of the update's audit row; it never touches the environment or
the disk. The policy step is chosen by ``[algo] name``: TRPO, CPO, or TRPO-Lagrangian.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.distributions import Distribution

from safe_trpo.algo.constrained import (
    cpo_step,
    lagrangian_advantages,
    per_step_margins,
    update_multipliers,
)
from safe_trpo.algo.critics import SquaredErrorGrads
from safe_trpo.algo.networks import first_linear
from safe_trpo.algo.rollout import NonFiniteError, Rollout, gae
from safe_trpo.algo.state import TrainState
from safe_trpo.algo.trpo import (
    LineSearchResult,
    PolicyBatch,
    flat_params,
    mean_kl,
    set_flat_params,
    trpo_step,
)
from safe_trpo.config import Scenario
from safe_trpo.errors import UserError


def _standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8)


def critic_targets(scenario: Scenario, state: TrainState, r: Rollout
                   ) -> tuple[np.ndarray, np.ndarray]:
    """GAE for the reward and each cost: advantages and value targets, shape (1 + m, T * N)."""
    t, n = r.rewards.shape
    obs = torch.from_numpy(r.obs.reshape(t * n, -1))
    next_obs = torch.from_numpy(r.next_obs.reshape(t * n, -1))
    signals = [r.rewards] + [r.costs[..., j] for j in range(r.costs.shape[-1])]
    a = scenario.algo
    gammas = [a.gamma] + [a.gamma if c.cost_gamma is None else c.cost_gamma
                          for c in scenario.constraints]
    lams = [a.gae_lambda] + [a.cost_gae_lambda] * len(scenario.constraints)
    advs, rets = [], []
    with torch.no_grad():
        for critic, signal, gamma, lam in zip(state.critics, signals, gammas, lams, strict=True):
            values = critic(obs).double().numpy().reshape(t, n)
            next_values = critic(next_obs).double().numpy().reshape(t, n)
            adv, ret = gae(signal, values, next_values, r.terminated, r.done, gamma, lam)
            advs.append(adv.reshape(-1))
            rets.append(ret.reshape(-1))
    return np.stack(advs), np.stack(rets)


def fit_critics(state: TrainState, obs: torch.Tensor, targets: torch.Tensor, epochs: int,
                minibatch: int) -> list[float]:
    """Regress every critic on its targets with shared minibatches; mean loss of the last epoch.

    ``targets`` has shape (1 + m, batch), each row in its critic's standardised output units
    (``standardised_targets``): the fit reads ``critic.net``, not the rescaled output. Each
    critic's gradient of its mean squared error comes from ``SquaredErrorGrads`` (the
    backward pass written out, equal to autograd's), and one
    step of the shared Adam moves them all: the critics have disjoint parameters, so this
    trains each exactly as separately.
    """
    size = obs.shape[0]
    grads_of = [SquaredErrorGrads(critic) for critic in state.critics]
    losses = torch.zeros(len(grads_of))
    # inference_mode, not no_grad: nothing here is differentiated, and skipping autograd's
    # version and view tracking makes the 160 small steps ~10% faster.
    with torch.inference_mode():
        for epoch in range(epochs):
            order = torch.from_numpy(state.rng.permutation(size))
            # One gather per epoch, then contiguous slices: cheaper than a gather per minibatch.
            # Targets get the critics' (B, 1) output shape here, once.
            obs_epoch, targets_epoch = obs[order], targets[:, order].unsqueeze(-1)
            for start in range(0, size, minibatch):
                x = obs_epoch[start:start + minibatch]
                y = targets_epoch[:, start:start + minibatch]
                errors, grads = [], []
                for critic_grads, y_k in zip(grads_of, y, strict=True):
                    error, critic_grad = critic_grads(x, y_k)
                    errors.append(error)
                    grads += critic_grad
                state.critic_optim.step(grads)
                if epoch == epochs - 1:  # only the last epoch's loss is reported
                    per_critic = torch.stack([(e ** 2).mean() for e in errors])
                    losses += per_critic * x.shape[0] / size
    return losses.tolist()


def standardised_targets(state: TrainState, targets: np.ndarray) -> np.ndarray:
    """Move each critic's output scale to its targets' mean and standard deviation (V kept,
    ``ValueNet.rescale_output``) and return the targets in those units, shape (1 + m, batch).

    Fitting standardised targets makes the critic fit independent of the units of the reward
    or cost: a cost x 1e-6 gives the same fit, x 1e-6. Constant targets (std 0) are scaled by
    their size; all-zero targets keep the previous scale (a new critic's V = 0).
    """
    out = np.empty_like(targets)
    for k, (critic, y) in enumerate(zip(state.critics, targets, strict=True)):
        mean, std = float(y.mean()), float(y.std())
        scale = std if std > 1e-6 * abs(mean) else abs(mean)
        if np.isfinite(mean) and np.isfinite(scale) and scale > 0:
            critic.rescale_output(mean, scale)
        std_now = float(critic.out_std)  # 0 only while nothing but zeros was seen: V = 0
        out[k] = (y - float(critic.out_mean)) / (std_now if std_now > 0 else 1.0)
    return out


# An episode cost is a float sum of per-step costs: one that equals its limit up to rounding
# (ten steps of 1e-6 against a limit of 1e-5) is at the limit, not over it.
OVER_RTOL = 1e-9


def count_over(costs: np.ndarray, limit: float) -> int:
    """How many episode costs exceed ``limit`` (by more than float rounding, ``OVER_RTOL``)."""
    return int(np.count_nonzero(np.asarray(costs) > limit + OVER_RTOL * abs(limit)))


def episode_evidence(costs: np.ndarray, limit: float) -> dict[str, Any]:
    """What a mean episode cost can hide, from the undiscounted costs of finished episodes.

    Args:
        costs: (E,) undiscounted episode sums of one cost (E may be 0).
        limit: the constraint's budget on that sum.

    Returns ``episodes_over`` (episodes whose cost exceeded ``limit``, ``count_over``; 0 when
    E = 0),
    ``ep_cost_max`` (the worst episode) and ``ep_cost_cvar90`` (mean of the worst 10 % of
    episodes, at least one: ceil(E / 10) of them); both None when no episode finished.
    """
    costs = np.asarray(costs, dtype=np.float64).reshape(-1)
    if costs.size == 0:
        return {"episodes_over": 0, "ep_cost_max": None, "ep_cost_cvar90": None}
    tail = int(np.ceil(0.1 * costs.size))
    return {"episodes_over": count_over(costs, limit),
            "ep_cost_max": float(costs.max()),
            "ep_cost_cvar90": float(np.sort(costs)[-tail:].mean())}


def episode_summary(scenario: Scenario, state: TrainState, r: Rollout) -> dict[str, Any]:
    """The batch's episode figures: ``constraints[]`` has the mean episode cost (``ep_cost``,
    ``violated``, ``margin`` = limit - ep_cost) and beside it the episode-level evidence the mean
    can hide (``episode_evidence``)."""
    finished = len(r.episode_returns)
    ep_costs = r.episode_costs.mean(0) if finished else None
    constraints = []
    for j, c in enumerate(scenario.constraints):
        ep_cost = None if ep_costs is None else float(ep_costs[j])
        constraints.append({
            "name": c.name, "limit": c.limit, "ep_cost": ep_cost,
            "violated": None if ep_cost is None else ep_cost > c.limit,
            "margin": None if ep_cost is None else c.limit - ep_cost,
            **episode_evidence(r.episode_costs[:, j], c.limit),
            "step_cost": float(r.costs[..., j].mean()),
            "nu": float(state.nu[j]) if scenario.algo.name != "trpo" else None,
        })
    return {"return_mean": float(np.mean(r.episode_returns)) if finished else None,
            "episodes": finished,
            "ep_len_mean": float(np.mean(r.episode_lengths)) if finished else None,
            "constraints": constraints,
            # Env steps whose action the env's safety layer changed (null: no such layer).
            "safety_interventions": r.interventions}


def renormalise(state: TrainState, r: Rollout
                ) -> tuple[torch.Tensor, Distribution, dict[str, Any] | None]:
    """Move the observation normaliser to this batch before the policy step, so the audited
    KL measures the whole change of behaviour. Returns (observations as the policy will see
    them from now on, the distribution the actions were drawn from, what ``restore`` needs to
    undo the move, or None when nothing can be undone).

    The statistics take in the batch through ``update_preserving``, which keeps every network's
    function of the raw observation except where the +-clip bound moves. What that leaves, and
    in the first rollout of a run (whose statistics moved at every step: there is no single old
    normalisation to preserve) the whole move, changes behaviour; measuring the step's KL
    against the distribution that actually drew the actions counts it inside the trust region.
    """
    t, n = r.rewards.shape
    collected = torch.from_numpy(r.obs.reshape(t * n, -1))
    raw = r.raw_obs.reshape(t * n, -1)
    policy = state.policy
    with torch.no_grad():
        behaviour = policy.detach(policy.distribution(collected))
    snapshot = None
    if state.update > 0 or state.normalizer.count <= 1:  # update 0 saw its stats per step
        layers = [first_linear(policy), *map(first_linear, state.critics)]
        snapshot = {"normalizer": copy.deepcopy(state.normalizer.state_dict()),
                    "layers": [(m.weight.detach().clone(), m.bias.detach().clone())
                               for m in layers]}
        state.normalizer.update_preserving(raw, layers)
    return torch.from_numpy(state.normalizer.frozen()(raw)), behaviour, snapshot


def restore(state: TrainState, snapshot: dict[str, Any]) -> None:
    """Undo ``renormalise``: statistics and first layers exactly as they were."""
    state.normalizer.load_state_dict(snapshot["normalizer"])
    layers = [first_linear(state.policy), *map(first_linear, state.critics)]
    with torch.no_grad():
        for layer, (weight, bias) in zip(layers, snapshot["layers"], strict=True):
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)


def cpo_horizons(scenario: Scenario, state: TrainState) -> np.ndarray:
    """The episode length each limit is budgeted over, (m,): CPO's margin is limit / horizon.

    A constraint's ``horizon`` if the scenario sets one; else the mean length of the episodes
    finished most recently (the env's ``max_episode_steps`` before any finished). With neither
    there is no honest way to turn an episode budget into a per-step one, so the run stops
    with a clear error rather than guessing (the rollout length would be a guess).
    """
    out = []
    for c in scenario.constraints:
        horizon = c.horizon if c.horizon is not None else state.horizon
        if horizon is None:
            raise UserError(
                f"[[constraints]] {c.name!r}: no episode finished in this batch and the "
                f"environment declares no max_episode_steps, so CPO cannot turn the episode "
                f"budget limit = {c.limit:g} into a per-step margin; set [[constraints]] "
                f"horizon = <episode length in steps> (or give the env a time limit)")
        out.append(float(horizon))
    return np.array(out)


def policy_step(scenario: Scenario, state: TrainState, r: Rollout, batch: PolicyBatch,
                advs: np.ndarray) -> tuple[LineSearchResult, float, str | None, dict | None]:
    """The step ``[algo] name`` asks for, in place: (line search, expected improvement of
    the full step, why no step was tried or None, the CPO fields of the row or None)."""
    a = scenario.algo
    reward_adv = torch.from_numpy(advs[0]).float()
    cost_advs = torch.from_numpy(advs[1:]).float()
    cost_advs = cost_advs - cost_advs.mean(1, keepdim=True)  # centred, not scaled: units matter
    limits = np.array([c.limit for c in scenario.constraints])
    step_args = (a.target_kl, a.cg_iters, a.cg_damping, a.backtrack_iters, a.backtrack_coeff)
    if a.name == "cpo":
        horizon = cpo_horizons(scenario, state)
        margins = per_step_margins(r.costs, limits, horizon)
        result = cpo_step(state.policy, batch, _standardise(reward_adv)
                          if a.normalize_advantages else reward_adv, cost_advs, margins,
                          *step_args)
        sol = result.solution
        state.nu = np.asarray(sol.nu, dtype=np.float64)
        # excess_per_step is c_i (> 0: over budget), unlike constraints[].margin (> 0: slack).
        cpo_fields = {**sol.audit_fields(), "excess_per_step": margins,
                      "horizon": horizon,  # (m,) episode length each limit is spread over
                      "predicted_cost_change": sol.predicted_cost_change}
        return result.search, sol.predicted_reward_gain, None, cpo_fields
    advantage = reward_adv
    if a.name == "trpo-lag":
        ep_costs = r.episode_costs.mean(0) if len(r.episode_returns) else None  # (m,)
        state.nu = update_multipliers(state.nu, ep_costs, limits, a.lagrange_lr)
        advantage = lagrangian_advantages(reward_adv, cost_advs, state.nu)
    if a.normalize_advantages:
        advantage = _standardise(advantage)
    result = trpo_step(state.policy, batch, advantage, *step_args)
    return result.search, result.expected_improvement, result.skipped, None


def fit_critics_checked(scenario: Scenario, state: TrainState, obs: torch.Tensor,
                        rets: np.ndarray) -> list[float]:
    """``fit_critics`` on standardised targets; the losses in the reward's and costs' units.

    Raises NonFiniteError (``where="critic"``) when a critic diverged: nothing learnt after
    that would mean anything (advantages come from these critics), so the run stops and the
    last checkpoint holds the last good state.
    """
    a = scenario.algo
    scaled = standardised_targets(state, rets)
    losses = fit_critics(state, obs, torch.from_numpy(scaled).float(), a.critic_epochs,
                         a.critic_minibatch)
    losses = [loss * float(critic.out_std) ** 2
              for loss, critic in zip(losses, state.critics, strict=True)]
    names = ["reward"] + [c.name for c in scenario.constraints]
    diverged = [names[k] for k, critic in enumerate(state.critics)
                if not (np.isfinite(losses[k])
                        and all(torch.isfinite(p).all() for p in critic.parameters()))]
    if diverged:
        raise NonFiniteError(
            "critic fit diverged (non-finite loss or weights) for the "
            + ", ".join(map(repr, diverged)) + f" critic{'s' if len(diverged) > 1 else ''} "
            f"(algo.critic_lr = {a.critic_lr:g}); lower critic_lr", where="critic")
    return losses


def learn(scenario: Scenario, state: TrainState, r: Rollout) -> dict[str, Any]:
    """Advantages -> normaliser move + policy step -> critic fit, for one rollout; returns the
    fields of the update's audit row."""
    a = scenario.algo
    advs, rets = critic_targets(scenario, state, r)  # with the critics as they collected
    t, n = r.rewards.shape
    actions = torch.from_numpy(r.actions.reshape(t * n, *r.actions.shape[2:]))
    obs, behaviour, snapshot = renormalise(state, r)
    batch = PolicyBatch(state.policy, obs, actions,
                        torch.from_numpy(r.log_probs.reshape(-1)).float(), old_dist=behaviour)
    if r.episode_lengths:
        state.horizon = float(np.mean(r.episode_lengths))
    before = flat_params(state.policy).clone()
    search, expected, skipped, cpo_fields = policy_step(scenario, state, r, batch, advs)

    nan_event = None
    if not torch.isfinite(flat_params(state.policy)).all():
        set_flat_params(state.policy, before)  # never keep a broken policy
        nan_event = "policy parameters became non-finite; step reverted"
        search = LineSearchResult(False, search.backtracks, 0.0, 0.0, 0.0, "non-finite")
    if not search.accepted:
        if snapshot is not None:  # the normaliser's move is undone with the step: kl = 0
            restore(state, snapshot)
            obs = torch.from_numpy(r.obs.reshape(t * n, -1))
        else:  # update 0: the statistics moved during the rollout and cannot move back
            search = replace(search, kl=mean_kl(state.policy, batch))
    summary = episode_summary(scenario, state, r)
    if cpo_fields is not None:
        # The margin the solver used, in episode units and with `margin`'s sign (> 0: slack):
        # -c_i * horizon_i = limit_i - horizon_i * mean per-step cost. See docs/audit-record.md.
        for entry, c_i, h_i in zip(summary["constraints"], cpo_fields["excess_per_step"],
                                   cpo_fields["horizon"], strict=True):
            entry["margin_episode_units"] = float(-c_i * h_i)
    losses = fit_critics_checked(scenario, state, obs, rets)
    row = {
        "algo": a.name, "kl": search.kl, "target_kl": a.target_kl,
        "accepted": search.accepted, "backtracks": search.backtracks,
        "step_fraction": search.step_fraction, "surrogate_improvement": search.improvement,
        # First-order prediction for the full step (before the line search scaled it).
        "expected_improvement": expected, "step_skipped": skipped,
        "line_search_reason": search.reason,  # None if accepted, else trpo.REJECT_REASONS
        **summary,
        "cpo": cpo_fields, "value_loss": losses[0], "cost_value_losses": losses[1:],
    }
    if nan_event:
        row["nan_event"] = nan_event
    return row
