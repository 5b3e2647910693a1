"""What every report section reads: the run folder, its integrity verdict and its lines.

``RunFacts`` is built once per report; ``run_status`` and ``binding`` are the two judgements the
header and ``write_report`` make from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safe_trpo.record.anchor import run_ledger_problem
from safe_trpo.record.audit import RunVerdict
from safe_trpo.report.html import text
from safe_trpo.report.plots import UpdateTable, num


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
    if problem := run_ledger_problem(f.run_dir, f.lines, f.verdict.chain.status):
        return f"its ledger disagrees: {problem}"  # appending would be refused
    return None


def _verdict_level(v: RunVerdict) -> str:
    if v.ok:
        return "ok"
    if v.chain.status == "interrupted" and not v.file_problems:
        return "warn"
    return "muted" if v.chain.status == "empty" else "bad"
