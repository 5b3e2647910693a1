"""Exact tests of the CPO step solver `safe_trpo.algo.cpo.solve_step`.

References, all independent of the solver's subspace/dual formulation:
- a direct cvxpy solve of the primal in full dimension with an explicit SPD H, refined by
  Newton's method on its own KKT system (`tests/algo/fixtures.py`; a raw interior-point solution is
  only accurate to about the square root of its tolerance, ~1e-5, too coarse for 1e-6);
- the paper's closed form for m = 1 (`safe_trpo.algo.cpo_closed_form`);
- hand-chosen scalar problems with H = I whose answers are worked out in the comments.
"""

from __future__ import annotations

import math

import cvxpy as cp
import numpy as np
import pytest

from safe_trpo.algo import cpo
from safe_trpo.algo.cpo import CpoDualSolver, RecoverySolver, solve_step
from safe_trpo.algo.cpo_closed_form import closed_form_step
from tests.algo.fixtures import exact_step, gram, min_max, primal, random_instance, rel_error

REL_TOL = 1e-6


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_problems_are_dpp_and_built_once(k):
    assert CpoDualSolver(k).problem.is_dpp()
    assert RecoverySolver(k).problem.is_dpp()
    assert cpo._dual_solver(k) is cpo._dual_solver(k)


# ----------------------------------------------------------------------------- vs the primal


@pytest.mark.parametrize("m", [1, 2, 3])
def test_step_matches_direct_primal_solve(m):
    rng = np.random.default_rng(100 + m)
    seen = {"unconstrained": 0, "feasible": 0, "recovery": 0}
    # c_hat ranges (margin / trust-region reach) that favour each case in turn.
    regimes = [(-1.3, -0.2), (-0.6, 0.8), (0.3, 1.6)]
    for i in range(24):
        H, g, B, c, delta = random_instance(rng, m, *regimes[i % 3])
        st, x = exact_step(H, g, B, c, delta)
        seen[st.case] += 1
        ref = primal(H, g, B, c, delta)
        if st.case == "recovery":
            assert ref is None, "recovery taken although the linearised problem is feasible"
            x_ref, worst = min_max(H, B, c, delta)
            assert worst > 0
        else:
            assert ref is not None, f"case {st.case} on an infeasible problem"
            x_ref = ref
            trpo = math.sqrt(2 * delta / (g @ np.linalg.solve(H, g))) * np.linalg.solve(H, g)
            assert (st.case == "unconstrained") == bool(np.all(B.T @ trpo + c <= 0))
        assert rel_error(x, x_ref) <= REL_TOL, (st, rel_error(x, x_ref))
        assert abs(g @ x - g @ x_ref) <= REL_TOL * np.linalg.norm(g) * np.linalg.norm(x_ref)
        if st.case == "unconstrained":
            assert st.solver_status == "closed_form" and st.solve_time_ms == 0
        else:
            assert st.polished and st.solver_status == cp.OPTIMAL
    assert min(seen.values()) >= 3, seen


@pytest.mark.parametrize("m", [2, 3])
def test_collinear_cost_gradients_matchprimal(m):
    """S singular: b_m is a multiple (either sign) of b_1."""
    rng = np.random.default_rng(7 + m)
    seen = set()
    for _ in range(16):
        H, g, B, c, delta = random_instance(rng, m, -1.2, 1.2)
        k = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0)
        B[:, -1] = k * B[:, 0]
        st, x = exact_step(H, g, B, c, delta)
        seen.add(st.case)
        ref = primal(H, g, B, c, delta)
        if st.case == "recovery":
            assert ref is None
            _, worst = min_max(H, B, c, delta, refine=False)
            # The min-max minimiser need not be unique here (opposed gradients): compare its
            # value, and that the step stays in the trust region.
            reach = np.sqrt(2 * delta * np.diag(B.T @ np.linalg.solve(H, B)))
            assert np.max((B.T @ x + c) / reach) == pytest.approx(worst, abs=1e-7)
            assert 0.5 * x @ H @ x <= delta * (1 + 1e-7)
        else:
            assert rel_error(x, ref) <= REL_TOL, (st, rel_error(x, ref))
    assert {"feasible", "recovery"} <= seen


