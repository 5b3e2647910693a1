"""The algorithm: pure maths over tensors and arrays, no files and no record.

TRPO's natural-gradient step (``trpo``: conjugate gradient, Fisher-vector products, the KL line
search), the CPO step (``constrained.cpo_step``) and its dual subproblem solved with cvxpy
(``cpo``, checked against ``cpo_closed_form`` and refined by ``cpo_polish``), the
TRPO-Lagrangian multiplier update, the networks and observation normaliser (``networks``), the
critics' fast fit (``critics``, stepped by ``adam``), rollout collection and GAE (``rollout``),
and ``learn``, which turns one rollout into one update's audit fields. ``state.TrainState`` is
what changes between updates. May import: ``safe_trpo.config``, ``safe_trpo.errors``, torch,
numpy, gymnasium spaces, cvxpy (inside the CPO step only, so a TRPO run never loads it). Never
imports ``run``, ``record``, ``report``, ``review``, ``sweep`` or ``finance``.
"""
