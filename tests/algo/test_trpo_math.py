"""Tier 1: the TRPO building blocks against exact references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.func import functional_call

from safe_trpo.algo.networks import make_policy
from safe_trpo.algo.rollout import gae
from safe_trpo.algo.trpo import (
    PolicyBatch,
    cg_solve,
    conjugate_gradient,
    fisher_vector_product,
    flat_params,
    line_search,
    mean_kl,
    per_sample_hessian,
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


def test_cg_quadratic_form_equals_x_a_x_without_another_product() -> None:
    # TRPO's step length needs s^T H s; cg_solve gets it from its residual (A x = b - r).
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(40, 40, generator=gen, dtype=torch.float64)
    spd = a @ a.T + 0.1 * torch.eye(40, dtype=torch.float64)
    b = torch.randn(40, generator=gen, dtype=torch.float64)
    for iters in (3, 10, 60):  # far from converged, and converged
        solution = cg_solve(lambda v: spd @ v, b, iters, residual_tol=0.0)
        exact = float(solution.x @ spd @ solution.x)
        assert solution.quadratic_form(b) == pytest.approx(exact, rel=1e-9)


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


@pytest.mark.parametrize("discrete", [False, True])
def test_per_sample_hessian_matches_the_full_hessian(discrete: bool) -> None:
    # The KL's Hessian in the distribution's parameters as one block per sample, against the
    # explicit Hessian over every sample's parameters at once (zero off the diagonal blocks).
    policy, batch = _tiny_batch(discrete)
    with torch.no_grad():  # a generic point, away from the old distribution
        z0 = [t + 0.1 for t in policy.dist_params(policy.distribution(batch.obs))]
    widths = [t.shape[1] for t in z0]
    rows, d = z0[0].shape[0], sum(widths)

    def kl_of(flat: torch.Tensor) -> torch.Tensor:
        parts = flat.view(rows, d).split(widths, dim=1)
        return policy.kl(batch.old_dist, policy.dist_from_params(*parts)).mean()

    full = torch.autograd.functional.hessian(kl_of, torch.cat(z0, dim=1).reshape(-1))
    full = full.view(rows, d, rows, d)
    leaves = [t.clone().requires_grad_() for t in z0]
    kl = policy.kl(batch.old_dist, policy.dist_from_params(*leaves)).mean()
    blocks = per_sample_hessian(kl, leaves)
    assert blocks.shape == (rows, d, d)
    off_diagonal = full.clone()
    for i in range(rows):
        torch.testing.assert_close(blocks[i], full[i, :, i, :], rtol=1e-10, atol=1e-12)
        off_diagonal[i, :, i, :] = 0
    assert float(off_diagonal.abs().max()) == 0.0


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
    result = line_search(policy, batch, step, lambda kl: ("kl", 0.0), iters=5, coeff=0.5)
    assert not result.accepted and result.backtracks == 5 and result.kl == 0.0
    for p, q in zip(policy.parameters(), before, strict=True):
        assert torch.equal(p, q)


def test_trpo_step_accepted_kl_within_target_and_matches_measurement() -> None:
    accepted = 0
    for trial in range(6):
        policy, batch = _tiny_batch(discrete=bool(trial % 2))
        gen = torch.Generator().manual_seed(100 + trial)  # a different problem each trial
        adv = torch.randn(batch.obs.shape[0], dtype=torch.float64, generator=gen)
        target = 0.01
        result = trpo_step(policy, batch, adv, target, cg_iters=20, cg_damping=0.01,
                           backtrack_iters=10, backtrack_coeff=0.8)
        if not result.search.accepted:
            continue
        accepted += 1
        with torch.no_grad():  # measured afresh, not through any cache of the step
            fresh = float(policy.kl(batch.old_dist, policy.distribution(batch.obs)).mean())
        assert 0 < result.search.kl <= target
        assert result.search.kl == pytest.approx(fresh, rel=1e-10)
        assert result.search.improvement > 0
    assert accepted >= 4


def test_set_flat_params_round_trip() -> None:
    policy, _ = _tiny_batch(discrete=False)
    flat = flat_params(policy).clone()
    set_flat_params(policy, flat * 2)
    torch.testing.assert_close(flat_params(policy), flat * 2)


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
    policy, batch = _tiny_batch(discrete)
    with torch.no_grad():
        actions, log_probs = policy.sample(batch.obs)
        expected = policy.log_prob(policy.distribution(batch.obs), actions)
    torch.testing.assert_close(log_probs, expected, rtol=1e-10, atol=1e-10)


# --- Fast paths (numpy tanh, hand-written critic backward, direct Adam kernel, rollout) ---
# Each is checked against the straightforward torch computation it replaces.


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


def _critic(activation: str, seed: int):
    from safe_trpo.algo.networks import ValueNet

    torch.manual_seed(seed)
    critic = ValueNet(3, [16, 8], activation)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(0.2 * torch.randn_like(p))  # generic weights, non-zero biases
        critic.out_std.fill_(1.0)  # identity output scale: V = net (what the fit trains)
    return critic


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("rows", [128, 100, 1])
def test_hand_written_critic_gradient_equals_autograd(activation: str, rows: int) -> None:
    from safe_trpo.algo.critics import SquaredErrorGrads

    critic = _critic(activation, seed=rows)
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

    critic = _critic("tanh", seed=3)
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

    ours, reference = _critic("tanh", seed=0), _critic("tanh", seed=0)
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
        critics = torch.nn.ModuleList([_critic("tanh", seed=7), _critic("tanh", seed=8)])
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

    critics = torch.nn.ModuleList([_critic("tanh", seed=1)])
    optim = torch.optim.Adam(critics.parameters(), lr=1e-3, fused=True)
    state = SimpleNamespace(critics=critics, critic_optim=optim, rng=np.random.default_rng(0))
    fit_critics(state, torch.randn(300, 3), torch.randn(1, 300), epochs=2, minibatch=128)
    assert optim.state and not any(t.is_inference() for per_param in optim.state.values()
                                   for t in per_param.values())
    for p in critics.parameters():
        assert not p.is_inference()
        p.grad = torch.ones_like(p)
    optim.step()  # raises for an inference tensor updated outside inference mode


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_function_matches_the_module(activation: str) -> None:
    from safe_trpo.algo.networks import mlp_function

    net = _critic(activation, seed=4).net
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


@pytest.mark.parametrize("discrete", [False, True])
def test_rollout_sampler_draws_like_sample_with_its_log_probs(discrete: bool) -> None:
    policy, batch = _tiny_batch(discrete)
    policy = policy.float()
    obs = batch.obs.float()
    torch.manual_seed(11)
    with torch.no_grad():
        expected_actions, expected_logp = policy.sample(obs)
    torch.manual_seed(11)
    actions, aux = policy.rollout_sampler()(obs.numpy())
    logp = policy.log_prob_from_aux(torch.from_numpy(actions), torch.from_numpy(aux))
    if discrete:
        assert np.array_equal(actions, expected_actions.numpy())
    else:
        np.testing.assert_allclose(actions, expected_actions.numpy(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logp.detach(), expected_logp, rtol=1e-5, atol=1e-5)
    # ... and they are the policy's own density at the drawn actions.
    with torch.no_grad():
        density = policy.log_prob(policy.distribution(obs), torch.from_numpy(actions))
    torch.testing.assert_close(logp.detach(), density, rtol=1e-4, atol=1e-4)


def test_rollout_sampler_draws_a_rollouts_noise_in_one_block() -> None:
    policy, batch = _tiny_batch(discrete=False)
    policy = policy.float()
    obs = batch.obs.float().numpy()
    torch.manual_seed(4)
    draw = policy.rollout_sampler(steps=3)
    draws = [draw(obs) for _ in range(4)]  # one call more than announced: a second block
    torch.manual_seed(4)
    first_block = torch.randn((3, *draws[0][1].shape)).numpy()
    second_block = torch.randn((3, *draws[0][1].shape)).numpy()
    for t in range(3):
        np.testing.assert_array_equal(draws[t][1], first_block[t])
    np.testing.assert_array_equal(draws[3][1], second_block[0])
    mean = policy.deterministic(batch.obs.float()).detach().numpy()
    std = policy.log_std.detach().exp().numpy()
    for action, eps in draws:
        np.testing.assert_allclose(action, mean + std * eps, rtol=1e-5, atol=1e-6)


def test_trial_distribution_is_recomputed_when_the_parameters_change() -> None:
    policy, batch = _tiny_batch(discrete=False)
    theta = flat_params(policy).clone()
    assert mean_kl(policy, batch) == 0.0
    set_flat_params(policy, theta * 1.1)
    with torch.no_grad():
        fresh = float(policy.kl(batch.old_dist, policy.distribution(batch.obs)).mean())
    assert mean_kl(policy, batch) == fresh > 0
    set_flat_params(policy, theta)
    assert mean_kl(policy, batch) == 0.0


def test_collect_buffers_are_consistent_with_the_env_and_the_policy() -> None:
    import gymnasium as gym

    from safe_trpo.algo.networks import ObsNormalizer
    from safe_trpo.algo.rollout import RolloutCollector

    envs = gym.make_vec("Pendulum-v1", num_envs=3, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    torch.manual_seed(0)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, [16],
                         "tanh", 0.0)
    norm = ObsNormalizer(3)
    norm.update(np.random.default_rng(0).normal(size=(50, 3)))
    collector = RolloutCollector(envs, [], seed=3)
    r = collector.collect(policy, norm, 250)  # every copy's episode ends at step 199
    envs.close()
    np.testing.assert_array_equal(r.obs, norm(r.raw_obs))
    assert r.done[199].all() and r.done.sum() == 3 and not r.terminated.any()
    continuing = ~r.done[:-1]
    np.testing.assert_array_equal(r.next_obs[:-1][continuing], r.obs[1:][continuing])
    # At the truncation, next_obs is the episode's last observation, not the reset one.
    assert not np.allclose(r.next_obs[199], r.obs[200])
    np.testing.assert_allclose(r.episode_returns, r.rewards[:200].sum(0), rtol=1e-12)
    assert r.episode_lengths == [200, 200, 200]
    with torch.no_grad():
        density = policy.log_prob(policy.distribution(torch.from_numpy(r.obs)),
                                  torch.from_numpy(r.actions))
    np.testing.assert_allclose(r.log_probs, density.numpy(), rtol=1e-4, atol=1e-4)


def test_native_pendulum_vector_env_follows_gymnasium_pendulum_step_by_step() -> None:
    import gymnasium as gym

    from envs.pendulum_vec import PendulumVectorEnv

    n, seed = 3, 5
    native = PendulumVectorEnv(num_envs=n)
    singles = [gym.make("Pendulum-v1") for _ in range(n)]
    obs, _ = native.reset(seed=seed)
    expected = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(singles)])
    np.testing.assert_allclose(obs, expected, rtol=0, atol=1e-6)
    rng = np.random.default_rng(0)
    resets = 0
    for _ in range(450):  # through two autoresets (time limit 200)
        actions = rng.uniform(-3, 3, size=(n, 1)).astype(np.float32)  # some beyond +-2
        obs, reward, terminated, truncated, info = native.step(actions)
        for i, env in enumerate(singles):
            o, r, term, trunc, _ = env.step(actions[i])
            assert (term, trunc) == (terminated[i], truncated[i])
            assert reward[i] == pytest.approx(r, rel=1e-6, abs=1e-6)
            if trunc:  # SAME_STEP autoreset: last observation in final_obs, then a new episode
                np.testing.assert_allclose(info["final_obs"][i], o, rtol=0, atol=1e-6)
                o, _ = env.reset()
                resets += 1
            np.testing.assert_allclose(obs[i], o, rtol=0, atol=1e-6)
    assert resets == 2 * n
    native.close()
