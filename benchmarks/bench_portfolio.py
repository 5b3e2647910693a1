"""Portfolio-v0 speed: the native batched vector env vs Gymnasium's SyncVectorEnv of single copies.

Both step the same environment (same data, same accounting) with the same random logits; the
peer is what a library without a native vector env would use. Prints env steps per second for
each and the ratio, per number of copies. Run from the repository root:

    python benchmarks/bench_portfolio.py [--prices data/stock_prices.csv] [--steps 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from envs.portfolio.env import PortfolioEnv, PortfolioVectorEnv
from envs.portfolio.synthetic import synthetic_prices

TICKERS = ["AAPL", "AMZN", "GOOG", "JPM", "XOM", "WMT", "PFE", "GE"]


def steps_per_second(venv: gym.vector.VectorEnv, steps: int) -> float:
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(steps, *venv.action_space.shape)).astype(np.float32)
    venv.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        venv.step(a)
    return steps * venv.num_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prices", type=Path,
                        default=Path(__file__).resolve().parents[1] / "data"
                        / "stock_prices.csv")
    parser.add_argument("--steps", type=int, default=300, help="vector steps per measurement")
    args = parser.parse_args()
    if args.prices.is_file():
        kwargs = {"prices": str(args.prices), "tickers": TICKERS, "train_start": "2005-01-03",
                  "train_end": "2014-12-31"}
        source = f"{args.prices.name}, {len(TICKERS)} tickers"
    else:
        kwargs = {"prices": synthetic_prices(3000, 8, seed=0)}
        source = "synthetic, 8 assets"
    print(f"Portfolio-v0 ({source}), {args.steps} vector steps; env steps per second")
    print(f"{'copies':>7} {'native':>12} {'SyncVectorEnv':>14} {'ratio':>7}")
    for n in (1, 8, 64):
        native = steps_per_second(PortfolioVectorEnv(num_envs=n, **kwargs), args.steps)
        sync = gym.vector.SyncVectorEnv([lambda: PortfolioEnv(**kwargs)] * n,
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        peer = steps_per_second(sync, args.steps)
        print(f"{n:>7} {native:>12,.0f} {peer:>14,.0f} {native / peer:>6.1f}x")


if __name__ == "__main__":
    main()
