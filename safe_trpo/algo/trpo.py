"""The TRPO step: natural gradient by conjugate gradient on Fisher-vector products, step size
from the KL bound, and a backtracking line search on the measured KL.

Pure functions of (policy, batch, config); no I/O. With g the gradient of the surrogate
L(theta) = mean(pi_theta(a|s) / pi_old(a|s) * A) and H the Hessian of the mean KL(old || theta)
at theta_old (the Fisher matrix), the step is theta_old + beta * s with s = H^-1 g (by CG) and
beta = sqrt(2 delta / s^T H s), the largest step whose quadratic KL model equals delta. The line
search shrinks beta until the KL measured over the whole batch is <= delta and the surrogate
improves; if no try passes, the parameters are restored exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import Distribution

from safe_trpo.algo.fisher import GaussianMLPFisher, gaussian_mlp_layers
from safe_trpo.algo.networks import Policy


class PolicyBatch:
    """What a policy step needs: flattened samples and the old policy's distribution."""

    def __init__(self, policy: Policy, obs: torch.Tensor, actions: torch.Tensor,
                 old_log_probs: torch.Tensor, old_dist: Distribution | None = None) -> None:
        """``old_dist``: the distribution the actions were drawn from, when it is not the
        policy's current one on ``obs`` (the observation normaliser moved since the rollout:
        the audited KL then measures the whole change of behaviour, that move included)."""
        self.obs = obs
        self.actions = actions
        self.old_log_probs = old_log_probs
        if old_dist is None:
            with torch.no_grad():
                old_dist = policy.detach(policy.distribution(obs))
        self.old_dist: Distribution = old_dist
        self._trial: tuple[torch.Tensor, Distribution] | None = None

    @torch.no_grad()
    def trial_distribution(self, policy: Policy) -> Distribution:
        """The policy's distribution on ``obs`` at its current parameters, without a graph.

        A line-search try needs it more than once (the KL, then the surrogates in ``accept``).
        It is computed once per parameter vector, which is compared exactly, so a value from
        other parameters is never returned.
        """
        params = flat_params(policy)
        if self._trial is None or not torch.equal(self._trial[0], params):
            self._trial = (params, policy.distribution(self.obs))
        return self._trial[1]


def flat_params(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.data.reshape(-1) for p in module.parameters()])


def set_flat_params(module: nn.Module, flat: torch.Tensor) -> None:
    offset = 0
    for p in module.parameters():
        n = p.numel()
        p.data.copy_(flat[offset:offset + n].view_as(p))
        offset += n


def flat_grad(output: torch.Tensor, module: nn.Module, create_graph: bool = False,
              retain_graph: bool | None = None) -> torch.Tensor:
    grads = torch.autograd.grad(output, list(module.parameters()), create_graph=create_graph,
                                retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, module.parameters(), strict=True)])


class CGSolution(NamedTuple):
    """``x`` approximately solves A x = b; ``residual`` is b - A x as the iterations updated it."""

    x: torch.Tensor
    residual: torch.Tensor

    def quadratic_form(self, b: torch.Tensor) -> float:
        """x^T A x without another product with A: A x = b - residual. (The residual carries
        the iterations' rounding, about float32 epsilon relative; a product would too.)"""
        return float(self.x @ (b - self.residual))


def cg_solve(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int,
             residual_tol: float = 1e-10) -> CGSolution:
    """Solve A x = b for symmetric positive-definite A given only x -> A x.

    At most ``iters`` products with A; stops early once |residual|^2 <= ``residual_tol`` *
    |b|^2. The test is relative so the solve does not depend on the units of b: a cost
    gradient in micro-units is solved as accurately as one in units (an absolute test stopped
    at x = 0 for it, and its constraint looked unmovable).
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    stop = residual_tol * rr
    for _ in range(iters):
        if rr <= stop:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return CGSolution(x, r)


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       iters: int, residual_tol: float = 1e-10) -> torch.Tensor:
    """``cg_solve``'s x alone."""
    return cg_solve(matvec, b, iters, residual_tol).x


