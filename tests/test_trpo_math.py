"""Tier 1: the TRPO building blocks against exact references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.func import functional_call

from safe_trpo.networks import make_policy
from safe_trpo.rollout import gae
from safe_trpo.trpo import (
    PolicyBatch,
    conjugate_gradient,
    fisher_vector_product,
    flat_params,
    line_search,
    mean_kl,
    set_flat_params,
    trpo_step,
)


def test_conjugate_gradient_matches_direct_solve() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 30
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    spd = a @ a.T + 0.5 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: spd @ v, b, iters=200, residual_tol=1e-24)
    expected = torch.linalg.solve(spd, b)
    torch.testing.assert_close(x, expected, rtol=1e-8, atol=1e-10)


def test_conjugate_gradient_n_steps_exact_on_n_dimensional_problem() -> None:
    # In exact arithmetic CG converges in n steps; a well-conditioned 5x5 must be solved in 5.
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    spd = q @ torch.diag(torch.tensor([1.0, 2, 3, 4, 5], dtype=torch.float64)) @ q.T
    b = torch.randn(5, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: spd @ v, b, iters=5, residual_tol=0.0)
    torch.testing.assert_close(spd @ x, b, rtol=1e-9, atol=1e-9)


def _tiny_batch(discrete: bool) -> tuple[torch.nn.Module, PolicyBatch]:
    torch.manual_seed(0)
    obs_space = spaces.Box(-1, 1, shape=(3,))
    action_space = spaces.Discrete(3) if discrete else spaces.Box(-1, 1, shape=(2,))
    policy = make_policy(obs_space, action_space, [4], "tanh", -0.3).double()
    # Move away from the tiny-output initialisation so the Hessian is generic.
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs = torch.randn(16, 3, dtype=torch.float64)
    with torch.no_grad():
        dist = policy.distribution(obs)
        actions = dist.sample()
        logp = policy.log_prob(dist, actions)
    return policy, PolicyBatch(policy, obs, actions, logp)


@pytest.mark.parametrize("discrete", [False, True])
def test_fisher_vector_product_matches_explicit_kl_hessian(discrete: bool) -> None:
    policy, batch = _tiny_batch(discrete)
    theta0 = flat_params(policy).clone()
    shapes = [(name, p.shape, p.numel()) for name, p in policy.named_parameters()]

    def kl_of(theta: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape, n in shapes:
            params[name] = theta[offset:offset + n].view(shape)
            offset += n
        dist = _distribution_with(policy, params, batch.obs)
        return policy.kl(batch.old_dist, dist).mean()

    hessian = torch.autograd.functional.hessian(kl_of, theta0)
    damping = 0.05
    fvp = fisher_vector_product(policy, batch, damping)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(theta0.numel(), generator=gen, dtype=torch.float64)
        torch.testing.assert_close(fvp(v), hessian @ v + damping * v, rtol=1e-8, atol=1e-10)


def _distribution_with(policy: torch.nn.Module, params: dict, obs: torch.Tensor):
    """The policy's distribution with parameters taken from ``params`` (for autograd)."""
    from torch.distributions import Categorical, Normal

    if hasattr(policy, "mean_net"):
        sub = {k.removeprefix("mean_net."): v for k, v in params.items() if k != "log_std"}
        mean = functional_call(policy.mean_net, sub, (obs,))
        return Normal(mean, params["log_std"].exp())
    sub = {k.removeprefix("logits_net."): v for k, v in params.items()}
    return Categorical(logits=functional_call(policy.logits_net, sub, (obs,)))


def test_gae_matches_hand_computation_with_truncation_and_termination() -> None:
    # One env, 5 steps: episode A = steps 0-1, truncated at step 1 (bootstrap from the final
    # observation's value 10); episode B = steps 2-3, terminated at step 3 (no bootstrap);
    # step 4 is mid-episode (bootstrap from the next value 7).
    gamma, lam = 0.9, 0.8
    rewards = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    values = np.array([[0.5], [1.5], [2.5], [3.5], [4.5]])
    next_values = np.array([[1.5], [10.0], [3.5], [99.0], [7.0]])
    terminated = np.array([[False], [False], [False], [True], [False]])
    truncated = np.array([[False], [True], [False], [False], [False]])
    done = terminated | truncated
    adv, ret = gae(rewards, values, next_values, terminated, done, gamma, lam)

    d0 = 1 + 0.9 * 1.5 - 0.5  # 1.85
    d1 = 2 + 0.9 * 10.0 - 1.5  # 9.5   (truncated: bootstrap)
    d2 = 3 + 0.9 * 3.5 - 2.5  # 3.65
    d3 = 4 + 0.0 - 3.5  # 0.5   (terminated: the 99 must not leak in)
    d4 = 5 + 0.9 * 7.0 - 4.5  # 6.8
    a4 = d4
    a3 = d3  # episode ends at 3: no carry from step 4
    a2 = d2 + 0.9 * 0.8 * a3
    a1 = d1  # episode ends at 1
    a0 = d0 + 0.9 * 0.8 * a1
    expected = np.array([[a0], [a1], [a2], [a3], [a4]])
    np.testing.assert_allclose(adv, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ret, expected + values, rtol=0, atol=1e-12)


