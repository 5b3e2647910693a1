"""HTML building blocks of the run report: escaping by default, tables, badges, the stylesheet.

Every value from the audit log is untrusted; it is escaped unless it is ``Html`` (markup built
by these helpers).
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

CAP_ROWS = 100  # rows per long table; the rest are counted, not listed


class Html(str):
    """Markup built by this module: inserted as is. Any other value is escaped."""


def text(value: Any) -> str:
    """A log value as plain display text: numbers to 4 significant digits, null as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)[:300]
    return str(value)


def esc(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else text(value), quote=True)


def atomic_write(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the whole new one.

    A temp file beside ``path`` is fsynced, then renamed over it; it is removed on any failure
    (Ctrl-C included). Used for run reports and sweep summaries alike. Returns ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        # mkstemp makes the file owner-only; the published file gets the user's umask like
        # any other file they create (a reviewer's group may need to read the report).
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())  # the rename must never publish a file whose data is not on disk
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask would set it
    for every thread for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def cell(value: Any) -> str:
    if isinstance(value, Html):
        return value
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f'<td class="num">{esc(value)}</td>' if numeric else f"<td>{esc(value)}</td>"


def table(headers: list[str], rows: list[list[Any]], attention: list[bool] | None = None) -> Html:
    """An HTML table; cells are escaped unless they are ``Html`` (a whole ``<td>``)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        ('<tr class="attn">' if attention and attention[i] else "<tr>")
        + "".join(cell(v) for v in row) + "</tr>" for i, row in enumerate(rows))
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def kv_table(pairs: list[tuple[str, Any]]) -> Html:
    rows = "".join(f"<tr><th>{esc(k)}</th>{cell(v)}</tr>" for k, v in pairs)
    return Html(f'<table class="kv"><tbody>{rows}</tbody></table>')


def mono(value: Any) -> Html:
    """A hash or path cell in monospace that wraps anywhere."""
    return Html(f'<td><code class="hash">{esc(text(value))}</code></td>')


def badge(label: str, level: str) -> Html:
    """level: ok | warn | bad | muted (CSS classes)."""
    return Html(f'<span class="badge {level}">{esc(label)}</span>')


def capped(headers: list[str], rows: list[list[Any]], what: str,
           attention: list[bool] | None = None) -> str:
    """``table`` of the first CAP_ROWS rows, then "... and N more <what>"."""
    if not rows:
        return f'<p class="none">No {esc(what)}.</p>'
    shown = table(headers, rows[:CAP_ROWS], attention[:CAP_ROWS] if attention else None)
    rest = len(rows) - CAP_ROWS
    return shown + (f'<p class="more">... and {rest} more {esc(what)}</p>' if rest > 0 else "")


# Light theme, system fonts only (nothing fetched). Print: A4, one section per page, colours kept
# for badges and flagged rows, table headers repeated on each page, rows never split.
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#212121;
background:#fff;max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 10px}h3{font-size:15px;margin:18px 0 6px}
h2{font-size:18px;border-bottom:2px solid #e0e0e0;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #e0e0e0;padding:3px 6px;text-align:left;vertical-align:top;
overflow-wrap:break-word}
th{background:#f5f5f5;font-weight:600}table.kv th{width:28%}
td.num{text-align:right;font-variant-numeric:tabular-nums}table.kv td.num{text-align:left}
code,pre{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:.88em}
code.hash{overflow-wrap:anywhere;word-break:break-all}
pre{background:#fafafa;border:1px solid #e0e0e0;padding:8px;white-space:pre-wrap;
overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 .5em;border-radius:4px;color:#fff;font-weight:600;
font-size:.88em}
.ok{background:#2e7d32}.warn{background:#b26a00}.bad{background:#c62828}.muted{background:#616161}
.verdict{border-left:6px solid;padding:4px 12px;margin:12px 0;background:#fafafa}
.v-ok{border-color:#2e7d32}.v-warn{border-color:#b26a00}.v-bad{border-color:#c62828;
background:#ffebee}.v-muted{border-color:#616161}
tr.attn td{background:#fff3e0}
figure{margin:10px 0;break-inside:avoid}figure img{width:100%;height:auto;display:block}
figcaption,.small,.more,.none{font-size:12px;color:#616161}.more{font-style:italic}
nav ol{columns:2;margin:4px 0}
@page{size:A4;margin:14mm}
@media print{body{max-width:none;padding:0;font-size:11px}table{font-size:10px}
section{break-before:page}h2,h3{break-after:avoid}tr,figure,.verdict{break-inside:avoid}
thead{display:table-header-group}a{color:inherit;text-decoration:none}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""
