"""How a sweep summary reads: the table rows (CLI and review app) and ``sweep.html``.

Split from ``summary`` (which computes the summary from the run folders); every value that
reaches the page is escaped.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def fmt_spread(s: dict[str, Any] | None) -> str:
    """``median [q25, q75] (min..max)``, or n/a."""
    if s is None:
        return "n/a"
    return (f"{fmt(s['median'])} [{fmt(s['q25'])}, {fmt(s['q75'])}] "
            f"({fmt(s['min'])}..{fmt(s['max'])})")


def fmt_frac(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def summary_table(summary: dict[str, Any]) -> list[dict[str, str]]:
    """One flat row of display strings per configuration (the CLI table, the review app)."""
    rows = []
    for c in summary["configurations"]:
        costs = "; ".join(f"{k['name']} {fmt_spread(k['ep_cost'])} / limit {fmt(k['limit'])}"
                          for k in c["constraints"]) or ("none" if c["n_completed"] else "n/a")
        rows.append({"configuration": c["label"],
                     "runs": f"{c['n_completed']}/{c['n_runs']} completed"
                             + (f", {c['n_failed']} failed" if c["n_failed"] else "")
                             + (f", {c['n_pending']} pending" if c["n_pending"] else ""),
                     "final return": fmt_spread(c["return"]), "episode cost vs limit": costs,
                     "within all limits": fmt_frac(c["frac_within_all_limits"]),
                     "training episodes over limit": _overs(c)})
    return rows


def _overs(config: dict[str, Any]) -> str:
    """``speed 12 of 4000 (worst 31)`` per constraint, over the completed runs' training."""
    parts = []
    for k in config["constraints"]:
        over = k.get("training_episodes_over")
        bound = "at least " if k.get("training_episodes_over_at_least") else ""
        count = ("not recorded" if over is None
                 else f"{bound}{over} of {k.get('training_episodes', 0)}")
        worst = k.get("training_worst_episode")
        parts.append(f"{k['name']} {count}" + ("" if worst is None else f" (worst {fmt(worst)})"))
    return "; ".join(parts) or "n/a"


def summary_text(summary: dict[str, Any]) -> str:
    """``summary_table`` as aligned plain-text columns (what ``safe-trpo sweep`` prints)."""
    rows = summary_table(summary)
    if not rows:
        return "no configurations"
    table = [list(rows[0]), *[list(r.values()) for r in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _link(rel: str | None, text: str) -> str:
    return f'<a href="{_e(quote(rel, safe="/"))}">{_e(text)}</a>' if rel else _e(text)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _runs_table(config: dict[str, Any]) -> str:
    names = [k["name"] for k in config["constraints"]]
    rows = []
    for r in config["runs"]:
        target = r["report"] or (r["run_dir"] + "/" if r["run_dir"] else None)
        costs = [fmt(r.get("final_costs", {}).get(n)) for n in names]
        within = {True: "yes", False: "NO", None: "unknown"}[r.get("within_limits")]
        if r.get("within_basis"):
            within += f" ({r['within_basis']})"
        overs = r.get("episodes_over") or {}
        within += "; training episodes over: " + (", ".join(
            f"{n} {'not recorded' if overs.get(n) is None else overs[n]}" for n in names)
            or "none")
        rows.append([_e(r["seed"]), _e(r["state"]), _e(r["attempts"]),
                     _e(r["verify"] or "no run folder"),
                     _e(fmt(r.get("final_return"))), *map(_e, costs), _e(within),
                     _link(target, "report" if r["report"] else "run folder")
                     if target else "", _e(r["reason"])])
    return _table(["seed", "state", "attempts", "verification", "final return",
                   *[f"{n} cost" for n in names], "within limits", "link", "reason"], rows)


_CSS = ("body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left;"
        "vertical-align:top}th{background:#eee}code{background:#f4f4f4}")


def render_html(summary: dict[str, Any]) -> str:
    """``sweep.html``: self-contained (no network), every value escaped, relative links."""
    overview = [[_e(v) for v in row.values()] for row in summary_table(summary)]
    headers = list(summary_table(summary)[0]) if overview else ["configuration"]
    parts = [f"<h1>Sweep {_e(summary['sweep_id'])}</h1>",
             f"<p>Updated {_e(summary['updated'])}; seeds {_e(summary['seeds'])}; backend "
             f"{_e(summary['backend'])}.</p>",
             "<p>Scenarios: " + ", ".join(f"<code>{_e(s['path'])}</code> (sha256 "
                                          f"{_e(s['sha256'][:12])})"
                                          for s in summary["scenarios"]) + "</p>",
             f"<p>{_e(summary['method']['text'])}</p>", "<h2>Configurations</h2>",
             _table(headers, overview)]
    for c in summary["configurations"]:
        parts += [f"<h2>{_e(c['label'])}</h2>",
                  f"<p>Overrides: <code>{_e(' '.join(c['overrides']) or 'none')}</code></p>",
                  _runs_table(c)]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>Sweep {_e(summary['sweep_id'])}</title><style>{_CSS}</style></head><body>"
            + "".join(parts) + "</body></html>\n")
