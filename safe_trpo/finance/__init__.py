"""Finance: backtests of trained portfolio policies against the baselines a quant compares with.

``backtest`` runs a policy and the baselines over the same price window through the portfolio
environment and records the result in the run's audit record. May import ``run`` (to load a
policy and build the env), ``record``, ``config``, ``errors`` and ``envs.portfolio``.
"""
