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

This module holds the header and the page; the run facts are in ``facts`` and the body
sections in ``sections`` (``scenario_toml`` and ``metrics_table`` are re-exported from here).
"""

from __future__ import annotations

import time
from pathlib import Path

from safe_trpo import __version__
from safe_trpo.record.audit import AuditLog, read_lines, verify_run

# One staleness rule for the review app and the report, kept with the sign-off writer; re-exported
# here so callers of the report can use it too.
from safe_trpo.record.signoff import signoff_states as signoff_states
from safe_trpo.report.comparison import comparison_section
from safe_trpo.report.facts import RunFacts, _verdict_level, binding, run_status
from safe_trpo.report.html import CSS, Html, atomic_write, badge, esc, kv_table
from safe_trpo.report.plots import update_table
from safe_trpo.report.sections import CAP_RESULTS as CAP_RESULTS
from safe_trpo.report.sections import (
    _exceptions_section,
    _files_section,
    _glance,
    _results_section,
    _scenario_section,
    _signoff_section,
    _training_section,
)
from safe_trpo.report.sections import metrics_table as metrics_table
from safe_trpo.report.sections import scenario_toml as scenario_toml

REPORT_FILE = "report.html"
UNBOUND_FILE = "report.unbound.html"  # where a report goes when it may not be bound (binding)


# --------------------------------------------------------------------------- page

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


_SECTIONS = (("glance", "At a glance"), ("scenario", "Scenario and data"),
             ("training", "Training"), ("exceptions", "Exceptions"),
             ("evaluation", "Evaluation"), ("comparison", "Comparison with baselines"),
             ("backtest", "Backtest"), ("signoffs", "Sign-offs"),
             ("files", "Files"))


def render(f: RunFacts) -> str:
    """The report page for ``f``, as one string."""
    generated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    nav = "".join(f'<li><a href="#{k}">{esc(title)}</a></li>' for k, title in _SECTIONS)
    # The verdict comes right after the header, before the contents: it is what a reviewer
    # reads first.
    body = [_header(f, generated), f'<div id="glance"><h2>At a glance</h2>{_glance(f)}</div>',
            f"<nav><strong>Contents</strong><ol>{nav}</ol></nav>",
            _scenario_section(f), _training_section(f), _exceptions_section(f),
            _results_section(f, "evaluation", "Evaluation"), comparison_section(f.lines),
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
