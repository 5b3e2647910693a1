"""Tier 1: the networks' fast paths (numpy tanh, sampling, normaliser) against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from safe_trpo.algo.networks import make_policy
from tests.algo.fixtures import small_critic, tiny_batch


def test_normaliser_update_preserves_the_policy_and_critic_functions() -> None:
    from safe_trpo.algo.networks import ObsNormalizer, ValueNet, first_linear

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
    policy, batch = tiny_batch(discrete)
    with torch.no_grad():
        actions, log_probs = policy.sample(batch.obs)
        expected = policy.log_prob(policy.distribution(batch.obs), actions)
    torch.testing.assert_close(log_probs, expected, rtol=1e-10, atol=1e-10)


# Each fast path is checked against the straightforward torch computation it replaces.


def test_numpy_tanh_agrees_with_torch_tanh_to_one_ulp() -> None:
    from safe_trpo.algo.networks import Tanh, tanh_

    x = np.concatenate([np.linspace(-20, 20, 400_001, dtype=np.float32),
                        np.logspace(-30, 1, 10_000, dtype=np.float32)])
    ours = tanh_(torch.from_numpy(x.copy())).numpy()
    theirs = torch.tanh(torch.from_numpy(x)).numpy()
    ulps = np.abs(ours.view(np.int32).astype(np.int64) - theirs.view(np.int32).astype(np.int64))
    assert ulps.max() <= 1
    module_out = Tanh()(torch.from_numpy(x))
    assert torch.equal(module_out, torch.from_numpy(ours))


def test_tanh_module_first_and_second_derivatives_are_tanh_s() -> None:
    from torch.autograd import gradcheck, gradgradcheck

    from safe_trpo.algo.networks import Tanh

    gen = torch.Generator().manual_seed(0)
    x = (2 * torch.randn(6, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    tanh = Tanh()
    assert gradcheck(tanh, (x,)) and gradgradcheck(tanh, (x,))
    x_t = x.detach().t().contiguous().t().requires_grad_()  # non-contiguous input
    (g_ours,) = torch.autograd.grad(tanh(x_t).sum(), x_t, create_graph=True)
    (g_ref,) = torch.autograd.grad(torch.tanh(x_t).sum(), x_t, create_graph=True)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-14)
    (gg_ours,) = torch.autograd.grad(g_ours.sum(), x_t)
    (gg_ref,) = torch.autograd.grad(g_ref.sum(), x_t)
    torch.testing.assert_close(gg_ours, gg_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_function_matches_the_module(activation: str) -> None:
    from safe_trpo.algo.networks import mlp_function

    net = small_critic(activation, seed=4).net
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(mlp_function(net)(x), expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # in-place parameter updates are seen without rebuilding
        for p in net.parameters():
            p.mul_(0.5)
        expected = net(torch.from_numpy(x)).numpy()
    forward = mlp_function(net)
    np.testing.assert_allclose(forward(x), expected, rtol=1e-5, atol=1e-6)