def fisher_vector_product(policy: Policy, batch: PolicyBatch, damping: float,
                          dist: Distribution | None = None
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H + damping I) v, H the Hessian of mean KL(old || theta) at theta = theta_old.

    A Gaussian policy with a Linear/Tanh or Linear/ReLU mean network gets the product in
    closed form (``fisher.GaussianMLPFisher``, about twice as fast); any other policy gets
    ``autograd_fisher_product``. The two agree to float rounding.
    """
    if gaussian_mlp_layers(policy) is not None:
        return GaussianMLPFisher(policy, batch.obs, batch.old_dist, damping)
    return autograd_fisher_product(policy, batch, damping, dist)


def autograd_fisher_product(policy: Policy, batch: PolicyBatch, damping: float,
                            dist: Distribution | None = None
                            ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fisher_vector_product`` for any policy, by autograd.

    Let z(theta) be the tensors the policy's distribution is built from (Gaussian mean and
    standard deviation, categorical logits), J = dz/dtheta and K = d^2 KL / dz^2. The chain
    rule gives H = J^T K J + sum_i (dKL/dz_i) d^2 z_i / dtheta^2, and at theta_old the second
    term vanishes exactly: KL(old || new) is smallest (zero) where new = old, so dKL/dz = 0
    there. Differentiating the KL's gradient once more through the whole network (the usual
    double backprop) would still spend a third of its matrix products on that zero term, so
    each product is taken in three parts, all by autograd (tests/algo/test_trpo_math.py checks the
    result against the explicit Hessian of the KL):

    - J v by double backprop: u -> J^T u is linear in u, and its derivative along v is J v;
    - K (J v): K is the KL's Hessian in z by double backprop, computed once per update. Each
      sample's KL depends on that sample's z only, so K is one small (d, d) block per sample,
      d the number of distribution parameters per sample (``per_sample_hessian``);
    - J^T (K J v) by one ordinary backward pass.

    The graphs are built once here and reused by every product. ``dist`` is the policy's
    distribution on ``batch.obs`` at the current parameters, with its graph, when the caller
    already has that forward pass; by default it is computed here.
    """
    if dist is None:
        dist = policy.distribution(batch.obs)
    params = list(policy.parameters())
    z = policy.dist_params(dist)
    z_leaf = [t.detach().requires_grad_() for t in z]
    kl = policy.kl(batch.old_dist, policy.dist_from_params(*z_leaf)).mean()
    kl_hessian_z = per_sample_hessian(kl, z_leaf)  # (B, d, d)
    widths = [t.shape[1] for t in z]
    probe = [torch.zeros_like(t, requires_grad=True) for t in z]  # the u of J^T u
    # Each vector-Jacobian product is the gradient of a scalar, sum(output * vector), rather
    # than autograd.grad(..., grad_outputs=vector): the same product (to float32 rounding: the
    # engine may sum the parts in another order), and torch's first call with tensor
    # grad_outputs imports sympy (about a second of every run's start-up).
    jt_probe = torch.autograd.grad(_dot(z, probe), params, create_graph=True)
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def product(v: torch.Tensor) -> torch.Tensor:
        v_parts = [part.view(shape) for part, shape in zip(v.split(sizes), shapes, strict=True)]
        jv = torch.cat(torch.autograd.grad(_dot(jt_probe, v_parts), probe, retain_graph=True),
                       dim=1)
        kjv = torch.bmm(kl_hessian_z, jv.unsqueeze(-1)).squeeze(-1).split(widths, dim=1)
        hv = torch.autograd.grad(_dot(z, kjv), params, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]) + damping * v

    return product


