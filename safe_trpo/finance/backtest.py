"""``safe-trpo backtest``: a trained portfolio policy or a baseline, out of sample, vs baselines.

Every strategy (the trained policy and the four baselines of :mod:`envs.portfolio.baselines`)
runs through the portfolio environment in backtest mode, i.e. the same accounting, costs and
risk-limit checks as in training, over the same window and cost rate. The first day trades from
cash, so the initial allocation counts as turnover and pays costs. Metric definitions:
:func:`envs.portfolio.accounting.performance_metrics`; ``breach_days`` counts the days each
environment cost (drawdown, concentration, turnover, CVaR) was above its limit.

Outputs: a table on stdout; with ``json_out``, a JSON file and a wealth-curve PNG beside it
(same name, ``.png``); for a trained run folder, a ``backtest`` line in its audit log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from envs.portfolio import accounting as acc
from envs.portfolio.baselines import BASELINE_NAMES, Decision, make_baseline
from envs.portfolio.env import COST_NAMES, ENV_NAME, PortfolioConfig, PortfolioEnv, make_config
from envs.portfolio.prices import load_prices
from safe_trpo.errors import UserError
from safe_trpo.record.audit import AuditLog, file_sha256, to_jsonable
from safe_trpo.run.make_env import env_kwargs as scenario_env_kwargs

BASELINE_HISTORY = 61  # closes the optimising baselines need before the first day (60 returns)
# Scenario env kwargs that describe the training data, replaced by the backtest's own.
DATA_KEYS = ("prices", "train_start", "train_end", "test_start", "test_end", "backtest",
             "backtest_start", "backtest_end", "strict")


class Strategy(Protocol):
    name: str
    solver_failures: int

    def target_weights(self, d: Decision) -> np.ndarray: ...


class PolicyStrategy:
    """A Controller (trained policy: ``act`` on a batch of observations) as a strategy."""

    solver_failures = 0

    def __init__(self, controller: Any, to_weights: Callable[[np.ndarray], np.ndarray],
                 name: str = "policy") -> None:
        """``to_weights``: the env's logits -> target weights map (clip, softmax, cap)."""
        self.controller, self.to_weights, self.name = controller, to_weights, name

    def target_weights(self, d: Decision) -> np.ndarray:
        if d.step == 0:
            self.controller.reset()
        action = np.asarray(self.controller.act(d.obs[None]), dtype=np.float64)
        return self.to_weights(action)[0]


@dataclass(frozen=True)
class StrategyRun:
    """One strategy's backtest: the wealth curve and its figures."""

    name: str
    dates: list[str]  # n+1 closes: the first day (before trading) to the last
    wealth: np.ndarray  # (n+1,) starting at 1.0
    metrics: dict[str, Any]


def run_strategy(env: PortfolioEnv, strategy: Strategy, history: int) -> StrategyRun:
    """Run ``strategy`` through ``env`` (in backtest mode) from its first day to its last.

    ``history``: closes up to and including today shown to the strategy (its estimation window).
    """
    obs, _ = env.reset()
    dates = [str(env.panel.index[env.day].date())]
    wealth, turnover, trade_cost = [1.0], [], []
    breaches = dict.fromkeys(COST_NAMES, 0)
    done, step = False, 0
    while not done:
        d = Decision(step=step, history=env.history(history), drifted=env.drifted_weights,
                     obs=obs)
        obs, _, _, done, info = env.step_weights(strategy.target_weights(d))
        dates.append(str(env.panel.index[env.day].date()))
        wealth.append(info["wealth"])
        turnover.append(info["turnover"])
        trade_cost.append(info["trade_cost"])
        for name in COST_NAMES:
            breaches[name] += int(info[f"cost_{name}"] > 0)
        step += 1
    curve = np.array(wealth)
    metrics = acc.performance_metrics(curve, np.array(turnover), np.array(trade_cost))
    metrics.update(breach_days=breaches, solver_failures=int(strategy.solver_failures))
    return StrategyRun(strategy.name, dates, curve, metrics)


