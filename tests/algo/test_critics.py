"""Tier 1: the critic fit (hand-written backward, direct Adam step) against autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.algo.fixtures import small_critic


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("rows", [128, 100, 1])
def test_hand_written_critic_gradient_equals_autograd(activation: str, rows: int) -> None:
    from safe_trpo.algo.critics import SquaredErrorGrads

    critic = small_critic(activation, seed=rows)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(rows, 3, generator=gen)
    y = 5 * torch.randn(rows, generator=gen)
    loss = ((critic(x) - y) ** 2).mean()
    expected = torch.autograd.grad(loss, list(critic.parameters()))
    with torch.no_grad():
        error, grads = SquaredErrorGrads(critic)(x, y)
    torch.testing.assert_close(error.squeeze(-1), critic(x).detach() - y, rtol=0, atol=0)
    for g, e, p in zip(grads, expected, critic.parameters(), strict=True):
        assert g.shape == p.shape and g.stride() == p.stride()  # the parameter's order
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-7)


def test_hand_written_critic_gradient_equals_autograd_with_torch_tanh() -> None:
    # Against the textbook network (torch's own nn.Tanh): the only difference is numpy's tanh,
    # 1 ulp at most, so the gradients agree to float32 rounding.
    from safe_trpo.algo.critics import SquaredErrorGrads

    critic = small_critic("tanh", seed=3)
    reference = torch.nn.Sequential(*[torch.nn.Tanh() if isinstance(m, torch.nn.Tanh) else m
                                      for m in critic.net])
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(128, 3, generator=gen), 5 * torch.randn(128, 1, generator=gen)
    expected = torch.autograd.grad(((reference(x) - y) ** 2).mean(), list(critic.parameters()))
    with torch.no_grad():
        _, grads = SquaredErrorGrads(critic)(x, y)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_adam_stepper_is_bit_for_bit_the_optimiser_step(fused: bool) -> None:
    from safe_trpo.algo.critics import AdamStepper

    ours, reference = small_critic("tanh", seed=0), small_critic("tanh", seed=0)
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-3, fused=fused)
    opt_ref = torch.optim.Adam(reference.parameters(), lr=1e-3, fused=fused)
    stepper = AdamStepper(opt_ours, list(ours.parameters()))
    gen = torch.Generator().manual_seed(5)
    for _ in range(6):
        grads = [torch.randn(p.shape, generator=gen) for p in ours.parameters()]
        stepper.step(grads)
        for p, g in zip(reference.parameters(), grads, strict=True):
            p.grad = g.clone()
        opt_ref.step()
    for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_ours.state[p][key], opt_ref.state[q][key])


def test_fit_critics_equals_the_autograd_training_loop() -> None:
    from types import SimpleNamespace

    from safe_trpo.algo.learn import fit_critics

    def make_state():
        critics = torch.nn.ModuleList([small_critic("tanh", seed=7), small_critic("tanh", seed=8)])
        optim = torch.optim.Adam(critics.parameters(), lr=1e-3, fused=True)
        return SimpleNamespace(critics=critics, critic_optim=optim,
                               rng=np.random.default_rng(0))

    gen = torch.Generator().manual_seed(3)
    obs, targets = torch.randn(300, 3, generator=gen), 3 * torch.randn(2, 300, generator=gen)
    ours, reference = make_state(), make_state()
    losses = fit_critics(ours, obs, targets, epochs=3, minibatch=128)
    for _ in range(3):  # the loop fit_critics replaces: autograd and Optimizer.step
        order = torch.from_numpy(reference.rng.permutation(300))
        last = torch.zeros(2)
        for start in range(0, 300, 128):
            idx = order[start:start + 128]
            per_critic = torch.stack([((c(obs[idx]) - targets[k, idx]) ** 2).mean()
                                      for k, c in enumerate(reference.critics)])
            reference.critic_optim.zero_grad()
            per_critic.sum().backward()
            reference.critic_optim.step()
            last += per_critic.detach() * len(idx) / 300
    for p, q in zip(ours.critics.parameters(), reference.critics.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses, last.numpy(), rtol=1e-5)


def test_fit_critics_leaves_an_optimiser_usable_outside_inference_mode() -> None:
    # fit_critics runs under torch.inference_mode; the Adam state it creates is checkpointed
    # and must stay an ordinary tensor that a later step anywhere may update in place.
    from types import SimpleNamespace

    from safe_trpo.algo.learn import fit_critics

    critics = torch.nn.ModuleList([small_critic("tanh", seed=1)])
    optim = torch.optim.Adam(critics.parameters(), lr=1e-3, fused=True)
    state = SimpleNamespace(critics=critics, critic_optim=optim, rng=np.random.default_rng(0))
    fit_critics(state, torch.randn(300, 3), torch.randn(1, 300), epochs=2, minibatch=128)
    assert optim.state and not any(t.is_inference() for per_param in optim.state.values()
                                   for t in per_param.values())
    for p in critics.parameters():
        assert not p.is_inference()
        p.grad = torch.ones_like(p)
    optim.step()  # raises for an inference tensor updated outside inference mode