# ----------------------------------------------------------------------------- vs the paper


def _paper_case(q, r, s, c, delta):
    """The case numbering of the reference implementation of the paper (3, 2, 1, 0)."""
    B = 2 * delta - c * c / s
    if c < 0 and B < 0:
        return 3  # the trust region lies inside the constraint: never binds
    if c < 0:
        return 2  # satisfied now, may bind
    return 1 if B >= 0 else 0  # violated now: feasible / infeasible (recovery)


def test_m1_matches_paper_closed_form_in_every_case():
    rng = np.random.default_rng(11)
    counts = {0: 0, 1: 0, 2: 0, 3: 0}
    for _ in range(160):
        q = 10 ** rng.uniform(-3, 3)
        s = 10 ** rng.uniform(-3, 3)
        r = rng.uniform(-0.99, 0.99) * math.sqrt(q * s)  # Cauchy-Schwarz
        delta = rng.uniform(0.001, 0.05)
        c = rng.uniform(-1.6, 1.6) * math.sqrt(2 * delta * s)
        counts[_paper_case(q, r, s, c, delta)] += 1
        st = solve_step(q, [r], [[s]], [c], delta)
        cf = closed_form_step(q, r, s, c, delta)
        assert st.case == cf.case
        for ours, paper in ((st.alpha, cf.alpha), (st.beta[0], cf.beta), (st.lam, cf.lam),
                            (st.nu[0], cf.nu)):
            assert ours == pytest.approx(paper, rel=1e-8, abs=1e-10 * (abs(cf.alpha) + 1))
    assert min(counts.values()) >= 15, counts


def test_closed_form_is_right_on_theprimal():
    """The reference itself: closed-form x against the refined cvxpy primal (m = 1)."""
    rng = np.random.default_rng(12)
    for _ in range(10):
        H, g, B, c, delta = random_instance(rng, 1, -1.3, 0.95)
        q, r, S, Hg, HB = gram(H, g, B)
        cf = closed_form_step(q, r[0], S[0, 0], c[0], delta)
        assert rel_error(cf.alpha * Hg + cf.beta * HB[:, 0], primal(H, g, B, c, delta)) <= 1e-8


# ----------------------------------------------------------------------------- by hand (H = I)

SQ75 = math.sqrt(0.75)


@pytest.mark.parametrize(
    ("g", "b", "c", "delta", "case", "x", "lam", "nu"),
    [
        # Radius 1 (delta = 1/2). g = e1, b = e2, c = -2: the TRPO step e1 keeps x2 = 0 <= 2.
        ([1, 0], [0, 1], -2.0, 0.5, "unconstrained", [1, 0], 1.0, 0.0),
        # c = 0.5 forces x2 <= -0.5: x = (sqrt(.75), -.5) = (e1 - nu e2) / lam.
        ([1, 0], [0, 1], 0.5, 0.5, "feasible", [SQ75, -0.5], 1 / SQ75, 0.5 / SQ75),
        # c = 1.5 needs x2 <= -1.5, outside the unit ball: recovery x = -e2, nu = sqrt(2 delta/s).
        ([1, 0], [0, 1], 1.5, 0.5, "recovery", [0, -1], 0.0, 1.0),
        # Satisfied now (c = -.5) but the TRPO step (1, 1)/sqrt2 breaks x2 <= .5: binds.
        ([1, 1], [0, 1], -0.5, 0.5, "feasible", [SQ75, 0.5], 1 / SQ75, 1 - 0.5 / SQ75),
        # Violated now (c = .5) but the TRPO step (1, -1)/sqrt2 already has x2 <= -.5.
        ([1, -1], [0, 1], 0.5, 0.5, "unconstrained", [2**-0.5, -(2**-0.5)], 2**0.5, 0.0),
        # Radius 0.2 (delta = 0.02), b = 3 e2, c = 0.3: x2 <= -0.1, x1 = sqrt(.04 - .01).
        ([2, 0], [0, 3], 0.3, 0.02, "feasible", [math.sqrt(0.03), -0.1],
         2 / math.sqrt(0.03), 0.2 / 3 / math.sqrt(0.03)),
    ],
)
def test_hand_chosen_single_constraint(g, b, c, delta, case, x, lam, nu):
    g, B = np.array(g, float), np.array(b, float)[:, None]
    st, step = exact_step(np.eye(2), g, B, [c], delta)
    assert st.case == case
    np.testing.assert_allclose(step, x, rtol=1e-10, atol=1e-12)
    assert st.lam == pytest.approx(lam, rel=1e-10, abs=1e-12)
    assert st.nu[0] == pytest.approx(nu, rel=1e-10, abs=1e-12)
    assert st.predicted_kl == pytest.approx(0.5 * step @ step, rel=1e-12)


