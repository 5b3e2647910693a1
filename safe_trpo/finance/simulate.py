"""Run strategies side by side through one batched portfolio simulator, and score them.

All strategies of a backtest are copies of one :class:`~envs.portfolio.core.PortfolioCore` in
backtest mode: the same universe, execution lag, costs and risk-limit checks as in training, and
one numpy step per day for all of them (this is what makes a baseline backtest take seconds).
Each copy's target weights come from its strategy, which sees only data up to today.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from envs.portfolio import accounting as acc
from envs.portfolio.baselines import Decision
from envs.portfolio.config import COST_NAMES, PortfolioConfig
from envs.portfolio.core import PortfolioCore
from envs.portfolio.universe import Universe
from safe_trpo.finance import stats

HISTORY = 61  # closes shown to a strategy: the estimating baselines' 60 returns


class Strategy(Protocol):
    name: str
    solver_failures: int

    def target_weights(self, d: Decision) -> np.ndarray | None: ...


class PolicyStrategy:
    """A Controller (trained policy: ``act`` on a batch of observations) as a strategy."""

    solver_failures = 0
    needs_obs = True

    def __init__(self, controller: Any,
                 to_weights: Callable[[np.ndarray], np.ndarray] | None = None,
                 name: str = "policy") -> None:
        """``to_weights``: the env's logits -> target weights map (clip, mask, softmax, cap);
        None = that of the simulator the strategy runs in (set by :func:`simulate`)."""
        self.controller, self.to_weights, self.name = controller, to_weights, name

    def target_weights(self, d: Decision) -> np.ndarray:
        if d.step == 0:
            self.controller.reset()
        action = np.asarray(self.controller.act(d.obs[None]), dtype=np.float64)
        return self.to_weights(action)[0]

    def describe(self) -> dict[str, Any]:
        return {"weights": "the trained policy's softmax over holdable tickers and cash",
                "rebalance": "daily (its own decision)"}


@dataclass(frozen=True)
class StrategyRun:
    """One strategy's backtest: the wealth curve, its daily returns and its figures."""

    name: str
    dates: list[str]  # n+1 closes: the first day (before trading) to the last
    wealth: np.ndarray  # (n+1,) starting at 1.0
    returns: np.ndarray  # (n,) daily simple returns net of costs
    metrics: dict[str, Any]


def simulate(cfg: PortfolioConfig, universe: Universe,
             strategies: list[Strategy]) -> list[StrategyRun]:
    """Backtest every strategy over the config's backtest window of ``universe``."""
    core = PortfolioCore(cfg, len(strategies), universe)
    n = len(strategies)
    for s in strategies:
        if isinstance(s, PolicyStrategy) and s.to_weights is None:
            s.to_weights = core.action_to_weights  # masks with this core's day
    core.reset(np.ones(n, dtype=bool), np.full(n, core.first_day))
    wants_obs = any(getattr(s, "needs_obs", False) for s in strategies)
    dates = [str(universe.dates[core.first_day].date())]
    wealth, turnover, costs, rets = [np.ones(n)], [], [], []
    breaches = {k: np.zeros(n, dtype=np.int64) for k in COST_NAMES}
    interventions = np.zeros(n, dtype=np.int64)
    step = 0
    while True:
        t = int(core.day[0])
        lo = max(0, t + 1 - HISTORY)
        history, listed = core.prices[lo:t + 1], universe.listed[lo:t + 1]
        obs = core.observe() if wants_obs else None
        targets = np.empty((n, core.n_assets + 1))
        for i, s in enumerate(strategies):
            d = Decision(step=step, history=history, listed=listed, holdable=core.holdable[t],
                         drifted=core.weights[i].copy(), obs=None if obs is None else obs[i])
            w = s.target_weights(d)
            targets[i] = np.nan if w is None else w  # NaN row: no order today
        _, done, info = core.step(targets)
        dates.append(str(universe.dates[core.day[0]].date()))
        wealth.append(info["wealth"])
        turnover.append(info["turnover"])
        costs.append(info["trade_cost"])
        rets.append(info["daily_return"])
        for k in COST_NAMES:
            breaches[k] += info[f"cost_{k}"] > 0
        interventions += info["safety_interventions"] > 0
        step += 1
        if done[0]:
            break
    wealth_a, turnover_a = np.array(wealth), np.array(turnover)
    costs_a, rets_a = np.array(costs), np.array(rets)
    runs = []
    idx = stats.bootstrap_indices(len(rets_a))
    for i, s in enumerate(strategies):
        metrics = acc.performance_metrics(wealth_a[:, i], turnover_a[:, i], costs_a[:, i])
        metrics.update(
            calmar=stats.calmar(metrics["annual_return"], metrics["max_drawdown"]),
            annual_turnover=metrics["avg_daily_turnover"] * acc.TRADING_DAYS,
            sharpe_ci95=stats.sharpe_interval(rets_a[:, i], idx),
            breach_days={k: int(breaches[k][i]) for k in COST_NAMES},
            solver_failures=int(s.solver_failures),
            safety_interventions=int(interventions[i]))
        runs.append(StrategyRun(s.name, dates, wealth_a[:, i], rets_a[:, i], metrics))
    return runs


def compare_with(runs: list[StrategyRun], reference: str) -> None:
    """Add tracking error, information ratio and ``vs_<reference>`` (paired Sharpe test) to
    every run's metrics, against the run named ``reference`` (in place)."""
    ref = next(r for r in runs if r.name == reference)
    key = "vs_" + reference.replace("-", "_")
    idx = stats.bootstrap_indices(len(ref.returns))  # the same draw as the intervals
    for r in runs:
        r.metrics.update(stats.relative_metrics(r.returns, ref.returns))
        if r is ref:
            r.metrics[key] = None
            continue
        r.metrics[key] = stats.paired_comparison(r.returns, ref.returns, idx)
