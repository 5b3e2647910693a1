"""The self-contained HTML run report (`safe-trpo report RUN`).

One file, no network: figures are PNG data URIs, styles are inline, nothing is fetched. It prints
to PDF (one section per page, tables that wrap) and stays small for long runs (figures aggregate
to a bounded number of points, see ``report_plots``; long tables are capped with a count of the
rest).

Every string that comes from the audit log is untrusted (a reviewer's comment, a tampered line):
it is escaped before it reaches the page. Markup built here is wrapped in ``Html`` so the table
helpers can tell the two apart and escape everything else by default.

The report shows the integrity verdict computed before it is written and names the chain head it
describes; ``write_report`` then binds the file into the chain with a ``file`` line (role
``report``), so ``verify`` can later tell whether the report was edited. When binding is refused
(see ``binding``) the page goes to ``report.unbound.html`` instead, so a bound ``report.html``
is never replaced by a file the chain does not know.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safe_trpo import __version__
from safe_trpo.audit import AuditLog, RunVerdict, file_sha256, read_lines, verify_run
from safe_trpo.report_html import (
    CSS,
    Html,
    atomic_write,
    badge,
    capped,
    esc,
    kv_table,
    mono,
    table,
    text,
)
from safe_trpo.report_plots import (
    UpdateTable,
    constraint_rows,
    constraint_summary,
    cpo_summary,
    current_updates,
    line_search_summary,
    num,
    render_png,
    training_plots,
    update_table,
    violated,
)

# One staleness rule for the review app and the report, kept with the sign-off writer; re-exported
# here so callers of the report can use it too.
from safe_trpo.review.signoff import overall_state
from safe_trpo.review.signoff import signoff_states as signoff_states

REPORT_FILE = "report.html"
UNBOUND_FILE = "report.unbound.html"  # where a report goes when it may not be bound (binding)
CAP_RESULTS = 5  # latest evaluation / backtest lines shown


# --------------------------------------------------------------------------- run facts

@dataclass(frozen=True)
class RunFacts:
    """What the sections share: the folder, its verdict and its lines (as parsed, in order)."""

    run_dir: Path
    verdict: RunVerdict
    lines: list[dict[str, Any]]
    updates: UpdateTable  # the update lines as columns, built once

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [ln for ln in self.lines if ln.get("type") == kind]

    @property
    def start(self) -> dict[str, Any]:
        found = self.of_type("run_started")
        return found[0] if found else {}

    def section(self, name: str) -> dict[str, Any]:
        scenario = self.start.get("scenario")
        value = scenario.get(name) if isinstance(scenario, dict) else None
        return value if isinstance(value, dict) else {}

    def lifecycle(self) -> dict[str, Any] | None:
        """The last run_started / resumed / run_finished line: where the run stands."""
        found = [ln for ln in self.lines
                 if ln.get("type") in ("run_started", "resumed", "run_finished")]
        return found[-1] if found else None


def run_status(f: RunFacts) -> tuple[str, str]:
    """(status text, badge level)."""
    last = f.lifecycle()
    if last is None:
        return "no run_started line", "muted"
    bad = f.verdict.chain.first_bad_seq
    if bad is not None and f.verdict.chain.status == "tampered" and num(last.get("seq")) >= bad:
        return f"{text(last.get('status') or last.get('type'))} (from an unverified line)", "bad"
    if last.get("type") == "run_finished":
        status = text(last.get("status"))
        reason = f" ({text(last.get('reason'))})" if last.get("reason") else ""
        return status + reason, "ok" if status == "completed" else "warn"
    if f.verdict.chain.status == "interrupted":
        return "interrupted (log cut off mid-line, no run_finished line)", "warn"
    return "not finished (no run_finished line: still running, or stopped unrecorded)", "warn"


def binding(f: RunFacts) -> str | None:
    """Why this report must not be appended to the chain, or None if it may be."""
    if not f.verdict.chain.ok:
        return f"the chain is {f.verdict.chain.status}"
    last = f.lifecycle()
    if last is None or last.get("type") != "run_finished":
        # The trainer may still hold the log open: a second writer would fork the chain.
        return "the run has no run_finished line (it may still be writing its log)"
    return None


def _verdict_level(v: RunVerdict) -> str:
    if v.ok:
        return "ok"
    if v.chain.status == "interrupted" and not v.file_problems:
        return "warn"
    return "muted" if v.chain.status == "empty" else "bad"


# --------------------------------------------------------------------------- sections

def _header(f: RunFacts, generated: str) -> str:
    v, n = f.verdict, f.verdict.chain.n_lines
    status, level = run_status(f)
    head = (Html(f'<td>seq {n - 1}, <code class="hash">{esc(v.chain.head_hash)}</code></td>')
            if n else "no verified line")
    run_id = f.start.get("run_id", f.run_dir.name)
    meta = kv_table([
        ("Run", run_id), ("Scenario", f.section("run").get("name") or
                          f.start.get("scenario_file")),
        ("Algorithm", f.section("algo").get("name")), ("Environment", f.section("env").get("id")),
        ("Status", Html(f"<td>{badge(status, level)}</td>")), ("Created", f.start.get("time")),
        ("Audit lines", f"{len(f.lines)} parsed, {n} verified"),
        ("Chain head described", head),
        ("Report generated", f"{generated} by safe-trpo {__version__}")])
    vl = _verdict_level(v)
    word, _, detail = v.summary.partition(": ")
    problems = "".join(f"<li>{esc(p)}</li>" for p in v.file_problems)
    tampered = (f"<p><strong>Lines from seq {esc(v.chain.first_bad_seq)} on are shown as found "
                "but are not verified: do not rely on them.</strong></p>"
                if v.chain.status == "tampered" else "")
    why_not = binding(f)
    bound = ("Written by <code>safe-trpo report</code>, this file is bound into the chain by a "
             "<code>file</code> line (role <code>report</code>) appended after the head above."
             if why_not is None else
             f"This report is not bound into the audit chain: {esc(why_not)}. "
             f"<code>safe-trpo report</code> saves it as <code>{UNBOUND_FILE}</code> and leaves "
             f"any <code>{REPORT_FILE}</code> as it was.")
    return (f"<header><h1>safe-trpo run report: {esc(run_id)}</h1>{meta}"
            f'<div class="verdict v-{vl}"><p><strong>Integrity</strong> {badge(word, vl)} '
            f"{esc(detail)}</p>"
            f"{'<ul>' + problems + '</ul>' if problems else ''}{tampered}"
            f'<p class="small">{bound}</p></div></header>')


def _glance(f: RunFacts) -> str:
    t = f.updates
    viol = {n: int((c["violated"] == 1).sum()) for n, c in t.cons.items()}
    any_viol = int(np.any([c["violated"] == 1 for c in t.cons.values()], axis=0).sum()) \
        if t.cons and len(t) else 0
    states = signoff_states(f.lines, run_verified=f.verdict.ok)
    stale = sum(s.stale for s in states)
    redone = (f" ({t.superseded} more rows superseded: redone after a resume, not counted)"
              if t.superseded else "")
    return kv_table([
        ("Updates recorded",
         f"{len(t)} of {text(f.start.get('planned_updates'))} planned{redone}"),
        ("Updates that violated a limit", f"{any_viol} ("
         + ", ".join(f"{k}: {v}" for k, v in viol.items()) + ")" if viol else any_viol),
        ("Line searches failed", int((t.accepted == 0).sum())),
        ("NaN events", len(f.of_type("nan_detected"))), ("Resumes", len(f.of_type("resumed"))),
        ("Evaluations / backtests", f"{len(f.of_type('evaluation'))} / "
                                    f"{len(f.of_type('backtest'))}"),
        ("Sign-offs", f"{overall_state(states)} ({len(states) - stale} current, {stale} stale)")])


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _toml_line(key: str, value: Any) -> str:
    # TOML has no null: an unset optional value (its default applies) becomes a comment, so
    # the block stays valid TOML a reviewer can copy into a scenario file.
    return f"# {key}: not set (default)" if value is None else f"{key} = {_toml_value(value)}"


def scenario_toml(scenario: dict[str, Any]) -> str:
    """The resolved scenario in TOML notation (unset optional values as comments)."""
    out, tables, arrays = [], [], []
    for key, value in scenario.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        else:
            out.append(_toml_line(key, value))
    for key, value in tables:
        out += [f"\n[{key}]"] + [_toml_line(k, v) for k, v in value.items()]
    for key, items in arrays:
        for item in items:
            out += [f"\n[[{key}]]"] + [_toml_line(k, v) for k, v in item.items()]
    return "\n".join(out).strip()


def _scenario_section(f: RunFacts) -> str:
    s = f.start
    copy, copy_text = f.run_dir / "scenario.toml", "not present"
    if copy.is_file():
        digest = file_sha256(copy)
        same = "same as" if digest == s.get("scenario_sha256") else "differs from"
        copy_text = f"sha256 {digest} ({same} the recorded scenario sha256)"
    facts = kv_table([
        ("Scenario file", s.get("scenario_file")), ("Scenario sha256", mono(s.get(
            "scenario_sha256"))), ("scenario.toml in run folder", copy_text),
        ("Seed", s.get("seed")), ("Git commit", mono(s.get("git_commit"))),
        ("Planned updates", s.get("planned_updates"))])
    files = s.get("data_files")
    data = [d for d in files if isinstance(d, dict)] if isinstance(files, list) else []
    data_html = (table(["Name", "Path", "sha256"], [[d.get("name"), mono(d.get("path")),
                                                    mono(d.get("sha256"))] for d in data])
                 if data else '<p class="none">No data files recorded.</p>')
    versions = s.get("versions") if isinstance(s.get("versions"), dict) else {}
    scenario = s.get("scenario") if isinstance(s.get("scenario"), dict) else {}
    return (f'<section id="scenario"><h2>Scenario and data</h2>{facts}<h3>Data files</h3>'
            f"{data_html}<h3>Versions</h3>"
            f"{kv_table(list(versions.items())) if versions else '<p>None recorded.</p>'}"
            "<h3>Resolved scenario</h3>"
            f"{'<pre>' + esc(scenario_toml(scenario)) + '</pre>' if scenario else '<p>None.</p>'}"
            "</section>")


def _training_section(f: RunFacts) -> str:
    t = f.updates
    if len(t) == 0:
        return '<section id="training"><h2>Training</h2><p class="none">No updates yet.</p>' \
               "</section>"
    resumes = tuple(x for x in (num(r.get("from_update")) for r in f.of_type("resumed"))
                    if math.isfinite(x))
    figs = []
    for spec in training_plots(t, resumes):
        try:
            uri, bucket = render_png(spec)
        except (ValueError, OverflowError) as exc:  # e.g. values near 1e308 from a divergence
            figs.append(f'<p class="none">Figure "{esc(spec.title)}" could not be drawn: '
                        f"{esc(exc)}</p>")
            continue
        agg = (f"<figcaption>Each plotted point aggregates {bucket} updates: the line is their "
               "mean and the band spans their minimum to maximum, so no single update is hidden; "
               "markers keep the worst flagged update of each group.</figcaption>"
               if bucket > 1 else "")
        figs.append(f'<figure><img src="{uri}" alt="{esc(spec.title)}">{agg}</figure>')
    headers, rows, attention = constraint_summary(t)
    cpo = cpo_summary(f.lines)
    cpo_html = '<p class="none">No CPO steps recorded.</p>'
    if cpo is not None:
        cases = [[c, k, f"{100 * k / cpo.updates:.1f}%"] for c, k in cpo.cases]
        ms = cpo.solve_ms
        timing = (f"<p>Dual solve time: median {float(np.median(ms)):.3g} ms, max "
                  f"{float(ms.max()):.3g} ms.</p>" if len(ms) else "")
        cpo_html = (table(["CPO case", "Updates", "Share"], cases)
                    + table(["Solver status", "Updates"], [list(r) for r in cpo.solver_status])
                    + timing)
    return (f'<section id="training"><h2>Training</h2><h3>Line search and KL</h3>'
            f"{kv_table(line_search_summary(t))}<h3>Constraints</h3>"
            f"{table(headers, rows, attention)}<h3>CPO steps</h3>{cpo_html}"
            f"<h3>Per-update figures</h3>{''.join(figs)}</section>")


def _exceptions_section(f: RunFacts) -> str:
    viol, failed, events = [], [], []
    current = {id(ln) for ln in current_updates(f.lines)}
    for ln in f.lines:
        kind = ln.get("type")
        if kind == "update" and id(ln) in current:
            bad = [c for c in constraint_rows(ln) if violated(c) == 1]
            if bad:
                viol.append([ln.get("seq"), ln.get("update"), ln.get("env_steps"), "; ".join(
                    f"{text(c.get('name'))}: {text(c.get('ep_cost'))} > limit "
                    f"{text(c.get('limit'))} (margin {text(c.get('margin'))})" for c in bad)])
            if ln.get("accepted") is False:
                cpo = ln.get("cpo") if isinstance(ln.get("cpo"), dict) else {}
                failed.append([ln.get("seq"), ln.get("update"), ln.get("backtracks"),
                               ln.get("kl"), ln.get("target_kl"), cpo.get("case")])
        elif kind == "nan_detected":
            detail = f"; detail {text(ln.get('detail'))}" if ln.get("detail") is not None else ""
            events.append([ln.get("seq"), kind, ln.get("update"),
                           f"where {text(ln.get('where'))}{detail}; action "
                           f"{text(ln.get('action'))}"])
        elif kind == "resumed":
            events.append([ln.get("seq"), kind, ln.get("from_update"),
                           f"checkpoint {text(ln.get('checkpoint'))}; cut tail "
                           f"{text(ln.get('cut_tail'))}"])
        elif kind == "run_finished" and ln.get("status") != "completed":
            events.append([ln.get("seq"), kind, ln.get("updates"),
                           f"status {text(ln.get('status'))}; reason {text(ln.get('reason'))}"])
    redone = (f'<p class="small">{f.updates.superseded} update rows written before a resume '
              "and redone after it are superseded and not listed here.</p>"
              if f.updates.superseded else "")
    return ('<section id="exceptions"><h2>Exceptions</h2>' + redone
            + f"<h3>Updates that violated a limit ({len(viol)})</h3>"
            + capped(["Seq", "Update", "Env steps", "Violated constraints"], viol,
                     "updates that violated a limit")
            + f"<h3>Updates whose line search failed ({len(failed)})</h3>"
            + capped(["Seq", "Update", "Backtracks", "KL", "Target KL", "CPO case"], failed,
                     "updates whose line search failed")
            + f"<h3>NaN, resume and abnormal-end events ({len(events)})</h3>"
            + capped(["Seq", "Event", "Update", "Detail"], events, "events") + "</section>")


def _flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def metrics_table(columns: list[tuple[str, dict[str, Any]]]) -> Html:
    """Rows = every metric name found (nested keys joined with '.'), columns = who."""
    flat = [(name, _flatten(m)) for name, m in columns]
    keys = list(dict.fromkeys(k for _, m in flat for k in m))
    return table(["Metric"] + [name for name, _ in flat],
                 [[k] + [m.get(k) for _, m in flat] for k in keys])


_ENVELOPE = {"seq", "type", "prev_hash", "hash", "policy", "baselines", "metrics",
             "constraints"}


def _result_block(ln: dict[str, Any]) -> str:
    """A backtest or evaluation line: its context, policy vs baselines, constraint costs."""
    own = ln.get("policy") if isinstance(ln.get("policy"), dict) else ln.get("metrics")
    label = ln.get("policy") if isinstance(ln.get("policy"), str) else "policy"
    scalars = {k: v for k, v in ln.items() if k not in _ENVELOPE and not isinstance(v, dict)}
    baselines = ln.get("baselines") if isinstance(ln.get("baselines"), dict) else {}
    if not isinstance(own, dict):
        # Metrics spread over the line itself: a column of their own only to compare with
        # baselines; otherwise they read best as plain facts.
        own = {k: v for k, v in scalars.items() if not math.isnan(num(v))} if baselines else {}
    # Settings such as the backtest's ``limits`` are dicts: shown flattened, as plain facts.
    context = [(k, v) for k, v in scalars.items() if k not in own] + list(_flatten(
        {k: v for k, v in ln.items() if k not in _ENVELOPE and isinstance(v, dict)}).items())
    columns = [(f"{text(label)} (under test)", own)] + [
        (text(k), v) for k, v in baselines.items() if isinstance(v, dict)]
    parts = [f"<h3>{esc(ln.get('type'))} at seq {esc(ln.get('seq'))}</h3>", kv_table(context)]
    if any(m for _, m in columns):
        parts.append(metrics_table(columns))
    cons = constraint_rows(ln)
    if cons:
        rows, attention = [], []
        for c in cons:
            mean, worst, limit = num(c.get("ep_cost_mean")), num(c.get("ep_cost_max")), \
                num(c.get("limit"))
            frac = num(c.get("frac_over_limit"))
            attention.append(bool(mean > limit or frac > 0))
            rows.append([c.get("name"), c.get("limit"), c.get("ep_cost_mean"),
                         c.get("ep_cost_max"), c.get("frac_over_limit"),
                         "mean over limit" if mean > limit else "some episodes over limit"
                         if frac > 0 or worst > limit else "within limit"
                         if math.isfinite(mean) else "unknown"])
        parts.append(table(["Constraint", "Limit", "Episode cost mean", "Episode cost max",
                            "Fraction of episodes over limit", "Verdict"], rows, attention))
    return "".join(parts)


def _results_section(f: RunFacts, kind: str, title: str) -> str:
    found = f.of_type(kind)
    shown = found[-CAP_RESULTS:]
    older = (f'<p class="more">{len(found) - len(shown)} earlier {esc(kind)} lines not shown.'
             "</p>" if len(found) > len(shown) else "")
    body = "".join(_result_block(ln) for ln in reversed(shown)) or \
        f'<p class="none">No {esc(kind)} lines recorded.</p>'
    return f'<section id="{kind}"><h2>{esc(title)}</h2>{body}{older}</section>'


def _signoff_section(f: RunFacts) -> str:
    decision = {"approve": "ok", "reject": "bad", "needs_changes": "warn"}
    states = signoff_states(f.lines, run_verified=f.verdict.ok)
    rows = []
    for s in states:
        state = (Html(f"<td>{badge('stale', 'warn')} {esc(s.stale_reason)}</td>") if s.stale
                 else Html(f"<td>{badge('current', 'ok')}</td>"))
        rows.append([s.seq, s.reviewer, s.role,
                     Html(f"<td>{badge(s.decision, decision.get(s.decision, 'muted'))}</td>"),
                     s.comment, s.time, s.reviewed_seq, mono(s.reviewed_head_hash), state])
    standing = (f"<p>Standing: <strong>{esc(overall_state(states))}</strong> (each reviewer's "
                "latest current sign-off counts; a sign-off goes stale when evidence is added "
                "after the head it reviewed, or when the run no longer verifies).</p>"
                if states else "")
    return ('<section id="signoffs"><h2>Sign-offs</h2>' + standing
            + capped(["Seq", "Reviewer", "Role", "Decision", "Comment", "Time", "Reviewed seq",
                      "Reviewed head hash", "State"], rows, "sign-offs") + "</section>")


def _files_section(f: RunFacts) -> str:
    n_verified = f.verdict.chain.n_lines
    latest: dict[str, dict[str, Any]] = {}
    for ln in f.of_type("file"):
        latest[str(ln.get("path"))] = ln
    rows, attention = [], []
    for path, ln in sorted(latest.items(), key=lambda kv: -num(kv[1].get("seq"))):
        problem = next((p for p in f.verdict.file_problems if p.startswith(path + ": ")), None)
        # Judged on the line shown: an earlier verified record of the same path does not vouch
        # for a later, unverified one.
        state = problem or ("matches recorded sha256" if num(ln.get("seq")) < n_verified
                            else "not verified")
        attention.append(state != "matches recorded sha256")
        rows.append([mono(path), ln.get("role"), mono(ln.get("sha256")), ln.get("bytes"),
                     ln.get("seq"), state])
    order = sorted(range(len(rows)), key=lambda i: not attention[i])  # problems first
    return ('<section id="files"><h2>Files</h2><p>Latest record of each file bound into the '
            "chain, problems first, then newest first.</p>"
            + capped(["Path", "Role", "sha256", "Bytes", "Recorded at seq", "State"],
                     [rows[i] for i in order], "files", [attention[i] for i in order])
            + "</section>")


_SECTIONS = (("glance", "At a glance"), ("scenario", "Scenario and data"),
             ("training", "Training"), ("exceptions", "Exceptions"),
             ("evaluation", "Evaluation"), ("backtest", "Backtest"), ("signoffs", "Sign-offs"),
             ("files", "Files"))


def render(f: RunFacts) -> str:
    """The report page for ``f``, as one string."""
    generated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    nav = "".join(f'<li><a href="#{k}">{esc(title)}</a></li>' for k, title in _SECTIONS)
    body = [_header(f, generated), f"<nav><strong>Contents</strong><ol>{nav}</ol></nav>",
            f'<div id="glance"><h2>At a glance</h2>{_glance(f)}</div>',
            _scenario_section(f), _training_section(f), _exceptions_section(f),
            _results_section(f, "evaluation", "Evaluation"),
            _results_section(f, "backtest", "Backtest against baselines"),
            _signoff_section(f), _files_section(f)]
    title = esc(f"safe-trpo report: {f.start.get('run_id', f.run_dir.name)}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{CSS}</style></head><body>{''.join(body)}"
            "</body></html>\n")


def _facts(run_dir: Path) -> RunFacts:
    run_dir = Path(run_dir)
    verdict = verify_run(run_dir)  # UserError for a missing folder or log
    lines = read_lines(run_dir)
    start = next((ln for ln in lines if ln.get("type") == "run_started"), {})
    scenario = start.get("scenario") if isinstance(start.get("scenario"), dict) else {}
    cons = scenario.get("constraints") if isinstance(scenario.get("constraints"), list) else []
    names = [str(c.get("name")) for c in cons if isinstance(c, dict)]
    return RunFacts(run_dir, verdict, lines, update_table(lines, names))


def build_report_html(run_dir: Path) -> str:
    """The report of the run in ``run_dir`` as HTML text, without writing or appending anything.

    Raises UserError if ``run_dir`` is not a run folder.
    """
    return render(_facts(run_dir))


def write_report(run_dir: Path) -> Path:
    """Write the report atomically; bind it into the audit chain when that is allowed.

    The page shows the verdict computed before writing. When the chain is intact and the run has
    finished (see ``binding``) it goes to ``<run_dir>/report.html`` and is appended as a ``file``
    line (role ``report``). Otherwise it goes to ``<run_dir>/report.unbound.html`` and nothing is
    appended: overwriting a bound report.html would make ``verify`` fail on it. The page says
    which. Returns the path written; UserError for a bad folder.
    """
    f = _facts(run_dir)
    bind = binding(f) is None
    path = atomic_write(f.run_dir / (REPORT_FILE if bind else UNBOUND_FILE), render(f))
    if bind:
        with AuditLog(f.run_dir) as log:  # AuditLog serialises writers itself
            log.append_file(f.run_dir, path, role="report")
    return path
