"""Shared helpers for the algorithm tests.

- a tiny policy batch and a small critic for the TRPO, network and critic tests, and the
  explicit Hessian of a batch's mean KL (the reference for Fisher-vector products);
- for the CPO solver tests, random instances and independent references: the primal problems in
  full dimension, each a direct cvxpy solve with an explicit SPD H, refined by Newton's method on
  its own KKT system (a raw interior-point point is only accurate to about the square root of
  the solver tolerance, ~1e-5, too coarse for a 1e-6 comparison). Nothing here uses the Gram
  subspace, the dual or the normalisation of `safe_trpo.algo.cpo`.
"""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import torch
from gymnasium import spaces
from torch.distributions import Categorical, Distribution, Normal
from torch.func import functional_call

from safe_trpo.algo.cpo import solve_step
from safe_trpo.algo.networks import make_policy
from safe_trpo.algo.trpo import PolicyBatch


def tiny_batch(discrete: bool) -> tuple[torch.nn.Module, PolicyBatch]:
    """A seeded 4-unit policy at a generic point and a 16-row batch drawn from it."""
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


def explicit_kl_hessian(policy: torch.nn.Module, batch: PolicyBatch) -> torch.Tensor:
    """The Hessian of the mean KL(batch.old_dist || policy) over the policy's flat
    parameters, at their current values, by ``torch.autograd.functional.hessian``."""
    theta0 = torch.cat([p.detach().reshape(-1) for p in policy.parameters()])
    shapes = [(name, p.shape, p.numel()) for name, p in policy.named_parameters()]

    def kl_of(theta: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape, n in shapes:
            params[name] = theta[offset:offset + n].view(shape)
            offset += n
        return policy.kl(batch.old_dist, distribution_with(policy, params, batch.obs)).mean()

    return torch.autograd.functional.hessian(kl_of, theta0)


def distribution_with(policy: torch.nn.Module, params: dict, obs: torch.Tensor
                      ) -> Distribution:
    """The policy's distribution with parameters taken from ``params`` (for autograd)."""
    if hasattr(policy, "mean_net"):
        sub = {k.removeprefix("mean_net."): v for k, v in params.items() if k != "log_std"}
        mean = functional_call(policy.mean_net, sub, (obs,))
        return Normal(mean, params["log_std"].exp())
    sub = {k.removeprefix("logits_net."): v for k, v in params.items()}
    return Categorical(logits=functional_call(policy.logits_net, sub, (obs,)))


def small_critic(activation: str, seed: int) -> torch.nn.Module:
    """A seeded 3-16-8-1 ValueNet with generic weights and non-zero biases."""
    from safe_trpo.algo.networks import ValueNet

    torch.manual_seed(seed)
    critic = ValueNet(3, [16, 8], activation)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(0.2 * torch.randn_like(p))  # generic weights, non-zero biases
        critic.out_std.fill_(1.0)  # identity output scale: V = net (what the fit trains)
    return critic


# --- CPO solver: instances and the independent primal references ---


def gram(H, g, B):
    """The Gram quantities q, r, S of CPO's subproblem, and H^-1 g, H^-1 B."""
    Hg, HB = np.linalg.solve(H, g), np.linalg.solve(H, B)
    return g @ Hg, B.T @ Hg, B.T @ HB, Hg, HB


def exact_step(H, g, B, c, delta):
    """solve_step on exact Gram quantities, mapped back as the trainer will: x = a H^-1 g + ..."""
    q, r, S, Hg, HB = gram(H, g, B)
    st = solve_step(q, r, S, c, delta)
    return st, st.alpha * Hg + HB @ st.beta


def random_instance(rng, m, c_hat_low=-1.3, c_hat_high=1.5):
    """Random SPD H (n = 6..15), g, B with random scales, c in units of the trust-region reach."""
    n = int(rng.integers(6, 16))
    M = rng.normal(size=(n, n))
    H = M @ M.T / n + 0.1 * np.eye(n)
    g = rng.normal(size=n) * 10 ** rng.uniform(-1.5, 1.5)
    B = rng.normal(size=(n, m)) * 10 ** rng.uniform(-1.5, 1.5, size=m)
    delta = float(rng.uniform(0.002, 0.05))
    reach = np.sqrt(2 * delta * np.diag(B.T @ np.linalg.solve(H, B)))
    c = rng.uniform(c_hat_low, c_hat_high, size=m) * reach
    return H, g, B, c, delta


def rel_error(x, ref):
    """||x - ref|| / ||ref||."""
    return np.linalg.norm(x - ref) / np.linalg.norm(ref)


def reference(f, Q, A, a, delta, refine=True):
    """min f^T z s.t. A z + a <= 0, 1/2 z^T Q z <= delta: cvxpy in full dimension + Newton.

    Returns None when cvxpy finds the problem infeasible, else the refined z (the raw cvxpy z
    when not `refine`: where the minimiser is not unique and only its value is compared). Newton
    solves the KKT equations on the active set cvxpy found (the trust region binding); the result
    is checked (multiplier signs, feasibility, closeness to the raw point) so it cannot pass
    silently.
    """
    z = cp.Variable(f.size)
    quad = 0.5 * cp.quad_form(z, cp.psd_wrap(Q)) <= delta
    lin = A @ z + a <= 0
    problem = cp.Problem(cp.Minimize(f @ z), [quad, lin])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    if problem.status == cp.INFEASIBLE:
        return None
    assert problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE), problem.status
    raw, y = z.value.copy(), np.asarray(lin.dual_value, float)
    mu = float(np.squeeze(quad.dual_value))
    if not refine:
        return raw
    act = y > 1e-5 * max(mu, y.max(initial=0.0), 1e-12)
    zz, ya, k = raw.copy(), y[act], int(act.sum())
    Aa = A[act]
    for _ in range(30):
        Qz = Q @ zz
        F = np.concatenate([f + mu * Qz + Aa.T @ ya, Aa @ zz + a[act], [0.5 * zz @ Qz - delta]])
        J = np.block([
            [mu * Q, Aa.T, Qz[:, None]],
            [Aa, np.zeros((k, k)), np.zeros((k, 1))],
            [Qz[None, :], np.zeros((1, k)), np.zeros((1, 1))],
        ])
        d = np.linalg.lstsq(J, -F, rcond=None)[0]
        zz, ya, mu = zz + d[: f.size], ya + d[f.size: f.size + k], mu + d[-1]
        if np.linalg.norm(d) <= 1e-15 * (1 + np.linalg.norm(zz)):
            break
    assert mu > 0 and np.all(ya >= -1e-9)
    assert np.all(A @ zz + a <= 1e-9 * (1 + np.abs(a)))
    assert np.linalg.norm(zz - raw) <= 1e-3 * np.linalg.norm(raw)
    return zz


def primal(H, g, B, c, delta):
    """The CPO primal max g^T x s.t. 1/2 x^T H x <= delta, B^T x + c <= 0 (None: infeasible)."""
    return reference(-g, H, B.T, c, delta)


def min_max(H, B, c, delta, refine=True):
    """The recovery primal: min_x max_i (b_i^T x + c_i) / reach_i s.t. 1/2 x^T H x <= delta."""
    n, m = B.shape
    reach = np.sqrt(2 * delta * np.diag(B.T @ np.linalg.solve(H, B)))
    Q = np.zeros((n + 1, n + 1))
    Q[:n, :n] = H
    A = np.hstack([B.T / reach[:, None], -np.ones((m, 1))])
    z = reference(np.eye(n + 1)[n], Q, A, c / reach, delta, refine)
    return z[:n], z[n]