def test_gae_is_independent_per_env_column() -> None:
    rng = np.random.default_rng(0)
    shape = (6, 3)
    args = [rng.normal(size=shape) for _ in range(3)]
    term = rng.random(shape) < 0.2
    done = term | (rng.random(shape) < 0.2)
    adv, _ = gae(*args, term, done, 0.99, 0.95)
    for j in range(3):
        col, _ = gae(*(a[:, [j]] for a in args), term[:, [j]], done[:, [j]], 0.99, 0.95)
        np.testing.assert_allclose(adv[:, [j]], col)


def test_line_search_restores_parameters_bit_for_bit_on_failure() -> None:
    policy, batch = _tiny_batch(discrete=False)
    before = [p.detach().clone() for p in policy.parameters()]
    step = torch.randn(flat_params(policy).numel(), dtype=torch.float64)
    result = line_search(policy, batch, step, lambda kl: (False, 0.0), iters=5, coeff=0.5)
    assert not result.accepted and result.backtracks == 5 and result.kl == 0.0
    for p, q in zip(policy.parameters(), before, strict=True):
        assert torch.equal(p, q)


def test_trpo_step_accepted_kl_within_target_and_matches_measurement() -> None:
    torch.manual_seed(4)
    for trial in range(5):
        policy, batch = _tiny_batch(discrete=bool(trial % 2))
        adv = torch.randn(batch.obs.shape[0], dtype=torch.float64)
        target = 0.01
        result = trpo_step(policy, batch, adv, target, cg_iters=20, cg_damping=0.01,
                           backtrack_iters=10, backtrack_coeff=0.8)
        if result.search.accepted:
            assert 0 < result.search.kl <= target
            assert result.search.kl == pytest.approx(mean_kl(policy, batch), rel=1e-12)
            assert result.search.improvement > 0


def test_set_flat_params_round_trip() -> None:
    policy, _ = _tiny_batch(discrete=False)
    flat = flat_params(policy).clone()
    set_flat_params(policy, flat * 2)
    torch.testing.assert_close(flat_params(policy), flat * 2)


def test_normaliser_update_preserves_the_policy_and_critic_functions() -> None:
    from safe_trpo.networks import ObsNormalizer, ValueNet, first_linear

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    policy = make_policy(spaces.Box(-1, 1, shape=(3,)), spaces.Box(-1, 1, shape=(2,)), [8],
                         "tanh", 0.0)
    critic = ValueNet(3, [8], "tanh")
    norm = ObsNormalizer(3)
    norm.update(rng.normal(0, 1, size=(50, 3)))
    raw = rng.normal([5.0, -2.0, 0.3], [3.0, 0.5, 2.0], size=(20, 3))
    with torch.no_grad():
        mean_before = policy.deterministic(torch.from_numpy(norm(raw))).clone()
        value_before = critic(torch.from_numpy(norm(raw))).clone()
    norm.update_preserving(raw, [first_linear(policy), first_linear(critic)])
    assert norm.mean.numpy()[0] > 0.5  # the statistics did move
    with torch.no_grad():
        torch.testing.assert_close(policy.deterministic(torch.from_numpy(norm(raw))),
                                   mean_before, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(critic(torch.from_numpy(norm(raw))), value_before,
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("discrete", [False, True])
def test_fast_sampling_log_prob_equals_the_distribution(discrete: bool) -> None:
    policy, batch = _tiny_batch(discrete)
    with torch.no_grad():
        actions, log_probs = policy.sample(batch.obs)
        expected = policy.log_prob(policy.distribution(batch.obs), actions)
    torch.testing.assert_close(log_probs, expected, rtol=1e-10, atol=1e-10)
