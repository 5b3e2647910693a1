"""The ``comparison`` lines of ``safe-trpo compare`` in the report (and, through the same table
and figure builders, in the review app): a table per controller, and one episode's
trajectories of every controller on the same axes with the limits drawn.

Lines come from the audit log and are untrusted: every value is read defensively (a missing or
non-numeric field shows as a dash, never as an error), and text is escaped by the table helpers.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from safe_trpo.report.html import Html, esc, table

HEADERS = ["Controller", "Episodes", "Return mean [95% CI]", "Worst return",
           "IAE mean [95% CI]", "Worst IAE", "Valve travel mean [95% CI]", "Max travel",
           "Settling min mean (unsettled / steps)"]
"""Columns of the controller table; each constraint adds mean / max / episodes over limit."""


def _num(value: Any) -> float:
    """A log value as a float, NaN when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


def _fmt(value: Any) -> str:
    x = _num(value)
    return "\u2014" if math.isnan(x) else f"{x:.4g}"


def _ci(stat: Any) -> str:
    s = stat if isinstance(stat, dict) else {}
    return f"{_fmt(s.get('mean'))} [{_fmt(s.get('lo'))}, {_fmt(s.get('hi'))}]"


def _get(stat: Any, key: str) -> str:
    return _fmt(stat.get(key)) if isinstance(stat, dict) else "\u2014"


def ordered(record: dict[str, Any], key: str) -> dict[str, Any]:
    """``record[key]`` (a dict by controller) in the line's ``order`` (the audit stores keys
    sorted), the policy first; names not in ``order`` follow in stored order."""
    found = record.get(key)
    found = found if isinstance(found, dict) else {}
    order = record.get("order") if isinstance(record.get("order"), list) else ["policy"]
    names = [n for n in order if isinstance(n, str) and n in found]
    return {n: found[n] for n in names + [n for n in found if n not in names]}


