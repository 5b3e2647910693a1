"""Speed of the review app's list of runs with many runs.

The requirement: the list stays fast with 1,000 runs. The app caches each run's summary (which
includes verifying its hash chain) keyed by file stamps, so a rerun of the page costs a ``stat``
per file. As the peer, the same summaries computed with no cache, i.e. reading and verifying
every audit file on every rerun, which is what a naive page would do. Also timed: the whole
Runs page rendered by Streamlit's AppTest, cold (first visit) and warm (a rerun).

    python benchmarks/bench_review.py                 # 1,000 runs of 50 updates
    python benchmarks/bench_review.py 3000 100        # runs, updates per run
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic run builder the tests use

from review_fixtures import make_run  # noqa: E402

from safe_trpo.review import runs  # noqa: E402


def build(root: Path, n_runs: int, n_updates: int) -> float:
    """Write the runs; returns the total audit size in MB."""
    fsync = os.fsync
    os.fsync = lambda fd: None  # building the synthetic logs is not what is measured
    try:
        for i in range(n_runs):
            costs = {"temperature": [4.0 + (u * i) % 3 for u in range(n_updates)],
                     "valve_wear": [1.0 + (u % 5) / 4 for u in range(n_updates)]}
            make_run(root, f"run-{i:05d}", costs=costs, algo="cpo" if i % 2 else "trpo",
                     seed=i, checkpoint=i % 10 == 0)
    finally:
        os.fsync = fsync
    return sum((d / "audit.jsonl").stat().st_size for d in root.iterdir()) / 1e6


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(n_runs: int, n_updates: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "reports"
        mb = build(root, n_runs, n_updates)
        print(f"{n_runs} runs x {n_updates} updates, {mb:.1f} MB of audit logs")
        cache = runs.RunCache()
        t0 = time.perf_counter()
        cache.summaries(root)
        cold = time.perf_counter() - t0
        warm = timed(lambda: cache.summaries(root))
        peer = timed(lambda: [runs.summarize(runs.load_run(root / r))
                              for r in runs.scan_run_ids(root)], repeat=1)
        print(f"  summaries, first visit (reads + verifies all) : {cold:7.3f} s")
        print(f"  summaries, rerun (cached, stat only)          : {warm:7.3f} s")
        print(f"  peer: no cache, every rerun re-reads          : {peer:7.3f} s  "
              f"-> cache is {peer / warm:5.1f}x faster on a rerun")
        os.environ["SAFE_TRPO_REPORTS"] = str(root)
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file(ROOT / "safe_trpo" / "review" / "app.py", default_timeout=600)
        t0 = time.perf_counter()
        at.run()
        first = time.perf_counter() - t0
        rerun = timed(at.run)
        shown = len(at.dataframe[0].value) if len(at.dataframe) else 0
        print(f"  Runs page (AppTest), first visit              : {first:7.3f} s")
        print(f"  Runs page (AppTest), rerun                    : {rerun:7.3f} s  "
              f"({shown} rows shown, exceptions: {len(at.exception)})")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [1000, 50][len(args):]))