def _dot(outputs: list[torch.Tensor] | tuple[torch.Tensor, ...],
         vectors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """sum_k <outputs_k, vectors_k>: its gradient is the vector-Jacobian product."""
    return sum((o * v).sum() for o, v in zip(outputs, vectors, strict=True))


def per_sample_hessian(loss: torch.Tensor, z: list[torch.Tensor]) -> torch.Tensor:
    """The Hessian of ``loss`` in ``z`` as one (d, d) block per sample: shape (B, d, d).

    ``z`` are leaf tensors of shape (B, d_k), d = sum of the d_k, and ``loss`` must be a sum
    of per-sample terms each depending only on its own row of every z_k (the mean KL over a
    batch is). Then the Hessian is block-diagonal over samples, and one double-backprop pass
    along "coordinate j of every sample at once" gives column j of every block: d passes.
    """
    if any(t.dim() != 2 or t.shape[0] != z[0].shape[0] for t in z):
        raise ValueError("per_sample_hessian: every z must have shape (batch, d_k)")
    grads = torch.autograd.grad(loss, z, create_graph=True)
    columns = []
    for k, t in enumerate(z):
        for j in range(t.shape[1]):
            direction = [torch.zeros_like(u) for u in z]
            direction[k][:, j] = 1.0
            # A scalar's gradient, as in fisher_vector_product (see there on grad_outputs).
            column = torch.autograd.grad(_dot(grads, direction), z, retain_graph=True,
                                         allow_unused=True)
            columns.append(torch.cat([torch.zeros_like(u) if c is None else c
                                      for c, u in zip(column, z, strict=True)], dim=1))
    return torch.stack(columns, dim=2)


def surrogate(policy: Policy, batch: PolicyBatch, advantages: torch.Tensor,
              dist: Distribution | None = None) -> torch.Tensor:
    """mean(ratio * A): its gradient at theta_old is the policy gradient.

    ``dist`` as in ``fisher_vector_product``. Without it, a call under ``torch.no_grad()`` (a
    line-search try) reuses ``batch.trial_distribution``, shared with ``mean_kl``.
    """
    if dist is None:
        dist = (policy.distribution(batch.obs) if torch.is_grad_enabled()
                else batch.trial_distribution(policy))
    log_probs = policy.log_prob(dist, batch.actions)
    return (torch.exp(log_probs - batch.old_log_probs) * advantages).mean()


@torch.no_grad()
def mean_kl(policy: Policy, batch: PolicyBatch) -> float:
    """Mean KL(old || current) over the whole batch: the audited figure."""
    return float(policy.kl(batch.old_dist, batch.trial_distribution(policy)).mean())


# Why a line search rejected its step (the test the last, smallest try failed):
# "non-finite" (KL or a surrogate was NaN/inf), "kl" (measured KL above the target), "cost" (a
# cost surrogate rose by more than its allowed change), "reward" (the reward surrogate did not
# improve when it had to); "no-step" when no step was tried (zero or unusable direction, failed
# CPO solve: ``step_skipped`` / the CPO solver status says which).
REJECT_REASONS = ("non-finite", "kl", "cost", "reward", "no-step")


@dataclass(frozen=True)
class LineSearchResult:
    accepted: bool
    backtracks: int  # tries rejected before the accepted one (all tries if none accepted)
    step_fraction: float  # fraction of the full step applied (0 if rejected)
    kl: float  # KL after the applied step (0 if rejected: the old policy is kept)
    improvement: float  # surrogate improvement of the applied step
    reason: str | None = None  # None if accepted, else one of REJECT_REASONS


def no_step() -> LineSearchResult:
    """The result when no step was tried at all."""
    return LineSearchResult(False, 0, 0.0, 0.0, 0.0, "no-step")


def line_search(policy: Policy, batch: PolicyBatch, full_step: torch.Tensor,
                accept: Callable[[float], tuple[str | None, float]], iters: int, coeff: float
                ) -> LineSearchResult:
    """Try theta_old + coeff^k * full_step for k = 0..iters-1; keep the first accepted.

    ``accept(kl)`` is evaluated with the trial parameters in place and returns
    (None if the try is accepted else the reason it is not, surrogate improvement). On failure
    the old parameters are copied back, so the policy is bit-for-bit what it was, and the
    result's ``reason`` is the last try's.
    """
    old = flat_params(policy).clone()
    reason = "no-step"
    for k in range(iters):
        fraction = coeff**k
        set_flat_params(policy, old + fraction * full_step)
        kl = mean_kl(policy, batch)
        reason, improvement = accept(kl)
        if reason is None:
            return LineSearchResult(True, k, fraction, kl, improvement)
    set_flat_params(policy, old)
    return LineSearchResult(False, iters, 0.0, 0.0, 0.0, reason)


def rejection(kl: float, target_kl: float, improvement: float, require_improvement: bool,
              cost_ok: bool = True, finite: bool = True) -> str | None:
    """Why a line-search try fails (None: it passes), tests in the order of REJECT_REASONS."""
    if not (finite and math.isfinite(kl) and math.isfinite(improvement)):
        return "non-finite"
    if not kl <= target_kl:
        return "kl"
    if not cost_ok:
        return "cost"
    if require_improvement and not improvement > 0:
        return "reward"
    return None


@dataclass(frozen=True)
class TrpoStepResult:
    search: LineSearchResult
    expected_improvement: float  # g^T (full step): first-order prediction
    skipped: str | None = None  # why no step was tried (flat or broken search direction)


def trpo_step(policy: Policy, batch: PolicyBatch, advantages: torch.Tensor, target_kl: float,
              cg_iters: int, cg_damping: float, backtrack_iters: int, backtrack_coeff: float
              ) -> TrpoStepResult:
    """One TRPO update of ``policy`` in place; see the module docstring for the math."""
    dist = policy.distribution(batch.obs)  # one forward pass serves g and the Fisher
    loss_old = surrogate(policy, batch, advantages, dist)
    g = flat_grad(loss_old, policy, retain_graph=True)
    loss_old = float(loss_old.detach())
    fvp = fisher_vector_product(policy, batch, cg_damping, dist)
    solution = cg_solve(fvp, g, cg_iters)
    direction, shs = solution.x, solution.quadratic_form(g)
    if not (shs > 0 and torch.isfinite(direction).all()):
        # g = 0 or a numerically broken direction: no step is the only safe step; say so.
        none = no_step()
        reason = ("zero policy gradient" if float(g.norm()) == 0 else
                  f"conjugate gradient gave no usable direction (s^T H s = {shs:.3g})")
        return TrpoStepResult(none, 0.0, reason)
    full_step = (2 * target_kl / shs) ** 0.5 * direction

    def accept(kl: float) -> tuple[str | None, float]:
        with torch.no_grad():
            improvement = float(surrogate(policy, batch, advantages)) - loss_old
        return rejection(kl, target_kl, improvement, require_improvement=True), improvement

    search = line_search(policy, batch, full_step, accept, backtrack_iters, backtrack_coeff)
    return TrpoStepResult(search, float(g @ full_step))
