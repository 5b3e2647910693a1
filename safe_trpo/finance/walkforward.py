"""``safe-trpo walkforward``: train on rolling windows, backtest each policy on the next window.

Windows (calendar years, from the first date at which at least two of the scenario's tickers
trade): window ``k`` trains on ``[s + kB, s + kB + A)`` and is tested on the following
``[s + kB + A, s + kB + A + B)``, with ``A = --train-years`` and ``B = --test-years``, so test
windows follow each other without overlap and no policy is ever tested on a day it trained on
(the env never reads a price after ``train_end``). ``--windows N`` keeps the latest ``N``.

Every (window, seed) is an audited run made by the sweep machinery (:mod:`safe_trpo.sweep`):
one sweep per window under ``<out>/walkforward/<id>/w<k>/``, each with its own ``sweep.json``
and ``sweep.html``; a re-run skips the runs already finished and verified. Each run is then
backtested on its test window against every baseline (a ``backtest`` line in its record). The
out-of-sample daily returns of the test windows are chained in time and pooled: per seed for the
policy, once for each (deterministic) baseline, each with its Sharpe ratio, a stationary
bootstrap 95 % interval and the paired comparison with equal weight. ``walkforward.json`` and
``walkforward.html`` link every run and every window's sweep summary.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from envs.portfolio.prices import read_panel
from safe_trpo.errors import UserError
from safe_trpo.finance import stats
from safe_trpo.finance.backtest import _audit, _load_trained, run_backtest

DATE_KEYS = ("train_start", "train_end", "test_start", "test_end")


def plan_windows(dates: pd.DatetimeIndex, start: pd.Timestamp, train_years: float,
                 test_years: float) -> list[dict[str, str]]:
    """Consecutive (train, test) windows inside ``dates`` from ``start``: dates as ISO text,
    each bound a trading day of the file (train_end < test_start <= test_end)."""
    if not (train_years > 0 and test_years > 0):
        raise UserError("--train-years and --test-years: expected positive numbers")
    out = []
    k = 0
    while True:
        t0 = start + pd.DateOffset(months=round(12 * test_years * k))
        t1 = t0 + pd.DateOffset(months=round(12 * train_years))
        t2 = t1 + pd.DateOffset(months=round(12 * test_years))
        if t2 > dates[-1] + pd.Timedelta(days=1):
            break
        i0, i1, i2 = (int(dates.searchsorted(t, side="left")) for t in (t0, t1, t2))
        out.append({"train_start": str(dates[i0].date()), "train_end": str(dates[i1 - 1].date()),
                    "test_start": str(dates[i1].date()), "test_end": str(dates[i2 - 1].date())})
        k += 1
    return out


def pooled(returns: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Sharpe, its 95 % interval and the paired comparison with ``reference`` (same days)."""
    idx = stats.bootstrap_indices(len(returns))
    return {"days": int(len(returns)), "sharpe": stats.sharpe(returns),
            "sharpe_ci95": stats.sharpe_interval(returns, idx),
            "vs_equal_weight": stats.paired_comparison(returns, reference, idx)}


