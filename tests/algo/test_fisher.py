"""Tier 1: the closed-form Fisher-vector product of a Gaussian MLP policy (algo/fisher.py)
against the explicit Hessian of the KL and against the generic autograd product."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces
from torch.distributions import Normal

from safe_trpo.algo.fisher import GaussianMLPFisher, gaussian_mlp_layers
from safe_trpo.algo.networks import make_policy
from safe_trpo.algo.trpo import (
    PolicyBatch,
    autograd_fisher_product,
    fisher_vector_product,
    flat_params,
)
from tests.algo.fixtures import explicit_kl_hessian, tiny_batch


def gaussian_batch(activation: str, hidden: list[int], act_dim: int, seed: int,
                   old_shift: float = 0.0) -> tuple[torch.nn.Module, PolicyBatch]:
    """A float64 Gaussian policy at a generic point and a 24-row batch drawn from it. With
    ``old_shift`` the batch's old distribution is not the policy's current one (as after the
    observation normaliser moved): its means and scales are moved away."""
    torch.manual_seed(seed)
    policy = make_policy(spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (act_dim,)), hidden,
                         activation, -0.4).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.4 * torch.randn_like(p))
    obs = torch.randn(24, 3, dtype=torch.float64)
    with torch.no_grad():
        dist = policy.distribution(obs)
        old = Normal(dist.loc + old_shift * torch.randn_like(dist.loc),
                     dist.scale * (1 + old_shift) * torch.ones_like(dist.loc))
        actions = old.sample()
        logp = old.log_prob(actions).sum(-1)
    return policy, PolicyBatch(policy, obs, actions, logp, old_dist=old)


@pytest.mark.parametrize(("activation", "hidden", "act_dim"),
                         [("tanh", [5], 2), ("tanh", [6, 4], 1), ("relu", [6, 5], 3),
                          ("tanh", [], 2)])
def test_closed_form_product_matches_explicit_kl_hessian(activation: str, hidden: list[int],
                                                         act_dim: int) -> None:
    policy, batch = gaussian_batch(activation, hidden, act_dim, seed=len(hidden) + act_dim)
    batch = PolicyBatch(policy, batch.obs, batch.actions, batch.old_log_probs)  # old = now
    product = fisher_vector_product(policy, batch, 0.05)
    assert isinstance(product, GaussianMLPFisher)  # the closed form, not the generic path
    hessian = explicit_kl_hessian(policy, batch)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        v = torch.randn(hessian.shape[0], generator=gen, dtype=torch.float64)
        torch.testing.assert_close(product(v), hessian @ v + 0.05 * v, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_closed_form_equals_generic_product_when_old_distribution_moved(activation: str
                                                                         ) -> None:
    # Old != current: K has its off-diagonal (mean, scale) terms, which a product that assumed
    # old = current would drop; the generic product (per-sample Hessian by autograd) has them.
    policy, batch = gaussian_batch(activation, [6, 5], 2, seed=3, old_shift=0.3)
    closed = fisher_vector_product(policy, batch, 0.1)
    generic = autograd_fisher_product(policy, batch, 0.1)
    gen = torch.Generator().manual_seed(11)
    for _ in range(3):
        v = torch.randn(flat_params(policy).numel(), generator=gen, dtype=torch.float64)
        torch.testing.assert_close(closed(v), generic(v), rtol=1e-9, atol=1e-12)
    # ... and the moved distribution matters: the same product with old = current differs.
    same = fisher_vector_product(policy, PolicyBatch(policy, batch.obs, batch.actions,
                                                     batch.old_log_probs), 0.1)
    assert float((same(v) - closed(v)).norm()) > 1e-3 * float(closed(v).norm())


def test_float32_product_agrees_with_generic_to_rounding() -> None:
    # The Pendulum benchmark's shape: input-major first layer (3 -> 64), float32.
    torch.manual_seed(0)
    policy = make_policy(spaces.Box(-1, 1, (3,)), spaces.Box(-2, 2, (1,)), [64, 64], "tanh",
                         0.0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
        obs = torch.randn(512, 3)
        dist = policy.distribution(obs)
        actions = dist.sample()
        batch = PolicyBatch(policy, obs, actions, policy.log_prob(dist, actions))
    v = torch.randn(flat_params(policy).numel())
    closed = fisher_vector_product(policy, batch, 0.1)(v)
    generic = autograd_fisher_product(policy, batch, 0.1)(v)
    assert float((closed - generic).norm() / generic.norm()) < 1e-5


def test_other_policies_take_the_generic_product() -> None:
    categorical, batch = tiny_batch(discrete=True)
    assert gaussian_mlp_layers(categorical) is None
    assert not isinstance(fisher_vector_product(categorical, batch, 0.1), GaussianMLPFisher)
    gaussian, _ = tiny_batch(discrete=False)
    gaussian.mean_net.append(torch.nn.Sigmoid())  # a layer the closed form does not know
    assert gaussian_mlp_layers(gaussian) is None
    with pytest.raises(TypeError, match="mean network"):
        GaussianMLPFisher(gaussian, batch.obs, batch.old_dist, 0.1)
