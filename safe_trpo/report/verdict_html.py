"""The report's verdict block: the first thing under "At a glance" (``record.verdict`` decides,
this module only lays it out).

The verdict is drawn from the chain's *verified* lines only, so a tampered tail cannot make a run
look better than its verified part.
"""

from __future__ import annotations

from safe_trpo.record.signoff import signoff_states
from safe_trpo.record.verdict import LimitCount, Verdict, integrity_word, run_verdict
from safe_trpo.report.facts import RunFacts
from safe_trpo.report.html import Html, badge, esc, kv_table, table

_STATUS_LEVEL = {"completed": "ok", "failed": "bad", "interrupted": "warn"}
_WITHIN = {True: ("within every limit", "ok"), False: ("OVER A LIMIT", "bad"),
           None: ("unknown", "warn")}


def report_verdict(f: RunFacts) -> Verdict:
    """The run's verdict as ``record.verdict`` computes it for every other reader."""
    lines = f.verdict.chain.lines
    return run_verdict(lines, integrity_word(f.verdict.chain.status, f.verdict.file_problems),
                       signoff_states(lines, run_verified=f.verdict.ok))


def cost_units(f: RunFacts) -> dict[str, str]:
    """Constraint name -> unit of its episode cost (``envs.info.cost_units``)."""
    from envs.info import cost_units as env_cost_units

    return env_cost_units(f.section("env").get("id"))


def _count(c: LimitCount | None) -> str:
    if c is None:
        return "not recorded"
    if c.over is None:
        return "not recorded" + (f" ({c.note})" if c.note else "")
    of = f" of {c.episodes}" if c.episodes is not None else ""
    bound = "at least " if c.note.startswith("at least") else ""
    return f"{bound}{c.over}{of}"


def _worst(c: LimitCount | None) -> str:
    return "not recorded" if c is None or c.worst is None else f"{c.worst:.4g}"


def verdict_block(f: RunFacts) -> str:
    """The verdict as a coloured box: status, integrity, limits (with counts), sign-offs."""
    v = report_verdict(f)
    within, level = _WITHIN[v.limits.within]
    detail = esc(v.limits.detail)  # carries values from the record: untrusted
    basis = {"evaluation": f"final policy on evaluation ({detail})",
             "end of training": f"end of training, {detail} (not evaluated: run "
                                "<code>safe-trpo evaluate</code>)",
             "none": "no update rows"}[v.limits.basis]
    final = {c.name: c for c in v.limits.counts}
    rows, attention = [], []
    for t in v.training:
        c = final.get(t.name)
        rows.append([t.name, t.limit, _count(c), _worst(c), _count(t), _worst(t)])
        attention.append(bool((c is not None and c.kept is not True) or t.over))
    limits_table = table(["Constraint", "Limit (episode cost)", "Final: episodes over limit",
                          "Final: worst episode", "Training: episodes over limit",
                          "Training: worst episode"], rows, attention) if rows else ""
    facts = kv_table([
        ("Run status", Html(f"<td>{badge(v.status, _STATUS_LEVEL.get(v.status, 'warn'))} "
                            f"{esc(v.reason)}</td>")),
        ("Integrity", Html(f"<td>{badge(v.integrity, 'ok' if v.integrity_ok else 'bad')}"
                           "</td>")),
        ("Limits at the end", Html(f"<td>{badge(within, level)} {basis}</td>")),
        ("Sign-offs", v.signoffs.text())])
    notes = sorted({c.note.removeprefix("at least; ") for c in (*v.training, *v.limits.counts)
                    if c.note})
    note = (f'<p class="small">{esc("; ".join(notes))}. Episode counts are recorded per update '
            "row from the record format that has <code>episodes_over</code> on.</p>"
            if notes else "")
    return (f'<div class="verdict v-{v.level}"><p><strong>Verdict</strong></p>{facts}'
            f"{limits_table}{note}</div>")