def run_walkforward_command(args: argparse.Namespace, market: dict[str, Any]) -> int:
    """The ``walkforward`` subcommand (arguments as in ``safe_trpo.cli``); exit 0 when every
    run completed and was backtested, 1 otherwise."""
    from safe_trpo.config import load_scenario
    from safe_trpo.report.build import write_report
    from safe_trpo.sweep.plan import parse_seeds, plan_sweep
    from safe_trpo.sweep.runner import run_sweep
    from safe_trpo.sweep.summary import find_done_run

    prices = Path(args.prices).resolve()
    scenario = load_scenario(args.scenario, list(args.set))
    if scenario.env.id != "SafeTRPO/Portfolio-v0" and "envs.portfolio" not in scenario.env.id:
        raise UserError(f"{args.scenario}: walk-forward needs a portfolio scenario "
                        f"(env id SafeTRPO/Portfolio-v0), got '{scenario.env.id}'")
    tickers = scenario.env.kwargs.get("tickers")
    raw = read_panel(prices)
    cols = [t for t in (tickers or raw.columns) if t in raw.columns]
    listed = raw[cols].notna().sum(axis=1)
    if (listed >= 2).sum() == 0:
        raise UserError(f"{prices}: no date with two of the scenario's tickers priced")
    start = listed.index[int(np.argmax(listed.to_numpy() >= 2))] + pd.DateOffset(months=3)
    windows = plan_windows(raw.index, start, args.train_years, args.test_years)
    if args.windows:
        windows = windows[-args.windows:]
    if not windows:
        raise UserError(f"{prices}: no {args.train_years} + {args.test_years}-year window fits "
                        f"between {start.date()} and {raw.index[-1].date()}")
    seeds = parse_seeds(args.seeds)
    ident = json.dumps({"scenario": Path(args.scenario).read_bytes().hex()[:4096],
                        "prices": str(prices), "windows": windows, "sets": list(args.set)})
    wf_id = f"{Path(args.scenario).stem}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}"
    wf_dir = Path(args.out).resolve() / "walkforward" / wf_id
    overrides = {k: v for k, v in market.items() if v is not None}
    if args.cost_bps is not None:
        overrides["cost_rate"] = args.cost_bps / 1e4
    per_window, status_ok = [], True
    for k, w in enumerate(windows):
        # Quoted: a bare TOML date would reach the scenario digest as a datetime.date.
        sets = list(args.set) + [f"env.kwargs.{key}=\"{w[key]}\"" for key in DATE_KEYS] + [
            f"env.data_files.prices={json.dumps(str(prices))}"]
        plan = plan_sweep([args.scenario], args.seeds, sets, wf_dir / f"w{k}")
        print(f"window {k}: train {w['train_start']}..{w['train_end']}, test "
              f"{w['test_start']}..{w['test_end']} ({len(seeds)} seed(s))")
        run_sweep(plan, "local", None, min(2, len(plan.jobs)))
        entry: dict[str, Any] = {**w, "sweep": str(plan.sweep_dir / "sweep.html"), "runs": []}
        for job in plan.jobs:
            run_dir = find_done_run(Path(job.job_dir), job.data_files)
            if run_dir is None:
                status_ok = False
                entry["runs"].append({"seed": job.seed, "run": None, "status": "not completed"})
                continue
            trained = _load_trained(run_dir)
            report, runs, _ = run_backtest(prices, str(run_dir), w["test_start"], w["test_end"],
                                           overrides, trained, run_dir)
            report["walkforward"] = {"id": wf_id, "window": k}
            _audit(run_dir, report, None)
            write_report(run_dir)  # the run's report now shows its out-of-sample backtest
            entry["runs"].append({"seed": job.seed, "run": str(run_dir), "status": "completed",
                                  "report": str(run_dir / "report.html"),
                                  "returns": {r.name: r.returns.tolist() for r in runs}})
        per_window.append(entry)
    summary = _summarise(wf_id, args, windows, seeds, per_window, overrides)
    _write(wf_dir, summary)
    print(_text(summary))
    print(wf_dir / "walkforward.html")
    return 0 if status_ok else 1


def _summarise(wf_id: str, args: argparse.Namespace, windows: list[dict[str, str]],
               seeds: list[int], per_window: list[dict[str, Any]],
               overrides: dict[str, Any]) -> dict[str, Any]:
    """Pool the test windows' daily returns in time order: per seed for the policy, once for
    the baselines (they do not depend on the seed); compare each with equal weight."""
    strategies: dict[str, list[float]] = {}
    per_seed: dict[int, list[float]] = {s: [] for s in seeds}
    ew: list[float] = []
    complete = all(all(r["status"] == "completed" for r in e["runs"]) for e in per_window)
    for e in per_window:
        done = [r for r in e["runs"] if r["status"] == "completed"]
        if not done:
            continue
        for name, rets in done[0]["returns"].items():
            if name != "policy":
                strategies.setdefault(name, []).extend(rets)
        ew.extend(done[0]["returns"]["equal-weight"])
        for r in e["runs"]:
            if r["status"] == "completed":
                per_seed[r["seed"]].extend(r["returns"]["policy"])
    ew_a = np.array(ew)
    pooled_out: dict[str, Any] = {}
    for seed, rets in per_seed.items():
        if len(rets) == len(ew):  # only a seed with every window is comparable day by day
            pooled_out[f"policy seed {seed}"] = pooled(np.array(rets), ew_a)
    for name, rets in strategies.items():
        pooled_out[name] = pooled(np.array(rets), ew_a)
    for e in per_window:
        for r in e["runs"]:
            r.pop("returns", None)
    return {"id": wf_id, "scenario": str(Path(args.scenario).resolve()),
            "prices": str(Path(args.prices).resolve()), "train_years": args.train_years,
            "test_years": args.test_years, "seeds": seeds, "sets": list(args.set),
            "backtest_settings": overrides, "complete": complete, "windows": per_window,
            "pooled_out_of_sample": pooled_out}


