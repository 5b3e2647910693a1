"""The training record for the HTML report: update lines as columns, summaries, and figures.

Everything here is pure data (no HTML): ``report.py`` lays it out. Figures are specified here
(``training_plots``) and drawn by ``report_figures`` as PNG data URIs; its drawing names
(``render_png``, ``envelope``, ``thin_marks``, ``MAX_POINTS``) are re-exported from here.

After a resume the trainer redoes the updates from its checkpoint on, so update rows written
before a ``resumed`` line with ``update >= from_update`` are superseded: ``current_updates`` drops
them, and every count here and in the report is over the current rows only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from safe_trpo.report.figures import EVAL_COLOR, FAIL_COLOR, Line, Marks, PlotSpec
from safe_trpo.report.figures import MAX_POINTS as MAX_POINTS
from safe_trpo.report.figures import envelope as envelope
from safe_trpo.report.figures import render_png as render_png
from safe_trpo.report.figures import thin_marks as thin_marks


def num(value: Any) -> float:
    """A finite float from a log value, else NaN (missing, null, bool, text, non-finite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


@dataclass(frozen=True)
class UpdateTable:
    """The current ``update`` lines (see ``current_updates``) as columns (NaN where a value is
    missing or null), in log order.

    ``segment`` counts ``resumed`` lines seen before each update, so lines from before and after a
    resume are not joined in a figure. ``cons`` maps a constraint name to its columns:
    ep_cost, limit, violated (the recorded flag, 1/0/NaN), over (ep_cost > limit recomputed from
    the row, to catch a flag that disagrees with its own numbers), nu, ep_max (the batch's worst
    episode, ``ep_cost_max``) and n_over (``episodes_over``), NaN where the record has none.
    """

    update: np.ndarray
    kl: np.ndarray
    target_kl: np.ndarray
    ret: np.ndarray
    accepted: np.ndarray
    backtracks: np.ndarray
    cpo_lambda: np.ndarray
    segment: np.ndarray
    cons: dict[str, dict[str, np.ndarray]]
    superseded: int = 0  # update rows left out: redone after a resume (see current_updates)

    def __len__(self) -> int:
        return len(self.update)


def current_updates(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The update rows that stand, in chain order (the same dict objects as in ``lines``).

    A row is superseded when a later ``resumed`` line has ``from_update <= row["update"]``: the
    trainer went back to that checkpoint and redid the update. Of several rows left with the same
    update index (a log written some other way), the latest is kept. Rows without a numeric
    ``update`` index are kept as they are; so is everything when ``from_update`` is not a number.
    """
    kept: list[dict[str, Any]] = []
    for line in lines:
        kind = line.get("type")
        if kind == "update":
            kept.append(line)
        elif kind == "resumed":
            start = num(line.get("from_update"))
            if not math.isnan(start):
                # A row without an index (NaN) cannot be placed, so it is kept.
                kept = [r for r in kept if not num(r.get("update")) >= start]
    latest: dict[float, int] = {}
    for i, row in enumerate(kept):
        index = num(row.get("update"))
        if not math.isnan(index):
            latest[index] = i
    return [r for i, r in enumerate(kept)
            if math.isnan(num(r.get("update"))) or latest[num(r.get("update"))] == i]


def update_table(lines: list[dict[str, Any]], names: list[str]) -> UpdateTable:
    """Columns of the current update lines (``current_updates``); ``names`` fixes constraint
    order (more are appended)."""
    current = {id(r) for r in current_updates(lines)}
    rows = []
    segment, total = 0, 0
    for line in lines:
        if line.get("type") == "resumed":
            segment += 1
        elif line.get("type") == "update":
            total += 1
            if id(line) in current:
                rows.append((line, segment))
    names = list(dict.fromkeys(names))
    for line, _ in rows:
        for c in constraint_rows(line):
            if str(c.get("name")) not in names:
                names.append(str(c.get("name")))
    cols: dict[str, list[float]] = {k: [] for k in (
        "update", "kl", "target_kl", "ret", "accepted", "backtracks", "cpo_lambda", "segment")}
    cons = {n: {k: [] for k in ("ep_cost", "limit", "violated", "over", "nu", "ep_max",
                                "n_over")} for n in names}
    for i, (line, seg) in enumerate(rows):
        upd = num(line.get("update"))
        cols["update"].append(i if math.isnan(upd) else upd)
        cols["kl"].append(num(line.get("kl")))
        cols["target_kl"].append(num(line.get("target_kl")))
        cols["ret"].append(num(line.get("return_mean")))
        acc = line.get("accepted")
        cols["accepted"].append(float(acc) if isinstance(acc, bool) else math.nan)
        cols["backtracks"].append(num(line.get("backtracks")))
        cpo = line.get("cpo") if isinstance(line.get("cpo"), dict) else {}
        cols["cpo_lambda"].append(num(cpo.get("lambda")))
        cols["segment"].append(seg)
        by_name = {str(c.get("name")): c for c in constraint_rows(line)}
        for n in names:
            c = by_name.get(n, {})
            cons[n]["ep_cost"].append(num(c.get("ep_cost")))
            cons[n]["limit"].append(num(c.get("limit")))
            cons[n]["violated"].append(violated(c))
            cons[n]["over"].append(violated({k: v for k, v in c.items() if k != "violated"}))
            cons[n]["nu"].append(num(c.get("nu")))
            cons[n]["ep_max"].append(num(c.get("ep_cost_max")))
            cons[n]["n_over"].append(num(c.get("episodes_over")))
    arrays = {k: np.asarray(v, dtype=float) for k, v in cols.items()}
    return UpdateTable(**arrays, cons={n: {k: np.asarray(v, dtype=float) for k, v in d.items()}
                                       for n, d in cons.items()}, superseded=total - len(rows))


def constraint_rows(line: dict[str, Any]) -> list[dict[str, Any]]:
    """The well-formed entries of a line's ``constraints`` list (none if it is not a list)."""
    rows = line.get("constraints")
    return [c for c in rows if isinstance(c, dict)] if isinstance(rows, list) else []


def violated(c: dict[str, Any]) -> float:
    """1.0 if the row says violated (or, with no such field, ep_cost > limit), 0.0, NaN unknown."""
    flag = c.get("violated")
    if isinstance(flag, bool):
        return float(flag)
    cost, limit = num(c.get("ep_cost")), num(c.get("limit"))
    return math.nan if math.isnan(cost) or math.isnan(limit) else float(cost > limit)


def _broken(t: UpdateTable, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) with a NaN inserted wherever a resume starts a new segment, so no line joins them."""
    cuts = np.flatnonzero(np.diff(t.segment) != 0) + 1
    return np.insert(t.update, cuts, np.nan), np.insert(y, cuts, np.nan)


def _line(t: UpdateTable, label: str, y: np.ndarray) -> Line:
    x, yy = _broken(t, y)
    return Line(label, x, yy)


# Cost axes end at CLIP_FACTOR x the limit (or at the batch means' 95th percentile, if higher):
# a few episodes 100x over the limit would otherwise flatten everything near it to a line.
CLIP_FACTOR = 4.0


@dataclass(frozen=True)
class FinalEvaluation:
    """The final policy's evaluation, marked at the last update of the training curves."""

    seq: Any
    episodes: Any
    return_mean: float
    costs: dict[str, tuple[float, float, Any]]  # name -> (mean, max, episodes over)


def final_evaluation(lines: list[dict[str, Any]]) -> FinalEvaluation | None:
    """The latest ``evaluation`` recorded after the last current update row (an earlier one
    evaluated an earlier policy), or None."""
    rows = current_updates(lines)
    last = max((num(r.get("seq")) for r in rows), default=math.nan)
    found = [ln for ln in lines if ln.get("type") == "evaluation"
             and not num(ln.get("seq")) <= last]
    if not found:
        return None
    ev = found[-1]
    costs = {str(c.get("name")): (num(c.get("ep_cost_mean")), num(c.get("ep_cost_max")),
                                  _episodes_over(c, ev.get("episodes")))
             for c in constraint_rows(ev)}
    return FinalEvaluation(ev.get("seq"), ev.get("episodes"), num(ev.get("return_mean")), costs)


def _episodes_over(c: dict[str, Any], episodes: Any) -> int | None:
    """``episodes_over``, or from ``frac_over_limit`` (k / n, so exact) in older records."""
    over = c.get("episodes_over")
    if isinstance(over, int) and not isinstance(over, bool):
        return over
    frac = num(c.get("frac_over_limit"))
    if isinstance(episodes, int) and not isinstance(episodes, bool) and math.isfinite(frac):
        return round(frac * episodes)
    return None


def _clip_at(limit: float, mean: np.ndarray, worst: np.ndarray) -> float | None:
    """Where a cost axis ends (see CLIP_FACTOR); None when nothing needs clipping."""
    if not (math.isfinite(limit) and limit > 0):
        return None
    top = CLIP_FACTOR * limit
    means = mean[np.isfinite(mean)]
    if len(means):
        top = max(top, 1.1 * float(np.percentile(means, 95)))
    values = np.concatenate([mean, worst])
    values = values[np.isfinite(values)]
    return top if len(values) and float(values.max()) > top else None


def _cost_plot(t: UpdateTable, name: str, c: dict[str, np.ndarray], unit: str,
               resumes: tuple[float, ...], ev: FinalEvaluation | None) -> PlotSpec:
    limits = c["limit"][np.isfinite(c["limit"])]
    limit = float(limits[-1]) if len(limits) else math.nan
    data = [_line(t, f"{name}: mean episode cost of the update's batch", c["ep_cost"])]
    if np.isfinite(c["ep_max"]).any():
        data.append(_line(t, f"{name}: worst episode of the batch", c["ep_max"]))
    bad = c["violated"] == 1
    some = (c["n_over"] > 0) & ~bad
    marks = [Marks(f"{name}: mean over the limit", t.update[bad], c["ep_cost"][bad])]
    if some.any():
        marks.append(Marks(f"{name}: mean within, some episodes over", t.update[some],
                           c["ep_max"][some], FAIL_COLOR, "o"))
    if ev is not None and name in ev.costs:
        mean, worst, over = ev.costs[name]
        x = np.array([t.update[-1]])
        over_text = f", {over} of {ev.episodes} over" if isinstance(over, int) else ""
        marks.append(Marks(f"final-policy evaluation (seq {ev.seq}): mean {mean:.3g}"
                           f"{over_text}", x, np.array([mean]), EVAL_COLOR, "D", counted=False))
        if math.isfinite(worst):
            marks.append(Marks(f"final-policy evaluation: worst episode {worst:.3g}", x,
                               np.array([worst]), EVAL_COLOR, "*", counted=False))
    return PlotSpec(
        f"Constraint '{name}': episode cost per update vs its limit", f"episode cost ({unit})",
        data=tuple(data), refs=(_line(t, f"{name} limit = {limit:.4g} per episode", c["limit"]),),
        marks=tuple(marks), resumes=resumes,
        clip_at=_clip_at(limit, c["ep_cost"], c["ep_max"]))


def training_plots(t: UpdateTable, resumes: tuple[float, ...],
                   evaluation: FinalEvaluation | None = None,
                   units: dict[str, str] | None = None) -> list[PlotSpec]:
    """The figures of the Training section, in reading order (nothing if there are no updates).

    evaluation: the final policy's evaluation (``final_evaluation``), marked at the last update.
    units: constraint name -> unit of its episode cost (from the environment), when known.
    """
    if len(t) == 0:
        return []
    units = units or {}
    failed = t.accepted == 0
    specs = [PlotSpec("KL divergence per update vs target", "KL(old || new) (nats)",
                      data=(_line(t, "KL after the step, whole batch", t.kl),),
                      refs=(_line(t, "target_kl", t.target_kl),),
                      marks=(Marks("line search failed (step rejected)", t.update[failed],
                                   t.kl[failed], FAIL_COLOR, "v"),), resumes=resumes)]
    if np.isfinite(t.ret).any():
        marks = ()
        if evaluation is not None and math.isfinite(evaluation.return_mean):
            marks = (Marks(f"final-policy evaluation (seq {evaluation.seq}, "
                           f"{evaluation.episodes} episodes): {evaluation.return_mean:.4g}",
                           np.array([t.update[-1]]), np.array([evaluation.return_mean]),
                           EVAL_COLOR, "D", counted=False),)
        specs.append(PlotSpec("Mean episode return per update",
                              "episode return (sum of rewards)",
                              data=(_line(t, "mean return of the batch's episodes", t.ret),),
                              marks=marks, resumes=resumes))
    for name, c in t.cons.items():
        specs.append(_cost_plot(t, name, c, units.get(name, "sum of the per-step cost"),
                                resumes, evaluation))
    # Each dual variable on its own axes: their scales differ by orders of magnitude.
    for name, c in t.cons.items():
        if np.isfinite(c["nu"]).any():
            specs.append(PlotSpec(f"Dual variable nu of '{name}' per update",
                                  "nu (reward per unit of episode cost)",
                                  data=(_line(t, f"nu[{name}]", c["nu"]),), resumes=resumes))
    if np.isfinite(t.cpo_lambda).any():
        specs.append(PlotSpec("CPO lambda (trust-region dual) per update",
                              "lambda (reward per unit of KL)",
                              data=(_line(t, "CPO lambda", t.cpo_lambda),), resumes=resumes))
    specs.append(PlotSpec("Line search: backtracking steps per update", "backtracks (count)",
                          data=(_line(t, "backtracks", t.backtracks),),
                          marks=(Marks("line search failed (step rejected)", t.update[failed],
                                       t.backtracks[failed], FAIL_COLOR, "v"),),
                          resumes=resumes))
    return specs


CPO_CASES = ("feasible", "recovery", "unconstrained", "failed")


def constraint_summary(t: UpdateTable) -> tuple[list[str], list[list[Any]], list[bool]]:
    """(headers, one row per constraint, whether the row needs attention)."""
    headers = ["Constraint", "Limit", "Updates with cost", "Updates w/o finished episode",
               "Updates violated", "First violated", "Last violated", "Worst ep cost",
               "at update", "Flag disagrees with cost", "Latest nu"]
    rows, attention = [], []
    for name, c in t.cons.items():
        bad = np.flatnonzero(c["violated"] == 1)
        known = np.isfinite(c["ep_cost"])
        worst = int(np.nanargmax(c["ep_cost"])) if known.any() else None
        disagree = int(np.sum(np.isfinite(c["violated"]) & np.isfinite(c["over"])
                              & (c["violated"] != c["over"])))
        limits = c["limit"][np.isfinite(c["limit"])]
        nus = c["nu"][np.isfinite(c["nu"])]
        rows.append([name, _last(limits), int(known.sum()), int(len(t) - known.sum()), len(bad),
                     _at(t.update, bad, 0), _at(t.update, bad, -1),
                     None if worst is None else float(c["ep_cost"][worst]),
                     None if worst is None else float(t.update[worst]), disagree, _last(nus)])
        attention.append(bool(len(bad) or disagree))
    return headers, rows, attention


def _last(values: np.ndarray) -> float | None:
    return float(values[-1]) if len(values) else None


def _at(values: np.ndarray, idx: np.ndarray, pos: int) -> float | None:
    return float(values[idx[pos]]) if len(idx) else None


def line_search_summary(t: UpdateTable) -> list[tuple[str, Any]]:
    """Key facts of the line search and of KL against its target."""
    kl, tgt = t.kl, t.target_kl
    valid = np.isfinite(kl) & np.isfinite(tgt) & (tgt > 0)
    over = valid & (kl > tgt)
    bt = t.backtracks[np.isfinite(t.backtracks)]
    return [
        ("Updates", len(t)),
        ("Line search accepted", int(np.sum(t.accepted == 1))),
        ("Line search failed (step rejected)", int(np.sum(t.accepted == 0))),
        ("Backtracks mean / max", f"{bt.mean():.3g} / {bt.max():.0f}" if len(bt) else None),
        ("Updates with KL above target_kl", int(over.sum())),
        ("Largest KL / target_kl", float(np.max(kl[valid] / tgt[valid])) if valid.any()
         else None),
    ]


@dataclass(frozen=True)
class CpoSummary:
    """Counts over the CPO records of the update lines (``cases`` lists CPO_CASES first)."""

    updates: int
    cases: list[tuple[str, int]]
    solver_status: list[tuple[str, int]]
    solve_ms: np.ndarray  # finite solve times


def cpo_summary(lines: list[dict[str, Any]]) -> CpoSummary | None:
    """Over the current update lines (``current_updates``); None when none is a CPO step."""
    rows = [ln.get("cpo") for ln in current_updates(lines)
            if ln.get("algo") == "cpo" or ln.get("cpo") is not None]
    if not rows:
        return None
    recs = [r for r in rows if isinstance(r, dict)]
    cases = Counter(str(r.get("case")) for r in recs)
    if len(recs) < len(rows):
        cases["(cpo record missing)"] = len(rows) - len(recs)
    order = list(CPO_CASES) + sorted(set(cases) - set(CPO_CASES))
    times = np.array([num(r.get("solve_time_ms")) for r in recs], dtype=float)
    return CpoSummary(len(rows), [(c, cases.get(c, 0)) for c in order],
                      Counter(str(r.get("solver_status")) for r in recs).most_common(),
                      times[np.isfinite(times)])
