"""A run folder read back for reuse (resume, evaluation, backtests), only if it still holds up.

Continuing or evaluating a run adds lines to its record, so the record must first be what it
claims: the chain verifies (a crash-cut last line is allowed: that is what resume is for), every
recorded file still matches its hash, and the data files the scenario names still have the
hashes recorded when the run started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safe_trpo.config import Scenario, data_file_hashes, scenario_from_dict
from safe_trpo.errors import UserError
from safe_trpo.record.audit import verify_run


@dataclass(frozen=True)
class RunRecord:
    run_dir: Path
    lines: list[dict[str, Any]]  # the verified lines
    started: dict[str, Any]  # the run_started line
    scenario: Scenario
    checkpoint: Path | None  # newest recorded checkpoint (its hash verified)


def read_run_record(run_dir: Path) -> RunRecord:
    run_dir = Path(run_dir)
    verdict = verify_run(run_dir)
    if verdict.chain.status in ("tampered", "empty"):
        raise UserError(f"{run_dir}: audit chain fails verification ({verdict.chain.message})")
    if verdict.file_problems:
        raise UserError(f"{run_dir}: recorded files do not match the record "
                        f"({verdict.file_problems[0]})")
    lines = verdict.chain.lines
    started = next((ln for ln in lines if ln.get("type") == "run_started"), None)
    if started is None:
        raise UserError(f"{run_dir}: no run_started line; not a safe-trpo run")
    scenario = scenario_from_dict(started["scenario"], source=f"{run_dir}/audit.jsonl")
    now = {d["name"]: d["sha256"] for d in data_file_hashes(scenario)}
    then = {d["name"]: d["sha256"] for d in started.get("data_files", [])}
    if now != then:
        changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
        raise UserError(f"{run_dir}: data file(s) {', '.join(changed)} changed since the run "
                        f"started (hash differs from run_started)")
    checkpoints = [ln for ln in lines if ln.get("type") == "file"
                   and ln.get("role") == "checkpoint"]
    checkpoint = run_dir / checkpoints[-1]["path"] if checkpoints else None
    return RunRecord(run_dir, lines, started, scenario, checkpoint)
