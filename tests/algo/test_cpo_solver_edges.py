"""Exact tests of the CPO step solver at the edges: degenerate problems, solver failures, bad input.

The helpers and references are those of `test_cpo_solver.py` (in `tests/algo/fixtures.py`).
"""

from __future__ import annotations

import json
import math

import cvxpy as cp
import numpy as np
import pytest

from safe_trpo.algo import cpo
from safe_trpo.algo.cpo import solve_step
from safe_trpo.algo.cpo_closed_form import closed_form_step
from tests.algo.fixtures import exact_step, gram, random_instance, rel_error

# ----------------------------------------------------------------------------- degenerate


def test_zero_cost_gradient_satisfied_is_ignored():
    rng = np.random.default_rng(5)
    H, g, B, c, delta = random_instance(rng, 1, 0.2, 0.6)
    ref, x_ref = exact_step(H, g, B, c, delta)
    for c0 in (-0.3, 0.0):
        st, x = exact_step(H, g, np.hstack([B, np.zeros_like(B)]), np.append(c, c0), delta)
        assert st.case == ref.case and st.unfixable == ()
        assert rel_error(x, x_ref) <= 1e-9 and st.nu[1] == 0 and st.beta[1] == 0


def test_zero_cost_gradient_violated_is_unfixable():
    rng = np.random.default_rng(6)
    H, g, B, c, delta = random_instance(rng, 1, -0.5, 0.5)
    q, r, S, Hg, HB = gram(H, g, B)
    # Only constraint 1 is violated and no step can move it: recover on constraint 0.
    st, x = exact_step(H, g, np.hstack([B, np.zeros_like(B)]), np.append(c, 0.2), delta)
    assert st.case == "recovery" and st.unfixable == (1,)
    np.testing.assert_allclose(x, -math.sqrt(2 * delta / S[0, 0]) * HB[:, 0], rtol=1e-9)
    # Alone it gives a zero step.
    st = solve_step(q, [0.0], [[0.0]], [0.2], delta)
    assert (st.case, st.alpha, st.beta[0], st.unfixable) == ("recovery", 0.0, 0.0, (0,))
    # A gradient the trust region can move by a 1e-14 fraction of the margin counts as zero.
    st = solve_step(q, [0.0], [[1e-30 / (2 * delta)]], [0.2], delta)
    assert st.unfixable == (0,) and st.beta[0] == 0


def test_zero_reward_gradient():
    I2, b = np.eye(2), np.array([[0.0], [1.0]])
    st, x = exact_step(I2, np.zeros(2), b, [-0.3], 0.5)  # nothing to gain, nothing to fix
    assert (st.case, st.lam) == ("unconstrained", 0.0) and not np.any(x)
    st, x = exact_step(I2, np.zeros(2), b, [0.3], 0.5)  # feasible: any feasible step is optimal
    assert st.case == "feasible" and x[1] + 0.3 <= 0 and x @ x <= 1 + 1e-12
    st, x = exact_step(I2, np.zeros(2), b, [1.3], 0.5)
    assert st.case == "recovery"
    np.testing.assert_allclose(x, [0, -1], atol=1e-12)


def test_constraint_out_of_reach_is_left_out():
    """c_hat <= -1: no step in the trust region reaches the limit; the other one binds."""
    I3, g = np.eye(3), np.array([1.0, 1.0, 1.0])
    st, x = exact_step(I3, g, I3[:, 1:], [-1.5, 0.2], 0.5)
    assert st.nu[0] == 0 and x[2] == pytest.approx(-0.2)
    assert x[0] == pytest.approx(x[1]) and x @ x == pytest.approx(1.0)


def test_near_the_feasibility_boundary():
    for eps in (1e-6, 1e-10, 1e-14):
        st = solve_step(1.0, [0.3], [[1.0]], [1 - eps], 0.5)
        cf = closed_form_step(1.0, 0.3, 1.0, 1 - eps, 0.5)
        assert st.case == cf.case == "feasible"
        assert st.alpha == pytest.approx(cf.alpha, rel=1e-6)
        assert st.beta[0] == pytest.approx(cf.beta, rel=1e-9)


def test_scale_invariance():
    """Rescaling g, or one cost (b_i, c_i) together, changes the coefficients, not the step."""
    rng = np.random.default_rng(9)
    H, g, B, c, delta = random_instance(rng, 3, -0.8, 0.8)
    _, x = exact_step(H, g, B, c, delta)
    k = np.array([1e-3, 1.0, 1e3])
    st, x_scaled = exact_step(H, 1e4 * g, B * k, c * k, delta)
    assert rel_error(x_scaled, x) <= 1e-9


