"""Tier 1: the critic fit (hand-written backward, direct Adam step) against autograd."""

from __future__ import annotations

import functools

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
def test_adam_stepper_is_bit_for_bit_the_optimiser_step(fused: bool, monkeypatch) -> None:
    # CriticAdam against torch.optim.Adam: through the fused kernel, bit for bit with
    # Adam(fused=True); through the textbook fallback, against the single-tensor Adam.
    from safe_trpo.algo import adam
    from safe_trpo.algo.adam import CriticAdam

    if not fused:
        monkeypatch.setattr(adam, "fused_kernel_works", lambda: False)
    assert adam.fused_kernel_works() is fused  # the kernel is there on this torch
    ours, reference = small_critic("tanh", seed=0), small_critic("tanh", seed=0)
    opt_ours = CriticAdam(list(ours.parameters()), lr=1e-3)
    opt_ref = torch.optim.Adam(reference.parameters(), lr=1e-3, fused=fused, foreach=False)
    gen = torch.Generator().manual_seed(5)
    for _ in range(6):
        grads = [torch.randn(p.shape, generator=gen) for p in ours.parameters()]
        with torch.inference_mode():  # as fit_critics steps it
            opt_ours.step(grads)
        for p, g in zip(reference.parameters(), grads, strict=True):
            p.grad = g.clone()
        opt_ref.step()
    same = torch.equal if fused else functools.partial(torch.testing.assert_close, rtol=1e-6,
                                                       atol=1e-9)
    for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
        assert same(p, q) in (True, None)
    ours_state, ref_state = opt_ours.state_dict(), opt_ref.state_dict()
    assert ours_state["param_groups"][0]["params"] == ref_state["param_groups"][0]["params"]
    for k, entry in ref_state["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert same(ours_state["state"][k][key], entry[key]) in (True, None)


def test_critic_adam_and_torch_adam_load_each_others_state() -> None:
    from safe_trpo.algo.adam import CriticAdam

    nets = [small_critic("tanh", seed=2) for _ in range(3)]
    torch_adam = torch.optim.Adam(nets[0].parameters(), lr=3e-4, fused=True)
    ours = CriticAdam(list(nets[1].parameters()), lr=1e-3)  # lr comes from the saved state
    gen = torch.Generator().manual_seed(9)
    steps = [[torch.randn(p.shape, generator=gen) for p in nets[0].parameters()]
             for _ in range(4)]
    for grads in steps[:2]:
        for p, g in zip(nets[0].parameters(), grads, strict=True):
            p.grad = g.clone()
        torch_adam.step()
    with torch.no_grad():
        for p, q in zip(nets[1].parameters(), nets[0].parameters(), strict=True):
            p.copy_(q)
    ours.load_state_dict(torch_adam.state_dict())
    assert ours.lr == 3e-4
    back = torch.optim.Adam(nets[2].parameters(), lr=1.0, fused=True)
    for grads in steps[2:]:
        ours.step(grads)
        for p, g in zip(nets[0].parameters(), grads, strict=True):
            p.grad = g.clone()
        torch_adam.step()
    back.load_state_dict(ours.state_dict())
    assert back.param_groups[0]["lr"] == 3e-4
    for p, q in zip(nets[1].parameters(), nets[0].parameters(), strict=True):
        assert torch.equal(p, q)
    for k, entry in torch_adam.state_dict()["state"].items():
        assert all(torch.equal(back.state_dict()["state"][k][key], entry[key])
                   for key in ("exp_avg", "exp_avg_sq", "step"))
    other = CriticAdam(list(small_critic("relu", seed=0).net[0].parameters()), lr=1e-3)
    with pytest.raises(RuntimeError, match="parameters"):
        other.load_state_dict(ours.state_dict())


def test_fit_critics_equals_the_autograd_training_loop() -> None:
    from types import SimpleNamespace

    from safe_trpo.algo.adam import CriticAdam
    from safe_trpo.algo.learn import fit_critics

    def make_state(ours: bool):
        critics = torch.nn.ModuleList([small_critic("tanh", seed=7), small_critic("tanh", seed=8)])
        optim = (CriticAdam(list(critics.parameters()), lr=1e-3) if ours
                 else torch.optim.Adam(critics.parameters(), lr=1e-3, fused=True))
        return SimpleNamespace(critics=critics, critic_optim=optim,
                               rng=np.random.default_rng(0))

    gen = torch.Generator().manual_seed(3)
    obs, targets = torch.randn(300, 3, generator=gen), 3 * torch.randn(2, 300, generator=gen)
    ours, reference = make_state(True), make_state(False)
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
    # fit_critics runs under torch.inference_mode; the Adam state is checkpointed and must stay
    # ordinary tensors that a later step anywhere may update in place.
    from types import SimpleNamespace

    from safe_trpo.algo.adam import CriticAdam
    from safe_trpo.algo.learn import fit_critics

    critics = torch.nn.ModuleList([small_critic("tanh", seed=1)])
    optim = CriticAdam(list(critics.parameters()), lr=1e-3)
    state = SimpleNamespace(critics=critics, critic_optim=optim, rng=np.random.default_rng(0))
    fit_critics(state, torch.randn(300, 3), torch.randn(1, 300), epochs=2, minibatch=128)
    saved = optim.state_dict()["state"]
    assert float(saved[0]["step"]) == 6  # 2 epochs of 3 minibatches
    assert not any(t.is_inference() for per_param in saved.values() for t in per_param.values())
    assert not any(t.is_inference() for t in optim.exp_avgs + optim.exp_avg_sqs + optim.steps)
    for p in critics.parameters():
        assert not p.is_inference()
    optim.step([torch.ones_like(p) for p in critics.parameters()])  # outside inference mode
    reloaded = torch.optim.Adam(critics.parameters(), lr=1e-3, fused=True)
    reloaded.load_state_dict(optim.state_dict())
    for p in critics.parameters():
        p.grad = torch.ones_like(p)
    reloaded.step()  # raises for an inference tensor updated outside inference mode
