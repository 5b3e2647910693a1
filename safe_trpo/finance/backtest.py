"""``safe-trpo backtest``: a trained portfolio policy or a baseline, out of sample, vs baselines.

Every strategy (the trained policy and the baselines of :mod:`envs.portfolio.baselines`) runs
through the portfolio simulator in backtest mode (:mod:`safe_trpo.finance.simulate`): the same
point-in-time universe (a ticker trades from its first price to its last; a delisted position is
sold at its last price), execution lag (default: decided at close t, filled at close t+1), costs
(fees, half-spread, square-root impact; cash rate) and risk-limit checks as in training, over
the same window. The first trade buys from cash, so the initial allocation pays costs.

Figures per strategy: :func:`envs.portfolio.accounting.performance_metrics` plus Calmar,
annualised turnover, a stationary-bootstrap 95 % interval of the Sharpe ratio (``sharpe_ci95``),
tracking error and information ratio against equal weight, and a paired comparison with equal
weight (``vs_equal_weight``: Sharpe difference, 95 % interval, p-value; :mod:`.stats`).
``breach_days`` counts the days each environment cost was above its limit.

Outputs: a table on stdout; with ``json_out``, a JSON file and a wealth-curve PNG beside it
(same name, ``.png``); for a trained run folder, a ``backtest`` line in its audit log.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from envs.portfolio.baselines import BASELINE_NAMES, make_baseline
from envs.portfolio.config import ENV_NAME, PortfolioConfig, make_config
from envs.portfolio.core import PortfolioCore
from envs.portfolio.env import PortfolioEnv
from envs.portfolio.prices import read_panel, validate_panel
from envs.portfolio.universe import Universe, build_universe, survivorship_note
from safe_trpo.errors import UserError
from safe_trpo.finance.output import format_table, write_outputs
from safe_trpo.finance.simulate import (
    HISTORY,
    PolicyStrategy,
    Strategy,
    StrategyRun,
    compare_with,
    simulate,
)
from safe_trpo.record.audit import AuditLog, file_sha256
from safe_trpo.run.make_env import env_kwargs as scenario_env_kwargs

REFERENCE = "equal-weight"  # every strategy is compared with this one
# Scenario env kwargs that describe the training data, replaced by the backtest's own.
DATA_KEYS = ("prices", "train_start", "train_end", "test_start", "test_end", "backtest",
             "backtest_start", "backtest_end", "strict")
COST_KEYS = ("cost_rate", "half_spread", "impact_coef", "aum_to_adv", "cash_rate")

__all__ = ["PolicyStrategy", "StrategyRun", "backtest", "run_backtest", "run_backtest_command"]


def backtest(panel: pd.DataFrame, strategies: list[Strategy], env_kwargs: dict[str, Any],
             start: str, end: str | None = None) -> list[StrategyRun]:
    """Backtest each strategy over ``[start, end]`` of ``panel`` (dates x tickers, NaN where not
    listed, with history before ``start``), with ``env_kwargs`` (window, costs, lag, limits)."""
    panel = validate_panel(panel)
    lookback = int(panel.index.searchsorted(pd.Timestamp(start)))
    cfg = make_config(prices=panel, backtest=True, backtest_start=start, backtest_end=end,
                      **env_kwargs)
    universe = build_universe(panel, start, end, tickers=cfg.tickers, lookback=lookback,
                              strict=cfg.strict, source="prices DataFrame")
    return _simulate(cfg, universe, strategies)


def _simulate(cfg: PortfolioConfig, universe: Universe,
              strategies: list[Strategy]) -> list[StrategyRun]:
    runs = simulate(cfg, universe, strategies)
    if any(r.name == REFERENCE for r in runs):
        compare_with(runs, REFERENCE)
    return runs


def run_backtest(prices: Path, policy: str, start: str | None = None, end: str | None = None,
                 overrides: dict[str, Any] | None = None, trained: Any = None,
                 run_dir: Path | None = None) -> tuple[dict[str, Any], list[StrategyRun], str]:
    """Backtest ``policy`` (a baseline name, or ``trained`` loaded from a run folder) and every
    baseline; returns (the JSON report, the runs, the column under test).

    ``overrides``: env settings replacing the run's (or the defaults): cost keys
    (``cost_rate``, ``half_spread``, ``impact_coef``, ``aum_to_adv``, ``cash_rate``) and
    ``execution_lag_days``.
    """
    env_kwargs, tickers, start, end = _setup(trained, start, end)
    env_kwargs.update(overrides or {})
    cfg = make_config(prices=prices, backtest=True, backtest_start=start, backtest_end=end,
                      **env_kwargs)  # the settings, checked before any work
    raw = read_panel(prices, not cfg.allow_implausible_prices)
    history = max(cfg.window, HISTORY - 1)
    universe = build_universe(raw, start, end, tickers=tickers, lookback=history,
                              source=str(prices))
    first = str(universe.dates[history].date())
    cfg = make_config(prices=prices, backtest=True, backtest_start=first, backtest_end=end,
                      tickers=universe.tickers, **env_kwargs)
    n_assets = len(universe.tickers)
    baselines = [make_baseline(b, n_assets) for b in BASELINE_NAMES]
    strategies: list[Strategy] = list(baselines)
    if trained is not None:
        obs_space, act_space = PortfolioCore(cfg, 1, universe).spaces()
        _check_obs_dim(trained, SimpleNamespace(observation_space=obs_space,
                                                action_space=act_space), run_dir or Path("run"))
        strategies.insert(0, PolicyStrategy(trained, None))
    runs = _simulate(cfg, universe, strategies)
    column = "policy" if trained is not None else policy
    report = _report(prices, universe, runs, cfg, column, raw)
    report["baseline_rules"] = {b.name: b.describe() for b in baselines}
    return report, runs, column


def run_backtest_command(prices: Path, policy: str, start: str | None, end: str | None,
                         cost_bps: float | None, json_out: Path | None,
                         settings: dict[str, Any] | None = None,
                         allow_implausible_prices: bool = False) -> int:
    """The ``backtest`` subcommand; returns the exit code, raises UserError on bad input.

    Parameters:
        prices: price file (CSV/Parquet, wide or long).
        policy: a baseline name (:data:`envs.portfolio.baselines.BASELINE_NAMES`) or a trained
            run folder.
        start, end: backtest window (dates); for a run folder they default to the scenario's
            ``test_start``/``test_end``, otherwise to the whole file after the history needed.
            The file must hold 60 trading days before ``start`` (the estimating baselines'
            window; more if the policy's observation window is longer).
        cost_bps: fees in basis points of the traded amount (10 = 0.1%); None = the run's
            ``cost_rate`` (or the env default, 10 bps).
        json_out: where to write the JSON; the PNG goes beside it. None = print only.
        settings: further env settings from the command line (``execution_lag_days``,
            ``half_spread``, ``impact_coef``, ``aum_to_adv``, ``cash_rate``); None values are
            left at the run's or the defaults.
        allow_implausible_prices: accept prices that ``envs.portfolio.validation`` refuses as
            data errors (outside [1e-9, 1e12], or x1000 overnight).
    """
    prices = Path(prices)
    if json_out is not None and Path(json_out).suffix.lower() == ".png":
        # The wealth plot goes to the JSON path with .png: the same file would be overwritten.
        raise UserError(f"--json {json_out}: expected a .json path (the wealth plot is written "
                        f"beside it with the suffix .png)")
    run_dir, trained = None, None
    if policy not in BASELINE_NAMES:
        run_dir = Path(policy)
        if not run_dir.is_dir():
            raise UserError(f"--policy: expected one of {', '.join(BASELINE_NAMES)} or a trained "
                            f"run folder, got '{policy}' (no such folder)")
        trained = _load_trained(run_dir)
    overrides = {k: v for k, v in (settings or {}).items() if v is not None}
    if cost_bps is not None:
        if not (isinstance(cost_bps, (int, float)) and math.isfinite(cost_bps)
                and 0 <= cost_bps < 5000):
            raise UserError(f"--cost-bps: expected a number in [0, 5000), got {cost_bps}")
        overrides["cost_rate"] = cost_bps / 1e4
    if allow_implausible_prices:  # the user vouches for the file (validation.py's checks off)
        overrides["allow_implausible_prices"] = True
    report, runs, column = run_backtest(prices, policy, start, end, overrides, trained,
                                        run_dir)
    if trained is not None:
        report.update(policy=str(run_dir),
                      in_sample=_overlaps_training(trained, report["start"], report["end"]))
    print(format_table(runs, column, report))
    if json_out is not None:
        report["wealth_plot"] = write_outputs(Path(json_out), report, runs, column)
        print(f"wrote {json_out} and {report['wealth_plot']}")
    if run_dir is not None:
        _audit(run_dir, report, json_out)
    return 0


def _audit(run_dir: Path, report: dict[str, Any], json_out: Path | None) -> None:
    """Record the backtest in the run's chain; outputs written inside the run folder are bound
    into it by hash too (those elsewhere are the user's files)."""
    with AuditLog(run_dir) as log:
        log.append("backtest", **{k: v for k, v in report.items() if k != "curves"},
                   json=None if json_out is None else str(json_out))
        if json_out is None:
            return
        for path in (Path(json_out), Path(json_out).with_suffix(".png")):
            if path.resolve().is_relative_to(run_dir.resolve()):
                log.append_file(run_dir, path, role="backtest")


def _load_trained(run_dir: Path) -> Any:
    # Imported here: policy_io pulls in torch, which a baseline-only backtest does not need.
    from safe_trpo.run.policy_io import load_policy

    trained = load_policy(run_dir)
    env_id = trained.scenario.env.id
    if env_id != ENV_NAME and "envs.portfolio.env:" not in env_id:
        raise UserError(f"{run_dir}: this run was trained on '{env_id}', not on {ENV_NAME}; "
                        f"only portfolio policies can be backtested")
    return trained


def _setup(trained: Any, start: str | None,
           end: str | None) -> tuple[dict[str, Any], list[str] | None, str | None, str | None]:
    """(env kwargs without data keys, the tickers the policy needs, start, end)."""
    if trained is None:
        return {}, None, start, end
    # Data files (the training prices) reach the env as kwargs too, as in training.
    kwargs = scenario_env_kwargs(trained.scenario.env)
    tickers = kwargs.get("tickers")
    if tickers is None:
        # The run traded whichever tickers were complete in its training window: find them the
        # same way, from its own price file.
        try:
            tickers = list(PortfolioEnv(**kwargs).panel.columns)
        except UserError as exc:
            raise UserError(f"the run's scenario has no env kwargs 'tickers' and its training "
                            f"prices cannot be read to find them ({exc})") from exc
    env_kwargs = {k: v for k, v in kwargs.items() if k not in DATA_KEYS and k != "tickers"}
    start = start if start is not None else _iso(kwargs.get("test_start"))
    end = end if end is not None else _iso(kwargs.get("test_end"))
    return env_kwargs, [str(t) for t in tickers], start, end


def _iso(value: Any) -> str | None:
    return None if value is None else str(value)


def _check_obs_dim(trained: Any, env: Any, run_dir: Path) -> None:
    """Refuse a policy whose input or output size does not fit the backtest env."""
    for what, want, have in (("observations", trained.obs_space.shape, env.observation_space.shape),
                             ("actions", trained.action_space.shape, env.action_space.shape)):
        want = tuple(int(x) for x in want)
        if want != tuple(have):
            raise UserError(f"{run_dir}: the policy's {what} have shape {want}, the backtest "
                            f"env's {tuple(have)} (same tickers and window as in training?)")


def _overlaps_training(trained: Any, first_day: str, last_day: str) -> bool:
    """Whether the window ``[first_day, last_day]`` shares a day with the run's training window
    ``[train_start, train_end]`` (in-sample)."""
    kwargs = trained.scenario.env.kwargs
    train_start, train_end = kwargs.get("train_start"), kwargs.get("train_end")
    # No train_end: training could read the whole price file, so any window may be in-sample.
    if train_end is None:
        return True
    after_start = train_start is None or pd.Timestamp(last_day) >= pd.Timestamp(str(train_start))
    return after_start and pd.Timestamp(first_day) <= pd.Timestamp(str(train_end))


def _report(prices: Path, universe: Universe, runs: list[StrategyRun], cfg: PortfolioConfig,
            column: str, raw: pd.DataFrame) -> dict[str, Any]:
    """The JSON/audit record; ``column`` is the strategy under test ("policy" for a run)."""
    by_name = {r.name: r for r in runs}
    return {
        "policy": column,
        "metrics": by_name[column].metrics,
        "baselines": {r.name: r.metrics for r in runs if r.name != "policy"},
        "reference": REFERENCE,
        "prices": str(prices),
        "prices_sha256": file_sha256(prices),
        "tickers": list(universe.tickers),
        "universe": {"listed_late": universe.listed_late, "delisted": universe.delisted,
                     "filled_gaps": universe.filled_gaps, "dropped": universe.dropped,
                     "summary": universe.summary()},
        "survivorship_warning": survivorship_note(raw, universe.tickers),
        "start": runs[0].dates[0],
        "end": runs[0].dates[-1],
        "days": len(runs[0].dates) - 1,
        "execution_lag_days": cfg.execution_lag_days,
        "cost_rate": cfg.cost_rate,
        "costs": {k: getattr(cfg, k) for k in COST_KEYS},
        "safety_layer": {"hard_concentration_cap": cfg.hard_concentration_cap,
                         "hard_turnover_cap": cfg.hard_turnover_cap},
        "limits": cfg.limits,
        "curves": {r.name: {"dates": r.dates, "wealth": r.wealth.tolist()} for r in runs},
    }