def test_predictions_are_the_step_first_order_effects():
    rng = np.random.default_rng(10)
    for _ in range(6):
        H, g, B, c, delta = random_instance(rng, 2)
        st, x = exact_step(H, g, B, c, delta)
        assert st.predicted_reward_gain == pytest.approx(g @ x, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(st.predicted_cost_change, B.T @ x, rtol=1e-9, atol=1e-12)
        assert st.predicted_kl == pytest.approx(0.5 * x @ H @ x, rel=1e-9)
        assert st.predicted_kl == pytest.approx(delta, rel=1e-9)  # the trust region binds


# ----------------------------------------------------------------------------- failure


def _raise(*args, **kwargs):
    raise cp.error.SolverError("forced failure")


def test_dual_solver_error_gives_failed_no_step(monkeypatch):
    monkeypatch.setattr(cpo._dual_solver(1).problem, "solve", _raise)
    st = solve_step(1.0, [0.0], [[1.0]], [0.5], 0.5)
    assert st.case == "failed" and "SolverError" in st.solver_status
    assert st.alpha == 0 and not np.any(st.beta) and st.predicted_kl == 0
    assert math.isnan(st.lam) and np.all(np.isnan(st.nu))
    fields = json.loads(json.dumps(st.audit_fields(), allow_nan=False))
    assert fields["lambda"] is None and fields["nu"] == [None] and fields["case"] == "failed"
    monkeypatch.undo()
    assert solve_step(1.0, [0.0], [[1.0]], [0.5], 0.5).case == "feasible"


def test_recovery_solver_error_gives_failed(monkeypatch):
    monkeypatch.setattr(cpo._recovery_solver(2).problem, "solve", _raise)
    st = solve_step(1.0, [0.0, 0.0], np.eye(2), [0.8, 0.9], 0.5)
    assert st.case == "failed" and st.solver_status.startswith("recovery")


def test_non_optimal_status_gives_failed(monkeypatch):
    problem = cpo._dual_solver(1).problem
    original = problem.solve
    monkeypatch.setattr(problem, "solve", lambda **kw: original(**{**kw, "max_iter": 1}))
    st = solve_step(1.0, [0.0], [[1.0]], [0.5], 0.5)
    assert st.case == "failed" and st.solver_status.startswith("dual")
    assert st.alpha == 0


def test_unpolished_fallback_is_close(monkeypatch):
    """Without the polish the solver's own point is used: feasible, within the trust region."""
    rng = np.random.default_rng(13)
    instances = [random_instance(rng, 2, *lims) for lims in [(-0.6, 0.8)] * 3 + [(0.6, 1.6)] * 3]
    exact = [exact_step(*inst) for inst in instances]
    monkeypatch.setattr(cpo, "polish_dual", lambda *a: None)
    monkeypatch.setattr(cpo, "polish_recovery", lambda *a: None)
    for (H, g, B, c, delta), (ref, x_ref) in zip(instances, exact, strict=True):
        st, x = exact_step(H, g, B, c, delta)
        assert st.case == ref.case and not st.polished
        assert rel_error(x, x_ref) <= 1e-3  # about sqrt(solver tolerance); the polish gives 1e-12
        assert 0.5 * x @ H @ x <= delta * (1 + 1e-9)


def test_wrong_solver_answer_is_refused(monkeypatch):
    """A solver 'optimal' point that breaks a constraint is never passed on as a step."""
    solver = cpo._dual_solver(1)
    monkeypatch.setattr(cpo, "polish_dual", lambda *a: None)
    monkeypatch.setattr(solver, "solve", lambda *a: (cpo._Solved(True, cp.OPTIMAL, 0.1), 1.0,
                                                     np.zeros(1)))  # the TRPO step: x2 = 0
    st = solve_step(1.0, [0.0], [[1.0]], [0.5], 0.5)
    assert st.case == "failed" and "KKT" in st.solver_status and st.alpha == 0


# ----------------------------------------------------------------------------- input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1.0, [0.0], [[1.0]], [np.nan], 0.5), "c: expected finite"),
        ((1.0, [0.0], [[1.0]], [0.1], 0.0), "delta"),
        ((1.0, [0.0, 0.0], [[1.0]], [0.1, 0.2], 0.5), "S: expected shape"),
        ((-1.0, [0.0], [[1.0]], [0.1], 0.5), ">= 0"),
    ],
)
def test_bad_input_raises(args, message):
    with pytest.raises(ValueError, match=message):
        solve_step(*args)


def test_audit_fields_are_json():
    st = solve_step(1.0, [0.0, 0.1], np.eye(2), [0.5, -0.2], 0.01)
    fields = json.loads(json.dumps(st.audit_fields(), allow_nan=False))
    assert fields["case"] == st.case and fields["lambda"] == pytest.approx(st.lam)
    assert len(fields["nu"]) == 2 and fields["solve_time_ms"] >= 0