def _text(summary: dict[str, Any]) -> str:
    lines = [f"walk-forward {summary['id']}: {len(summary['windows'])} window(s), seeds "
             f"{summary['seeds']}; pooled out-of-sample (test windows chained):",
             f"{'strategy':22}{'days':>6}{'Sharpe':>8}{'95% CI':>16}{'vs EW':>8}"
             f"{'95% CI':>16}{'p':>7}"]
    for name, p in summary["pooled_out_of_sample"].items():
        vs = p["vs_equal_weight"]
        lines.append(f"{name:22}{p['days']:>6}{_f(p['sharpe']):>8}{_ci(p['sharpe_ci95']):>16}"
                     f"{_f(vs['sharpe_diff']):>8}{_ci(vs['ci95']):>16}{_f(vs['p_value']):>7}")
    return "\n".join(lines)


def _f(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) or not math.isfinite(v) else f"{v:.3f}"


def _ci(ci: list[float]) -> str:
    return f"{_f(ci[0])}..{_f(ci[1])}"


def _write(wf_dir: Path, summary: dict[str, Any]) -> None:
    wf_dir.mkdir(parents=True, exist_ok=True)
    (wf_dir / "walkforward.json").write_text(json.dumps(summary, indent=1, default=str) + "\n",
                                             encoding="utf-8")
    rows = "".join(
        f"<tr><td>{k}</td><td>{html.escape(e['train_start'])}..{html.escape(e['train_end'])}</td>"
        f"<td>{html.escape(e['test_start'])}..{html.escape(e['test_end'])}</td>"
        f"<td><a href=\"{html.escape(Path(e['sweep']).relative_to(wf_dir).as_posix())}\">"
        f"sweep</a></td><td>" + " ".join(
            f"<a href=\"{html.escape(Path(r['report']).relative_to(wf_dir).as_posix())}\">"
            f"seed {r['seed']}</a>" if r.get("run") else f"seed {r['seed']}: {r['status']}"
            for r in e["runs"]) + "</td></tr>"
        for k, e in enumerate(summary["windows"]))
    pooled_rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{p['days']}</td><td>{_f(p['sharpe'])}</td>"
        f"<td>{_ci(p['sharpe_ci95'])}</td><td>{_f(p['vs_equal_weight']['sharpe_diff'])}</td>"
        f"<td>{_ci(p['vs_equal_weight']['ci95'])}</td>"
        f"<td>{_f(p['vs_equal_weight']['p_value'])}</td></tr>"
        for n, p in summary["pooled_out_of_sample"].items())
    page = (f"<!doctype html><meta charset=utf-8><title>walk-forward {html.escape(summary['id'])}"
            f"</title><h1>Walk-forward {html.escape(summary['id'])}</h1>"
            f"<p>{'' if summary['complete'] else '<b>INCOMPLETE: some runs did not finish.</b> '}"
            f"Train {summary['train_years']} y, test {summary['test_years']} y, seeds "
            f"{summary['seeds']}.</p><h2>Pooled out of sample</h2><table border=1>"
            "<tr><th>strategy</th><th>days</th><th>Sharpe</th><th>95% CI</th>"
            "<th>Sharpe - EW</th><th>95% CI</th><th>p</th></tr>"
            f"{pooled_rows}</table><h2>Windows</h2><table border=1><tr><th>#</th><th>train</th>"
            f"<th>test</th><th>summary</th><th>runs</th></tr>{rows}</table>")
    (wf_dir / "walkforward.html").write_text(page, encoding="utf-8")
