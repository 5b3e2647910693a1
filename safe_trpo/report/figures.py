"""Drawing the report's figures: series reduced to buckets, drawn as PNG data URIs.

Figures are PNGs: their size depends on their pixels, not on the number of updates, which keeps
a report around 1 MB however long the run (benchmarks/bench_report.py). A line of 10,000 raw
points is a solid smear at that width, so every series is first reduced to at most ``MAX_POINTS``
buckets. A bucket keeps its minimum, maximum and mean: the figure draws the mean as a line and the
min-max span as a band, so a single violating update still reaches the band's edge and is never
averaged away. Violation markers are thinned the same way, keeping the worst point of each bucket.

Matplotlib is used through ``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot), so no
global figure state leaks between calls, e.g. from the review app. It is imported only when a
figure is drawn, so that ``current_updates`` (used by sweeps and the review app) stays cheap.

What to draw (``PlotSpec``) is decided in ``report_plots.training_plots``; this module only draws.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import numpy as np

# Buckets per line: about one per horizontal pixel of the plot area; more would not be visible.
MAX_POINTS = 1000
# 9 x 3 inches at 110 dpi: ~990 px wide, sharp at A4 width (~7 in of content -> ~140 dpi printed).
FIG_SIZE = (9.5, 3.0)
DPI = 110
VIOLATION_COLOR = "#c62828"
LIMIT_COLOR = "#c62828"
FAIL_COLOR = "#ef6c00"
RESUME_COLOR = "#616161"
CLIP_COLOR = "#6a1b9a"
EVAL_COLOR = "#00695c"


@dataclass(frozen=True)
class Envelope:
    """A series reduced to buckets. ``size`` is updates per bucket (1: the raw series)."""

    x: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mean: np.ndarray
    size: int


def envelope(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> Envelope:
    """Reduce ``y`` (NaN = no value) over consecutive buckets to at most ``max_points`` points.

    x: the update index of each value (the bucket takes its first one). max_points: at least 1.
    A bucket with no finite value gives NaN, which the figure draws as a gap.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points:
        return Envelope(x, y, y, y, 1)
    size = math.ceil(n / max_points)
    pad = (-n) % size
    yb = np.concatenate([y, np.full(pad, np.nan)]).reshape(-1, size)
    ok = np.isfinite(yb)
    count = ok.sum(axis=1)
    # Computed with masks rather than np.nanmin so that all-NaN buckets give NaN without warnings.
    lo = np.where(ok, yb, np.inf).min(axis=1)
    hi = np.where(ok, yb, -np.inf).max(axis=1)
    total = np.where(ok, yb, 0.0).sum(axis=1)
    empty = count == 0
    lo[empty] = hi[empty] = np.nan
    mean = np.divide(total, count, out=np.full(len(count), np.nan), where=~empty)
    return Envelope(x[::size], lo, hi, mean, size)


def thin_marks(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS
               ) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` of the points (x, y), keeping the highest y of each bucket."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) <= max_points:
        return x, y
    size = math.ceil(len(x) / max_points)
    keep = [start + int(np.nanargmax(y[start:start + size])) if np.isfinite(
        y[start:start + size]).any() else start for start in range(0, len(x), size)]
    return x[keep], y[keep]


@dataclass(frozen=True)
class Line:
    """One series to draw: ``x`` update indices, ``y`` values (NaN = gap)."""

    label: str
    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Marks:
    """Points to flag (violations, failed line searches)."""

    label: str
    x: np.ndarray
    y: np.ndarray
    color: str = VIOLATION_COLOR
    marker: str = "x"
    counted: bool = True  # the legend adds "(number of points)"


@dataclass(frozen=True)
class PlotSpec:
    """Everything one figure shows. ``refs`` are limits/targets, drawn dashed."""

    title: str
    ylabel: str
    data: tuple[Line, ...] = ()
    refs: tuple[Line, ...] = ()
    marks: tuple[Marks, ...] = ()
    resumes: tuple[float, ...] = ()  # update indices where a resumed run continued
    xlabel: str = "policy update (index)"
    # Top of the y axis: values above it are drawn as markers on the top edge, with their count
    # and the largest in the legend, so a few huge episodes cannot flatten the rest of the plot.
    clip_at: float | None = None


def _mark_clipped(ax: object, spec: PlotSpec, max_points: int) -> None:
    """Cap the y axis at ``spec.clip_at``; updates with a value above it get one marker each on
    the top edge, and the legend says how many and the largest value."""
    top = float(spec.clip_at)
    x_all, y_all = [], []
    for series in (*spec.data, *spec.marks):
        x_all.append(np.asarray(series.x, dtype=float))
        y_all.append(np.asarray(series.y, dtype=float))
    x, y = np.concatenate(x_all), np.concatenate(y_all)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    above = y > top
    low = float(y[~above].min()) if (~above).any() else 0.0
    bottom = min(0.0, low)
    ax.set_ylim(bottom - 0.03 * (top - bottom), top + 0.06 * (top - bottom))
    if above.any():
        xs = np.unique(x[above])  # one marker per update, however many series are above
        peak = np.array([y[above & (x == v)].max() for v in xs])
        mx, _ = thin_marks(xs, peak, max_points)
        ax.plot(mx, np.full(len(mx), top), ls="none", marker="^", ms=6, color=CLIP_COLOR,
                clip_on=False, label=f"above the axis top ({top:.3g}): {len(xs)} updates, "
                                     f"largest {float(peak.max()):.3g}")


def render_png(spec: PlotSpec, max_points: int = MAX_POINTS) -> tuple[str, int]:
    """Draw ``spec``; returns (PNG data URI, largest bucket size used)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=FIG_SIZE, dpi=DPI)
    ax = fig.subplots()
    bucket = 1
    for line in spec.data:
        env = envelope(line.x, line.y, max_points)
        bucket = max(bucket, env.size)
        (drawn,) = ax.plot(env.x, env.mean, lw=1.0, label=line.label)
        if env.size > 1:
            ax.fill_between(env.x, env.lo, env.hi, color=drawn.get_color(), alpha=0.25, lw=0)
    for ref in spec.refs:
        env = envelope(ref.x, ref.y, max_points)
        ax.plot(env.x, env.hi, ls="--", lw=1.2, color=LIMIT_COLOR, label=ref.label)
    for mark in spec.marks:
        if len(mark.x):
            mx, my = thin_marks(mark.x, mark.y, max_points)
            ax.plot(mx, my, ls="none", marker=mark.marker, ms=5, color=mark.color,
                    label=f"{mark.label} ({len(mark.x)})" if mark.counted else mark.label)
    for i, at in enumerate(spec.resumes):
        ax.axvline(at, color=RESUME_COLOR, ls=":", lw=1.0, label="resumed" if i == 0 else None)
    if spec.clip_at is not None:
        _mark_clipped(ax, spec, max_points)
    ax.set_title(spec.title, fontsize=10, loc="left")
    ax.set_xlabel(spec.xlabel, fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "update 0.25" on short runs
    ax.set_ylabel(spec.ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        # Outside the plot, full text: labels are distinct and never cut to the same prefix.
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.8)
    fig.tight_layout()
    buf = io.BytesIO()
    # No "Software" metadata: keeps the file free of any URL and a few bytes smaller.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), bucket
