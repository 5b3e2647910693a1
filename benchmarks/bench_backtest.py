"""Baseline backtest speed: every strategy in one batched simulator vs one simulator each.

``safe-trpo backtest`` steps all strategies as copies of one
:class:`~envs.portfolio.core.PortfolioCore` (one numpy step per day for all); the peer is the
loop it replaced, a separate single-copy simulation per strategy over the same universe. Both
give the same wealth curves (checked here). Prints seconds of each, process CPU time included,
and the ratio. Run from the repository root:

    python benchmarks/bench_backtest.py [--prices data/stock_prices.csv] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from envs.portfolio.baselines import BASELINE_NAMES, make_baseline
from envs.portfolio.config import make_config
from envs.portfolio.prices import read_panel
from envs.portfolio.universe import build_universe
from safe_trpo.finance.simulate import HISTORY, simulate


def timed(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prices", type=Path,
                        default=Path(__file__).resolve().parents[1] / "data"
                        / "stock_prices.csv")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    universe = build_universe(read_panel(args.prices), lookback=HISTORY - 1,
                              source=str(args.prices))
    first = str(universe.dates[HISTORY - 1].date())
    cfg = make_config(prices=args.prices, backtest=True, backtest_start=first,
                      tickers=universe.tickers)
    n = len(universe.tickers)

    def batched():
        return simulate(cfg, universe, [make_baseline(b, n) for b in BASELINE_NAMES])

    def one_by_one():
        return [simulate(cfg, universe, [make_baseline(b, n)])[0] for b in BASELINE_NAMES]

    rows = {"batched": [], "one by one": []}
    for _ in range(args.repeats):
        for name, fn in (("batched", batched), ("one by one", one_by_one)):
            wall, cpu, runs = timed(fn)
            rows[name].append((wall, cpu, runs))
    a, b = rows["batched"][-1][2], rows["one by one"][-1][2]
    same = all(np.allclose(x.wealth, y.wealth, rtol=1e-12) for x, y in zip(a, b, strict=True))
    print(f"{len(BASELINE_NAMES)} baselines, {len(a[0].wealth) - 1} days, {n} tickers; "
          f"same wealth curves: {same}")
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
           for k, v in rows.items()}
    for k, (wall, cpu) in med.items():
        print(f"{k:12} wall {wall:6.2f} s   cpu {cpu:6.2f} s   (median of {args.repeats})")
    print(f"ratio one-by-one / batched: wall {med['one by one'][0] / med['batched'][0]:.2f}x, "
          f"cpu {med['one by one'][1] / med['batched'][1]:.2f}x")


if __name__ == "__main__":
    main()