def test_hand_chosen_two_constraints():
    I3, g = np.eye(3), np.array([1.0, 0, 0])
    B = I3[:, 1:]
    # Both bind: x = (sqrt(1 - .09 - .16), -.3, -.4).
    st, x = exact_step(I3, g, B, [0.3, 0.4], 0.5)
    assert st.case == "feasible"
    np.testing.assert_allclose(x, [SQ75, -0.3, -0.4], rtol=1e-10)
    # Each alone is fixable, together they need |x|^2 >= .64 + .81 > 1: recovery. The min-max
    # has x2 + .8 = x3 + .9 = t on the unit sphere: 2t^2 - 3.4t + .45 = 0.
    st, x = exact_step(I3, g, B, [0.8, 0.9], 0.5)
    t = (3.4 - math.sqrt(3.4**2 - 8 * 0.45)) / 4
    assert st.case == "recovery" and st.alpha == 0 and st.lam == 0
    np.testing.assert_allclose(x, [0, t - 0.8, t - 0.9], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(st.nu, -st.beta)
    assert np.all(st.nu > 0)


def test_opposed_gradients_make_a_slab():
    """b2 = -b1: -0.5 <= x2 <= -0.2. S is singular."""
    I2, B = np.eye(2), np.array([[0.0, 0.0], [1.0, -1.0]])
    st, x = exact_step(I2, np.array([1.0, 1.0]), B, [0.2, -0.5], 0.5)
    np.testing.assert_allclose(x, [math.sqrt(1 - 0.04), -0.2], rtol=1e-10)
    st, x = exact_step(I2, np.array([1.0, -1.0]), B, [0.2, -0.5], 0.5)
    np.testing.assert_allclose(x, [SQ75, -0.5], rtol=1e-10)
    assert st.nu[0] == 0 and st.nu[1] > 0
    # An empty slab (x2 <= -0.6 and x2 >= 0.3) is infeasible: recovery balances the two.
    st, x = exact_step(I2, np.array([1.0, 0.0]), B, [0.6, 0.3], 0.5)
    assert st.case == "recovery"
    assert x[1] + 0.6 == pytest.approx(-x[1] + 0.3, abs=1e-7)


def test_duplicated_constraint_equals_single():
    rng = np.random.default_rng(3)
    H, g, B, c, delta = random_instance(rng, 1, 0.2, 0.6)
    single, x1 = exact_step(H, g, B, c, delta)
    double, x2 = exact_step(H, g, np.hstack([B, 2 * B]), np.concatenate([c, 2 * c]), delta)
    assert single.case == double.case == "feasible"
    assert rel_error(x2, x1) <= 1e-9


def test_reward_gradient_parallel_to_cost_gradient():
    """g = 2b: the reward is flat on the binding face; the minimum-KL point of it is taken."""
    st, x = exact_step(np.eye(2), np.array([0.0, 2.0]), np.array([[0.0], [1.0]]), [-0.1], 0.5)
    assert st.case == "feasible"
    np.testing.assert_allclose(x, [0, 0.1], atol=1e-12)
    assert st.lam == 0 and st.nu[0] == pytest.approx(2.0)