def comparison_rows(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of a comparison line's controllers, as display text."""
    controllers = ordered(record, "controllers")
    names: list[str] = []
    for r in controllers.values():
        for c in (r.get("constraints") if isinstance(r, dict) else None) or []:
            if isinstance(c, dict) and str(c.get("name")) not in names:
                names.append(str(c.get("name")))
    headers = HEADERS + [f"{n}: mean / max cost (limit), episodes over [95% CI]" for n in names]
    rows = []
    for label, r in controllers.items():
        r = r if isinstance(r, dict) else {}
        settle = r.get("settling_minutes")
        row = [str(label), _fmt(r.get("episodes")), _ci(r.get("return")),
               _get(r.get("return"), "min"), _ci(r.get("iae")), _get(r.get("iae"), "max"),
               _ci(r.get("valve_travel")), _get(r.get("valve_travel"), "max"),
               f"{_get(settle, 'mean')} ({_fmt(r.get('unsettled_steps'))} / "
               f"{_fmt(r.get('setpoint_steps'))})"]
        by_name = {str(c.get("name")): c for c in r.get("constraints") or []
                   if isinstance(c, dict)}
        for n in names:
            c = by_name.get(n, {})
            over = c.get("over") if isinstance(c.get("over"), dict) else {}
            row.append(f"{_get(c.get('ep_cost'), 'mean')} / {_get(c.get('ep_cost'), 'max')} "
                       f"({_fmt(c.get('limit'))}), {_fmt(c.get('episodes_over'))} "
                       f"[{_fmt(over.get('lo'))}, {_fmt(over.get('hi'))}]")
        rows.append(row)
    return headers, rows


def solve_time_notes(record: dict[str, Any]) -> list[str]:
    """One sentence per controller that reports solve times (the MPC)."""
    out = []
    controllers = record.get("controllers")
    for label, r in (controllers if isinstance(controllers, dict) else {}).items():
        s = r.get("solve_ms") if isinstance(r, dict) else None
        if isinstance(s, dict):
            out.append(f"{label}: solve time per step and copy median {_fmt(s.get('median'))} "
                       f"ms, 95th percentile {_fmt(s.get('p95'))} ms, max {_fmt(s.get('max'))} "
                       f"ms over {_fmt(s.get('solves'))} solves; {_fmt(s.get('failures'))} "
                       "not converged.")
    return out


def comparison_figure(record: dict[str, Any]):
    """A matplotlib Figure of the example episode: tracked variable with setpoint, safety
    variable with the limits, valve opening; one line per controller, on shared axes."""
    from matplotlib.figure import Figure

    plant = record.get("plant") if isinstance(record.get("plant"), dict) else {}
    example = ordered(record, "example")
    limits = record.get("limits_drawn") if isinstance(record.get("limits_drawn"), dict) else {}
    dt = _num(record.get("dt_minutes"))
    dt = 1.0 if math.isnan(dt) else dt
    tracked, setpoint = str(plant.get("tracked")), str(plant.get("setpoint"))
    safety = str(plant.get("safety"))
    panels = [(tracked, f"{tracked} ({plant.get('unit', '')})"),
              (safety, f"{safety} ({plant.get('safety_unit', '')})"),
              ("valve_opening", "valve opening (0-1)")]
    if safety == tracked:
        panels.pop(1)  # one panel carries both the tracking and the limits
    fig = Figure(figsize=(9.0, 2.4 * len(panels)), dpi=110)
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for label, series in example.items():
            ys = series.get(key) if isinstance(series, dict) else None
            if isinstance(ys, list) and ys:
                ys = [_num(v) for v in ys]
                ax.plot([dt * (i + 1) for i in range(len(ys))], ys, lw=1.1, label=str(label))
        if key == tracked:
            first = next((s for s in example.values() if isinstance(s, dict)), {})
            sp = first.get(setpoint)
            if isinstance(sp, list) and sp:
                ax.step([dt * (i + 1) for i in range(len(sp))], [_num(v) for v in sp],
                        where="pre", color="k", ls="--", lw=1.0, label="setpoint")
        if key == safety:
            for name, value in limits.items():
                if not math.isnan(_num(value)):
                    ax.axhline(_num(value), color="#c62828", ls=":", lw=1.2,
                               label=f"{name} {_fmt(value)}")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
    axes[-1].set_xlabel("minutes into the episode", fontsize=9)
    axes[0].set_title("One episode, every controller on the same disturbances and setpoints",
                      fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def comparison_section(lines: list[dict[str, Any]]) -> str:
    """The report section: the latest ``comparison`` line as a table and a figure."""
    found = [ln for ln in lines if ln.get("type") == "comparison"]
    head = '<section id="comparison"><h2>Comparison with baselines</h2>'
    if not found:
        return (head + '<p class="none">No comparison lines recorded (<code>safe-trpo compare '
                "RUN --controllers pid,mpc</code>).</p></section>")
    record = found[-1]
    intro = (f"<p>Seq {esc(record.get('seq'))}: {esc(record.get('episodes'))} episodes from seed "
             f"{esc(record.get('seed'))}, the policy of update {esc(record.get('policy_update'))}"
             " and each baseline on the same episodes (same setpoints, disturbances, parameter "
             "draws and sensor noise). Intervals are 95 % over episodes (t for means, Wilson "
             "for the fraction over a limit); the worst episode stands beside each mean. IAE is "
             "the integral of |tracked variable - setpoint| over time; settling is the time to "
             "stay within 10 % of a setpoint step (no narrower than the sensor noise).</p>")
    headers, rows = comparison_rows(record)
    notes = "".join(f'<p class="small">{esc(n)}</p>' for n in solve_time_notes(record))
    try:
        figure = f'<img alt="comparison trajectories" src="{_png(comparison_figure(record))}">'
    except (TypeError, ValueError, KeyError, IndexError):
        figure = '<p class="none">The example trajectories could not be drawn.</p>'
    older = (f'<p class="more">{len(found) - 1} earlier comparison lines not shown.</p>'
             if len(found) > 1 else "")
    return head + intro + table(headers, rows) + notes + Html(figure) + older + "</section>"
