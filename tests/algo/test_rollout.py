"""Tier 1: rollouts (GAE, the collector's buffers, the rollout sampler) against exact references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safe_trpo.algo.networks import make_policy
from safe_trpo.algo.rollout import gae
from tests.algo.fixtures import tiny_batch


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


@pytest.mark.parametrize("discrete", [False, True])
def test_rollout_sampler_draws_like_sample_with_its_log_probs(discrete: bool) -> None:
    policy, batch = tiny_batch(discrete)
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
    policy, batch = tiny_batch(discrete=False)
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
