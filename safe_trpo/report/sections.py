"""The body sections of the HTML run report (``report.py`` assembles the page).

Each ``_..._section`` takes the run's ``RunFacts`` and returns its ``<section>`` as markup. The
same rule as in ``report.py`` holds: every string from the audit log is untrusted and escaped
(``report_html.esc`` / the table helpers); markup built here is wrapped in ``Html``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from safe_trpo.record.audit import regular_file_sha256
from safe_trpo.record.keys import KEYRING_ENV, configured_keyring
from safe_trpo.record.signoff import decision_changes, overall_state, signoff_states
from safe_trpo.report.facts import RunFacts
from safe_trpo.report.html import Html, badge, capped, esc, kv_table, mono, table, text
from safe_trpo.report.plots import (
    constraint_rows,
    constraint_summary,
    cpo_summary,
    current_updates,
    final_evaluation,
    line_search_summary,
    num,
    render_png,
    training_plots,
    violated,
)
from safe_trpo.report.verdict_html import cost_units, verdict_block

CAP_RESULTS = 5  # latest evaluation / backtest lines shown


def _glance(f: RunFacts) -> str:
    t = f.updates
    viol = {n: int((c["violated"] == 1).sum()) for n, c in t.cons.items()}
    any_viol = int(np.any([c["violated"] == 1 for c in t.cons.values()], axis=0).sum()) \
        if t.cons and len(t) else 0
    states = signoff_states(f.lines, run_verified=f.verdict.ok)
    stale = sum(s.stale for s in states)
    redone = (f" ({t.superseded} more rows superseded: redone after a resume, not counted)"
              if t.superseded else "")
    return verdict_block(f) + kv_table([
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
    digest = regular_file_sha256(copy)  # never through a symlink: the folder is untrusted
    if copy.is_symlink():
        copy_text = "a symbolic link (not followed)"
    elif digest is not None:
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
    for spec in training_plots(t, resumes, final_evaluation(f.lines), cost_units(f)):
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
    keyring = configured_keyring()
    states = signoff_states(f.lines, run_verified=f.verdict.ok, keyring=keyring)
    sig_class = {"verified": "ok", "unverified identity": "warn"}
    rows = []
    for s in states:
        state = (Html(f"<td>{badge('stale', 'warn')} {esc(s.stale_reason)}</td>") if s.stale
                 else Html(f"<td>{badge('current', 'ok')}</td>"))
        rows.append([s.seq, s.reviewer, s.role,
                     Html(f"<td>{badge(s.decision, decision.get(s.decision, 'muted'))}</td>"),
                     s.comment, s.time, s.reviewed_seq, mono(s.reviewed_head_hash), state,
                     Html(f"<td>{badge(s.signature, sig_class.get(s.signature, 'bad'))} "
                          f"{esc(s.signature_detail)}</td>")])
    against = (f"checked against the keyring {esc(os.environ[KEYRING_ENV])}" if keyring
               is not None else "no keyring configured (report --keyring K), so identities "
               "are unverified")
    standing = (f"<p>Standing: <strong>{esc(overall_state(states))}</strong> (each reviewer's "
                "latest current sign-off with a valid signature counts; a sign-off goes stale "
                "when evidence is added after the head it reviewed, or when the run no longer "
                f"verifies). Signatures: {against}.</p>" if states else "")
    changes = "".join(f"<p>Decision changed: {esc(c)}</p>" for c in decision_changes(states))
    return ('<section id="signoffs"><h2>Sign-offs</h2>' + standing + changes
            + capped(["Seq", "Reviewer", "Role", "Decision", "Comment", "Time", "Reviewed seq",
                      "Reviewed head hash", "State", "Signature"], rows, "sign-offs")
            + "</section>")


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
