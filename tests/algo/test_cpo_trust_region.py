"""The CPO step never leaves the trust region: recovery steps for violations up to 1e12
trust-region units, and polished dual steps whose gradients nearly cancel."""

from __future__ import annotations

import numpy as np
import pytest

from safe_trpo.algo.cpo import solve_step

DELTA = 0.01


def _random_gram(rng: np.random.Generator, m: int):
    a = rng.normal(size=(m + 1, m + 3))
    gram = a @ a.T
    return gram[0, 0], gram[0, 1:], gram[1:, 1:]


@pytest.mark.parametrize("m", [1, 2, 3])
def test_recovery_steps_stay_in_the_trust_region_for_huge_violations(m: int) -> None:
    rng = np.random.default_rng(m)
    for _ in range(25):
        q, r, S = _random_gram(rng, m)
        reach = np.sqrt(2 * DELTA * np.diag(S))  # one trust-region unit of each cost
        for exponent in (2, 6, 8, 10, 12):
            c = 10.0**exponent * reach * rng.uniform(0.5, 2.0, size=m)
            step = solve_step(q, r, S, c, DELTA)
            assert step.case == "recovery", (exponent, step.solver_status)
            assert step.predicted_kl <= DELTA * (1 + 1e-9), (exponent, step.predicted_kl)
            # The margins differ by far more than the region can move any cost: the step is
            # the paper's recovery for the most violated constraint, x = -sqrt(2 delta/s) H^-1 b.
            worst = int(np.argmax(c / reach))
            expected = np.zeros(m)
            expected[worst] = -np.sqrt(2 * DELTA / S[worst, worst])
            ranked = np.sort(c / reach)
            if m == 1 or ranked[-1] - ranked[-2] > 2:
                np.testing.assert_allclose(step.beta, expected, rtol=1e-9, atol=1e-12)


def test_recovery_with_equal_huge_violations_balances_them() -> None:
    S = np.array([[1.0, 0.2], [0.2, 1.0]])
    c = np.full(2, 1e10 * np.sqrt(2 * DELTA))
    step = solve_step(1.0, np.array([0.1, -0.3]), S, c, DELTA)
    assert step.case == "recovery" and step.predicted_kl <= DELTA * (1 + 1e-9)
    # Symmetric problem: both costs fall by the same (largest possible) amount.
    change = step.predicted_cost_change
    assert change[0] == pytest.approx(change[1], rel=1e-9) and change[0] < 0


def test_polished_dual_steps_stay_in_the_trust_region() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        m = int(rng.integers(1, 4))
        b = rng.normal(size=(6, m))
        # g almost in the span of the cost gradients: the step's coefficients nearly cancel.
        g = b @ rng.normal(size=m) + 10.0 ** rng.uniform(-8, -2) * rng.normal(size=6)
        q, r, S = g @ g, b.T @ g, b.T @ b
        c = rng.uniform(-0.9, 0.3, size=m) * np.sqrt(2 * DELTA * np.diag(S))
        step = solve_step(q, r, S, c, DELTA)
        assert step.case != "failed", step.solver_status
        # The step's KL by the Gram matrix the solver was given, in extended precision: its
        # coefficients nearly cancel, and float64 rounding alone is ~eps ||z||_1^2.
        gram = np.block([[np.array([[q]]), r[None, :]], [r[:, None], S]]).astype(np.longdouble)
        z = np.concatenate([[step.alpha], step.beta]).astype(np.longdouble)
        kl = float(0.5 * (z @ gram @ z))
        assert kl <= DELTA * (1 + 1e-9), kl / DELTA
