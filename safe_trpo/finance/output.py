"""Backtest outputs: the comparison table on stdout, the JSON file and the wealth-curve PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from envs.portfolio.config import COST_NAMES
from safe_trpo.errors import UserError
from safe_trpo.finance.simulate import StrategyRun
from safe_trpo.record.audit import to_jsonable

ROWS = (  # (label, metric key, format)
    ("final wealth", "final_wealth", "{:.4f}"),
    ("annual return", "annual_return", "{:.2%}"),
    ("annual volatility", "annual_volatility", "{:.2%}"),
    ("Sharpe", "sharpe", "{:.3f}"),
    ("Sharpe 95% CI", "sharpe_ci95", "interval"),
    ("Sharpe - equal weight", "vs_equal_weight", "diff"),
    ("  95% CI of difference", "vs_equal_weight", "diff_ci"),
    ("  p-value", "vs_equal_weight", "p"),
    ("Sortino", "sortino", "{:.3f}"),
    ("max drawdown", "max_drawdown", "{:.2%}"),
    ("Calmar", "calmar", "{:.3f}"),
    ("tracking error vs EW", "tracking_error", "{:.2%}"),
    ("information ratio vs EW", "information_ratio", "{:.3f}"),
    ("CVaR(95%) daily", "cvar_95", "{:.2%}"),
    ("avg daily turnover", "avg_daily_turnover", "{:.4f}"),
    ("annual turnover", "annual_turnover", "{:.2f}"),
    ("total costs", "total_costs", "{:.5f}"),
    ("solver failures", "solver_failures", "{:d}"),
    ("safety interventions", "safety_interventions", "{:d}"),
)


def format_table(runs: list[StrategyRun], column: str, report: dict[str, Any]) -> str:
    """A plain-text table: one row per metric, one column per strategy (``column`` marked *)."""
    names = [r.name + ("*" if r.name == column else "") for r in runs]
    width = max(14, *(len(n) + 1 for n in names))
    c = report["costs"]
    lag = report["execution_lag_days"]
    lines = [f"backtest of {report['policy']}: {report['start']}..{report['end']} "
             f"({report['days']} days, {len(report['tickers'])} tickers; fees "
             f"{c['cost_rate'] * 1e4:g} bps, half-spread {c['half_spread'] * 1e4:g} bps, impact "
             f"coef {c['impact_coef']:g}, cash {c['cash_rate']:.2%}/yr; fills "
             + (f"{lag} day(s) after the decision)" if lag else "at the decision's own close "
                "(execution lag 0: optimistic))"),
             report["universe"]["summary"]]
    if report.get("survivorship_warning"):
        lines.append("WARNING: " + report["survivorship_warning"])
    if report.get("in_sample"):
        lines.append("WARNING: the window overlaps the policy's training data (in-sample)")
    lines.append(f"{'':24}" + "".join(f"{n:>{width}}" for n in names))
    for label, key, fmt in ROWS:
        cells = [_fmt(fmt, r.metrics.get(key)) for r in runs]
        lines.append(f"{label:24}" + "".join(f"{c:>{width}}" for c in cells))
    for name in COST_NAMES:
        label = f"days {name} > {report['limits'][name]:g}"
        lines.append(f"{label:24}" + "".join(f"{r.metrics['breach_days'][name]:>{width}d}"
                                             for r in runs))
    return "\n".join(lines)


def _fmt(fmt: str, value: Any) -> str:
    if fmt == "interval":
        return "n/a" if not value else f"{value[0]:.2f}..{value[1]:.2f}"
    if fmt in ("diff", "diff_ci", "p"):
        if not isinstance(value, dict):
            return "-"
        if fmt == "diff":
            return _fmt("{:+.3f}", value["sharpe_diff"])
        if fmt == "p":
            return _fmt("{:.3f}", value["p_value"])
        return _fmt("interval", value["ci95"])
    if value is None:
        return "-"
    return "n/a" if isinstance(value, float) and not math.isfinite(value) else fmt.format(value)


def write_outputs(json_out: Path, report: dict[str, Any], runs: list[StrategyRun],
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
                                             f"{report['end']}, {report['cost_rate'] * 1e4:g} bps "
                                             f"fees, lag {report['execution_lag_days']} d")
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
