"""The paper's closed-form CPO step for one constraint: the independent reference for m = 1.

Achiam et al. 2017, "Constrained Policy Optimization", Theorem 2 and the recovery step (eq. 13),
written in the paper's own notation so it can be checked line by line against the paper. The
theorem solves

    minimise_x  g_P^T x   s.t.   b^T x + c <= 0,   x^T H x <= delta_P

whereas `safe_trpo.algo.cpo` maximises g^T x with 1/2 x^T H x <= delta (g the reward gradient). The
translation is g_P = -g, hence r_P = g_P^T H^-1 b = -r, and delta_P = 2 delta; q, s, c, lambda
and nu are the same, and the theorem's x* = -(1/lam) H^-1 (g_P + nu b) = (1/lam) H^-1 (g - nu b),
i.e. alpha = 1/lam and beta = -nu/lam, as in `safe_trpo.algo.cpo`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ClosedFormStep:
    """x = alpha H^-1 g + beta H^-1 b, with the theorem's lambda* and nu*."""

    alpha: float
    beta: float
    lam: float
    nu: float
    case: str  # "unconstrained" (nu* = 0) | "feasible" | "recovery" (infeasible, eq. 13)


def _intervals(c: float, r_p: float) -> tuple[tuple[float, float] | None, ...]:
    """Lambda_a = {lam >= 0 : lam c - r_P > 0} and Lambda_b = {lam >= 0 : lam c - r_P <= 0}.

    Returned as closed intervals (lo, hi), or None when empty; closing Lambda_a is harmless
    because f_a = f_b on the common boundary lam c = r_P.
    """
    inf = math.inf
    if c > 0:
        return (max(0.0, r_p / c), inf), ((0.0, r_p / c) if r_p >= 0 else None)
    if c < 0:
        return ((0.0, r_p / c) if r_p < 0 else None), (max(0.0, r_p / c), inf)
    return ((0.0, inf) if r_p < 0 else None), ((0.0, inf) if r_p >= 0 else None)


def closed_form_step(q: float, r: float, s: float, c: float, delta: float) -> ClosedFormStep:
    """Theorem 2 for q = g^T H^-1 g, r = b^T H^-1 g, s = b^T H^-1 b > 0, c = J_C - d, delta.

    Arguments use `safe_trpo.algo.cpo`'s convention (g the reward gradient, 1/2 x^T H x <= delta);
    they are translated to the paper's on the first line.
    """
    r_p, delta_p = -r, 2.0 * delta
    if c > 0 and c * c / s - delta_p > 0:  # no feasible point: recovery, eq. 13
        nu = math.sqrt(delta_p / s)
        return ClosedFormStep(0.0, -nu, 0.0, nu, "recovery")
    A = q - r_p * r_p / s
    B = delta_p - c * c / s

    def f_a(lam: float) -> float:
        if lam == 0:
            return -math.inf
        return (r_p * r_p / s - q) / (2 * lam) + lam / 2 * (c * c / s - delta_p) - r_p * c / s

    def f_b(lam: float) -> float:
        return -math.inf if lam == 0 else -0.5 * (q / lam + lam * delta_p)

    def proj(x: float, interval: tuple[float, float]) -> float:
        return min(max(x, interval[0]), interval[1])

    lambda_a, lambda_b = _intervals(c, r_p)
    candidates = []  # (f(lam*), order, lam*): lam_a wins only if strictly better, as in the paper
    if lambda_a is not None:
        # sqrt(A / B) with B <= 0 is "+infinity": f_a then increases on all of Lambda_a.
        target = math.sqrt(A / B) if B > 0 else math.inf
        lam = proj(target, lambda_a)
        candidates.append((f_a(lam), 0, lam))
    if lambda_b is not None:
        lam = proj(math.sqrt(q / delta_p), lambda_b)
        candidates.append((f_b(lam), 1, lam))
    best = max(candidates, key=lambda cand: (cand[0], cand[1]))
    lam = best[2]
    nu = max(lam * c - r_p, 0.0) / s
    return ClosedFormStep(1.0 / lam, -nu / lam, lam, nu, "feasible" if nu > 0 else "unconstrained")
