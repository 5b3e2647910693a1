"""CPO's line search fixes a violated constraint when it can, and every rejection says why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from safe_trpo.algo.constrained import cpo_step
from safe_trpo.algo.networks import make_policy
from safe_trpo.algo.trpo import (
    REJECT_REASONS,
    PolicyBatch,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    flat_params,
    line_search,
    rejection,
    surrogate,
)

DELTA, DAMPING = 0.01, 0.01


def _conflict(seed: int):
    """A batch whose cost advantages equal its reward advantages: any step that lowers the
    cost lowers the reward by as much."""
    torch.manual_seed(seed)
    policy = make_policy(spaces.Box(-1, 1, shape=(3,)), spaces.Box(-1, 1, shape=(2,)), [8],
                         "tanh", -0.3).double()
    obs = torch.randn(128, 3, dtype=torch.float64)
    with torch.no_grad():
        dist = policy.distribution(obs)
        actions = dist.sample()
        batch = PolicyBatch(policy, obs, actions, policy.log_prob(dist, actions))
    adv = torch.randn(128, dtype=torch.float64)
    adv = adv - adv.mean()
    return policy, batch, adv


def _reach(policy, batch, cost_adv) -> float:
    """sqrt(2 delta b^T H^-1 b): the most the trust region can lower the linearised cost."""
    b = flat_grad(surrogate(policy, batch, cost_adv), policy)
    hinv_b = conjugate_gradient(fisher_vector_product(policy, batch, DAMPING), b, 50)
    return float(np.sqrt(2 * DELTA * float(b @ hinv_b)))


@pytest.mark.parametrize("seed", range(4))
def test_violated_but_fixable_constraint_is_fixed_at_a_cost_in_reward(seed: int) -> None:
    policy, batch, adv = _conflict(seed)
    # Violated now, by 40 % of what the trust region can fix: the linearised problem is feasible.
    margin = 0.4 * _reach(policy, batch, adv)
    with torch.no_grad():
        before = float(surrogate(policy, batch, adv))
    update = cpo_step(policy, batch, adv, adv[None], np.array([margin]), DELTA, 50, DAMPING,
                      10, 0.8)
    assert update.solution.case == "feasible"
    assert update.search.accepted, update.search.reason
    assert update.search.reason is None
    with torch.no_grad():
        after = float(surrogate(policy, batch, adv))
    assert after < before  # the cost fell (and, the advantages being equal, so did the reward)
    assert 0 < update.search.kl <= DELTA


@pytest.mark.parametrize("seed", range(2))
def test_a_satisfied_constraint_still_requires_a_reward_improvement(seed: int) -> None:
    policy, batch, adv = _conflict(seed)
    # Satisfied with slack 0: any step that improves the reward raises the cost, which may not
    # rise, and a step that lowers the cost lowers the reward: nothing is acceptable.
    update = cpo_step(policy, batch, adv, adv[None], np.array([0.0]), DELTA, 50, DAMPING,
                      10, 0.8)
    if update.search.accepted:  # only a step that changes neither surrogate could pass
        pytest.fail("a step was accepted although reward and cost conflict exactly")
    assert update.search.reason in ("reward", "cost", "no-step")
    assert update.search.kl == 0.0


def test_a_rejected_line_search_records_the_last_tries_reason() -> None:
    policy, batch, _ = _conflict(0)
    old = flat_params(policy).clone()
    nan_step = torch.full_like(old, float("nan"))
    result = line_search(policy, batch, nan_step,
                         lambda kl: (rejection(kl, DELTA, 1.0, True), 1.0), iters=3, coeff=0.5)
    assert not result.accepted and result.reason == "non-finite"
    assert torch.equal(flat_params(policy), old)
    result = line_search(policy, batch, torch.ones_like(old),
                         lambda kl: ("cost", 0.0), iters=3, coeff=0.5)
    assert result.reason == "cost" and result.backtracks == 3
    assert rejection(0.02, DELTA, 1.0, True) == "kl"
    assert rejection(0.001, DELTA, -1.0, True) == "reward"
    assert rejection(0.001, DELTA, -1.0, False) is None
    assert rejection(0.001, DELTA, 1.0, True, cost_ok=False) == "cost"
    assert set(REJECT_REASONS) == {"non-finite", "kl", "cost", "reward", "no-step"}
