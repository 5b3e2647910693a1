"""Size and build time of the HTML run report for long synthetic runs.

The requirement: `report.html` under 5 MB for 10,000 updates. Figures aggregate each series to at
most ``report_plots.MAX_POINTS`` buckets (min/max band + mean); as the peer, the same figures are
also drawn from every point. A PNG's size is bounded by its pixels, not by its points, so the
aggregation buys legibility (a mean line inside a min-max band instead of a solid smear) and
bounded marker counts, not bytes; the peer column shows that.

    python benchmarks/bench_report.py            # 1,000 and 10,000 updates
    python benchmarks/bench_report.py 50000      # any sizes
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic run builder the tests use

from test_report import make_run  # noqa: E402

from safe_trpo.record.audit import read_lines  # noqa: E402
from safe_trpo.report.build import build_report_html, write_report  # noqa: E402
from safe_trpo.report.plots import render_png, training_plots, update_table  # noqa: E402


def measure(n_updates: int, work: Path) -> None:
    fsync = os.fsync
    os.fsync = lambda fd: None  # building the synthetic log is not what is measured
    try:
        run = make_run(work / f"run_{n_updates}", n_updates=n_updates,
                       violate=tuple(range(0, n_updates, 7)),
                       fail=tuple(range(3, n_updates, 11)))
    finally:
        os.fsync = fsync
    log_mb = (run / "audit.jsonl").stat().st_size / 1e6
    t0 = time.perf_counter()
    path = write_report(run)
    build_s = time.perf_counter() - t0
    page = path.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    img_kb = sum(len(i) for i in images) / 1e3
    # Peer: the same figures drawn from every point (no aggregation).
    table = update_table(read_lines(run), ["temperature", "pressure"])
    t0 = time.perf_counter()
    raw = [render_png(spec, max_points=10 ** 9)[0] for spec in training_plots(table, ())]
    raw_s = time.perf_counter() - t0
    print(f"{n_updates:>7} updates | log {log_mb:6.1f} MB | report {len(page) / 1e6:6.3f} MB "
          f"(figures {img_kb / 1e3:5.3f} MB in {len(images)} PNGs) in {build_s:5.2f} s "
          f"| peer, unaggregated figures: {sum(map(len, raw)) / 1e6:5.3f} MB in {raw_s:5.2f} s "
          f"| under 5 MB: {len(page) < 5e6}")


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            measure(n, Path(tmp))
        build_report_html(Path(tmp) / f"run_{sizes[-1]}")  # the no-write path runs too


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1_000, 10_000])