def backtest(panel: pd.DataFrame, strategies: list[Strategy], env_kwargs: dict[str, Any],
             start: str, end: str | None = None) -> list[StrategyRun]:
    """Backtest each strategy over ``[start, end]`` of ``panel`` (which holds enough history
    before ``start``), through one env built from ``env_kwargs`` (window, cost rate, limits)."""
    env = PortfolioEnv(prices=panel, backtest=True, backtest_start=start, backtest_end=end,
                       **env_kwargs)
    return [run_strategy(env, s, BASELINE_HISTORY) for s in strategies]


def run_backtest_command(prices: Path, policy: str, start: str | None, end: str | None,
                         cost_bps: float | None, json_out: Path | None,
                         allow_implausible_prices: bool = False) -> int:
    """The ``backtest`` subcommand; returns the exit code, raises UserError on bad input.

    Parameters:
        prices: price file (CSV/Parquet, wide or long).
        policy: a baseline name (``equal-weight``, ``buy-and-hold``, ``min-variance``,
            ``mean-variance``) or a trained run folder.
        start, end: backtest window (dates); for a run folder they default to the scenario's
            ``test_start``/``test_end``, otherwise to the whole file after the history needed.
            The file must hold 60 trading days before ``start`` (the optimising baselines'
            estimation window; more if the policy's observation window is longer).
        cost_bps: transaction cost in basis points of the traded amount (10 = 0.1%); None = the
            run's ``cost_rate`` (or the env default, 10 bps).
        json_out: where to write the JSON; the PNG goes beside it. None = print only.
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
    env_kwargs, tickers, start, end = _setup(trained, start, end)
    if cost_bps is not None:
        if not (isinstance(cost_bps, (int, float)) and math.isfinite(cost_bps)
                and 0 <= cost_bps < 5000):
            raise UserError(f"--cost-bps: expected a number in [0, 5000), got {cost_bps}")
        env_kwargs["cost_rate"] = cost_bps / 1e4
    if allow_implausible_prices:  # the user vouches for the file (validation.py's checks off)
        env_kwargs["allow_implausible_prices"] = True
    cfg = make_config(prices=prices, **env_kwargs)  # the run's settings, checked before any work
    history = max(cfg.window, BASELINE_HISTORY - 1)
    panel = load_prices(prices, start, end, strict=trained is not None, tickers=tickers,
                        lookback=history, check_plausible=not cfg.allow_implausible_prices)
    first = str(panel.index[history].date())
    n_assets = panel.shape[1]
    strategies: list[Strategy] = [make_baseline(b, n_assets) for b in BASELINE_NAMES]
    if trained is not None:
        probe = PortfolioEnv(prices=panel, backtest=True, backtest_start=first, **env_kwargs)
        _check_obs_dim(trained, probe, run_dir)
        strategies.insert(0, PolicyStrategy(trained, probe.core.action_to_weights))
    runs = backtest(panel, strategies, env_kwargs, first, end)
    column = "policy" if trained is not None else policy
    report = _report(prices, panel, runs, cfg, column)
    if trained is not None:
        report.update(policy=str(run_dir),
                      in_sample=_overlaps_training(trained, report["start"], report["end"]))
    print(format_table(runs, column, report))
    if json_out is not None:
        report["wealth_plot"] = _write_outputs(Path(json_out), report, runs, column)
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


def _check_obs_dim(trained: Any, env: PortfolioEnv, run_dir: Path) -> None:
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


def _report(prices: Path, panel: pd.DataFrame, runs: list[StrategyRun], cfg: PortfolioConfig,
            column: str) -> dict[str, Any]:
    """The JSON/audit record; ``column`` is the strategy under test ("policy" for a run)."""
    by_name = {r.name: r for r in runs}
    return {
        "policy": column,
        "metrics": by_name[column].metrics,
        "baselines": {b: by_name[b].metrics for b in BASELINE_NAMES},
        "prices": str(prices),
        "prices_sha256": file_sha256(prices),
        "tickers": [str(c) for c in panel.columns],
        "start": runs[0].dates[0],
        "end": runs[0].dates[-1],
        "days": len(runs[0].dates) - 1,
        "cost_rate": cfg.cost_rate,
        "limits": cfg.limits,
        "curves": {r.name: {"dates": r.dates, "wealth": r.wealth.tolist()} for r in runs},
    }


ROWS = (  # (label, metric key, format)
    ("final wealth", "final_wealth", "{:.4f}"),
    ("annual return", "annual_return", "{:.2%}"),
    ("annual volatility", "annual_volatility", "{:.2%}"),
    ("Sharpe", "sharpe", "{:.3f}"),
    ("Sortino", "sortino", "{:.3f}"),
    ("max drawdown", "max_drawdown", "{:.2%}"),
    ("CVaR(95%) daily", "cvar_95", "{:.2%}"),
    ("avg daily turnover", "avg_daily_turnover", "{:.4f}"),
    ("total costs", "total_costs", "{:.5f}"),
    ("solver failures", "solver_failures", "{:d}"),
)


def format_table(runs: list[StrategyRun], column: str, report: dict[str, Any]) -> str:
    """A plain-text table: one row per metric, one column per strategy (``column`` marked *)."""
    names = [r.name + ("*" if r.name == column else "") for r in runs]
    width = max(14, *(len(n) + 1 for n in names))
    lines = [f"backtest of {report['policy']}: {report['start']}..{report['end']} "
             f"({report['days']} days, {len(report['tickers'])} tickers, "
             f"cost {report['cost_rate'] * 1e4:g} bps)"]
    if report.get("in_sample"):
        lines.append("WARNING: the window overlaps the policy's training data (in-sample)")
    lines.append(f"{'':24}" + "".join(f"{n:>{width}}" for n in names))
    for label, key, fmt in ROWS:
        cells = [_fmt(fmt, r.metrics[key]) for r in runs]
        lines.append(f"{label:24}" + "".join(f"{c:>{width}}" for c in cells))
    for name in COST_NAMES:
        label = f"days {name} > {report['limits'][name]:g}"
        lines.append(f"{label:24}" + "".join(f"{r.metrics['breach_days'][name]:>{width}d}"
                                             for r in runs))
    return "\n".join(lines)


def _fmt(fmt: str, value: float) -> str:
    return "n/a" if isinstance(value, float) and not math.isfinite(value) else fmt.format(value)


def _write_outputs(json_out: Path, report: dict[str, Any], runs: list[StrategyRun],
                   column: str) -> str:
    """Write the JSON and the wealth-curve PNG beside it; returns the PNG's file name."""
    png = json_out.with_suffix(".png")
    report = {**report, "wealth_plot": png.name}
    path = json_out
    try:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(to_jsonable(report), indent=2) + "\n", encoding="utf-8")
        path = png
        plot_wealth(runs, png, column, title=f"{report['policy']}, {report['start']}.."
                                             f"{report['end']}, {report['cost_rate'] * 1e4:g} bps")
    except OSError as exc:
        raise UserError(f"--json: cannot write {path} ({exc.strerror or exc})") from None
    return png.name


def plot_wealth(runs: list[StrategyRun], png: Path, column: str, title: str = "") -> None:
    """Wealth curves and drawdowns of every strategy (``column`` drawn bold), to a PNG."""
    # The object-oriented API with an explicit Agg canvas: no global backend switch, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6.5), tight_layout=True)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    for r in runs:
        dates = pd.to_datetime(r.dates)
        bold = r.name == column
        top.plot(dates, r.wealth, label=r.name, linewidth=2.2 if bold else 1.2)
        bottom.plot(dates, 1.0 - r.wealth / np.maximum.accumulate(r.wealth),
                    linewidth=2.2 if bold else 1.0)
    top.set_title(title)
    top.set_ylabel("wealth (start = 1, net of costs)")
    top.legend(loc="upper left")
    top.grid(True, alpha=0.3)
    bottom.set_ylabel("drawdown")
    bottom.invert_yaxis()
    bottom.grid(True, alpha=0.3)
    fig.savefig(png, dpi=110)
