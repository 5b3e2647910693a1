"""Exact refinement ("polish") of the CPO solver's answers, in `algo.cpo`'s normalised units.

An interior-point solution is accurate to about the square root of the solver tolerance (~1e-4
at Clarabel's default 1e-8): both problems are flat at their optimum, so a small error in the
objective is a large one in the point. Once the solver has said which constraints bind, the
optimum solves linear equations plus one quadratic (the trust-region boundary), so it is
recomputed exactly and kept only if it passes the KKT conditions (which make it the global
optimum of these convex problems). The binding set is read from the solver's multipliers at a
few thresholds, and a constraint the candidate violates is added to it (a weakly binding
constraint has a multiplier near zero). When no candidate passes, the caller keeps the solver's
answer.

Notation: ``gram`` is the normalised Gram matrix (unit diagonal where the gradient is nonzero)
and a step is a coefficient vector z, y = sum_j z_j H^-1 v_j over the normalised gradients v_j.
"""

from __future__ import annotations

import numpy as np

_ACTIVE_THRESHOLDS = (1e-4, 1e-6, 1e-2)
_KKT_TOL = 1e-9
_FLAT_TOL = 1e-12  # z1^T G z1 below this: the objective does not change along z1
# On a (numerically) flat face nu comes from a near-singular system and carries ~sqrt(_FLAT_TOL)
# of noise: a sign check tighter than that would reject the right face.
_FLAT_NU_TOL = 1e-6


def _boundary_root(gram: np.ndarray, z0: np.ndarray, z1: np.ndarray, larger: bool) -> float:
    """The root t of (z0 + t z1)^T gram (z0 + t z1) = 1 (NaN if none): the trust-region edge."""
    a, b, c0 = z1 @ gram @ z1, z1 @ gram @ z0, z0 @ gram @ z0
    disc = b * b - a * (c0 - 1.0)
    if not (a > _FLAT_TOL and disc >= 0):
        return np.nan
    return float((-b + np.sqrt(disc)) / a if larger else (-b - np.sqrt(disc)) / a)


def _roundoff(z: np.ndarray) -> float:
    """Tolerance for z^T G z: with g nearly in the span of the b_i, z has huge cancelling
    entries and the quadratic form carries about eps ||z||_1^2 of rounding error."""
    return _KKT_TOL + 64 * np.finfo(float).eps * float(np.sum(np.abs(z))) ** 2


def _dual_candidate(gram: np.ndarray, c_hat: np.ndarray, act: np.ndarray):
    """The KKT point in which exactly the constraints `act` bind: (z, lam, nu).

    Binding constraints hold with equality, r_A alpha + S_AA beta_A = -c_A, so z = z0 + alpha z1
    is affine in alpha, and lam > 0 puts y on the trust-region boundary (the larger root: the
    reward grows along z1 at rate z1^T G z1 = q - r_A^T S_AA^+ r_A >= 0). When that rate is zero,
    g lies in the span of the binding gradients, the reward is flat on the binding face and every
    point of it is optimal: then lam = 0 and the face's minimum-KL point z0.
    """
    k = c_hat.size
    pinv = np.linalg.pinv(gram[1:, 1:][np.ix_(act, act)])
    z0, z1 = np.zeros(k + 1), np.eye(k + 1)[0]
    z0[1:][act] = -pinv @ c_hat[act]
    z1[1:][act] = -pinv @ gram[1:, 0][act]
    if z1 @ gram @ z1 > _FLAT_TOL:
        z = z0 + _boundary_root(gram, z0, z1, larger=True) * z1
        return z, 1.0 / z[0], -z[1:] / z[0]
    return z0, 0.0, -z1[1:]


def polish_dual(
    gram: np.ndarray, c_hat: np.ndarray, lam_raw: float, nu_raw: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Exact (z, lam_hat, nu_hat) of the normalised CPO problem, or None if no candidate passes.

    Args:
        gram: (k+1, k+1) Gram matrix of [g_hat, b_hat_1..k].
        c_hat: (k,) normalised margins.
        lam_raw, nu_raw: the solver's multipliers, used only to guess the binding set.
    """
    k = c_hat.size
    scale = max(lam_raw, float(np.max(nu_raw, initial=0.0)))
    for tau in _ACTIVE_THRESHOLDS:
        act = nu_raw > tau * scale
        for _ in range(k + 1):
            z, lam, nu = _dual_candidate(gram, c_hat, act)
            values = gram[1:] @ z + c_hat  # b_hat_i^T y + c_hat_i, must be <= 0
            if (
                lam >= 0
                and z @ gram @ z <= 1.0 + _roundoff(z)
                and np.all(nu >= -(_KKT_TOL if lam > 0 else _FLAT_NU_TOL))
                and np.all(values <= _KKT_TOL)
                and np.all(np.abs(values[act]) <= _KKT_TOL)
            ):
                return z, float(lam), np.maximum(nu, 0.0)
            outside = np.where(act, -np.inf, values)
            if not np.max(outside, initial=-np.inf) > _KKT_TOL:
                break
            act = act.copy()
            act[int(np.argmax(outside))] = True
    return None


def _recovery_candidate(gram: np.ndarray, c_hat: np.ndarray, act: np.ndarray):
    """(t, beta) with the terms `act` all equal to t on the trust-region boundary.

    S_AA beta_A + c_A = t 1 makes beta_A affine in t; the smallest t reaching the boundary is
    the candidate minimum.
    """
    pinv = np.linalg.pinv(gram[np.ix_(act, act)])
    z0, z1 = np.zeros(c_hat.size), np.zeros(c_hat.size)
    z0[act], z1[act] = -pinv @ c_hat[act], pinv @ np.ones(int(act.sum()))
    t = _boundary_root(gram, z0, z1, larger=False)
    return t, z0 + t * z1


def polish_recovery(gram: np.ndarray, c_hat: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """Exact beta_hat of min_y max_i (c_hat_i + b_hat_i^T y), ||y|| <= 1, or None.

    Args:
        gram: (k, k) Gram matrix of the normalised cost gradients b_hat_i.
        c_hat: (k,) normalised margins.
        weights: the solver's multipliers of the k terms, used only to guess the active set.

    Optimality: beta_A <= 0 (the step is -sum_i w_i b_hat_i, scaled, with w >= 0), all active
    terms equal t and no other term above it. Opposed collinear gradients can put the minimiser
    inside the trust region, where this construction does not apply (None).
    """
    k = c_hat.size
    for tau in _ACTIVE_THRESHOLDS:
        act = weights > tau * max(float(np.max(weights)), np.finfo(float).tiny)
        for _ in range(k + 1):
            t, beta = _recovery_candidate(gram, c_hat, act)
            values = gram @ beta + c_hat
            if (
                np.all(beta[act] <= _KKT_TOL)
                and np.all(values <= t + _KKT_TOL)
                and np.all(np.abs(values[act] - t) <= _KKT_TOL)
            ):
                return beta
            outside = np.where(act, -np.inf, values - t)
            if not np.max(outside, initial=-np.inf) > _KKT_TOL:
                break
            act = act.copy()
            act[int(np.argmax(outside))] = True
    return None
