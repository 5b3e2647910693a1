"""Tier 1: the TRPO step (CG, Fisher-vector product, line search) against exact references."""

from __future__ import annotations

import pytest
import torch

from safe_trpo.algo.trpo import (
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
from tests.algo.fixtures import explicit_kl_hessian, tiny_batch


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


@pytest.mark.parametrize("discrete", [False, True])
def test_fisher_vector_product_matches_explicit_kl_hessian(discrete: bool) -> None:
    policy, batch = tiny_batch(discrete)
    hessian = explicit_kl_hessian(policy, batch)
    damping = 0.05
    fvp = fisher_vector_product(policy, batch, damping)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(hessian.shape[0], generator=gen, dtype=torch.float64)
        torch.testing.assert_close(fvp(v), hessian @ v + damping * v, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("discrete", [False, True])
def test_per_sample_hessian_matches_the_full_hessian(discrete: bool) -> None:
    # The KL's Hessian in the distribution's parameters as one block per sample, against the
    # explicit Hessian over every sample's parameters at once (zero off the diagonal blocks).
    policy, batch = tiny_batch(discrete)
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


def test_line_search_restores_parameters_bit_for_bit_on_failure() -> None:
    policy, batch = tiny_batch(discrete=False)
    before = [p.detach().clone() for p in policy.parameters()]
    step = torch.randn(flat_params(policy).numel(), dtype=torch.float64)
    result = line_search(policy, batch, step, lambda kl: ("kl", 0.0), iters=5, coeff=0.5)
    assert not result.accepted and result.backtracks == 5 and result.kl == 0.0
    for p, q in zip(policy.parameters(), before, strict=True):
        assert torch.equal(p, q)


def test_trpo_step_accepted_kl_within_target_and_matches_measurement() -> None:
    accepted = 0
    for trial in range(6):
        policy, batch = tiny_batch(discrete=bool(trial % 2))
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
    policy, _ = tiny_batch(discrete=False)
    flat = flat_params(policy).clone()
    set_flat_params(policy, flat * 2)
    torch.testing.assert_close(flat_params(policy), flat * 2)


def test_trial_distribution_is_recomputed_when_the_parameters_change() -> None:
    policy, batch = tiny_batch(discrete=False)
    theta = flat_params(policy).clone()
    assert mean_kl(policy, batch) == 0.0
    set_flat_params(policy, theta * 1.1)
    with torch.no_grad():
        fresh = float(policy.kl(batch.old_dist, policy.distribution(batch.obs)).mean())
    assert mean_kl(policy, batch) == fresh > 0
    set_flat_params(policy, theta)
    assert mean_kl(policy, batch) == 0.0
