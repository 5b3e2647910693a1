"""The HTML run report's binding to its run: tampering, interrupted and resumed runs, and
the report file itself recorded in the audit chain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safe_trpo.record.audit import AUDIT_FILE, AuditLog, read_lines, verify_run
from safe_trpo.report.build import (
    REPORT_FILE,
    UNBOUND_FILE,
    build_report_html,
    signoff_states,
    write_report,
)
from safe_trpo.report.plots import current_updates
from safe_trpo.sweep.summary import run_result
from tests.report.fixtures import crashed_and_resumed_run, make_run, update_line


def test_write_binds_report_and_verify_sees_later_edits(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run1")
    n_before = len(read_lines(run))
    path = write_report(run)
    assert path == run / REPORT_FILE and path.is_file()
    lines = read_lines(run)
    assert len(lines) == n_before + 1
    assert lines[-1]["type"] == "file" and lines[-1]["role"] == "report"
    assert lines[-1]["path"] == REPORT_FILE
    assert f"seq {n_before - 1}, <code class=\"hash\">{lines[-2]['hash']}" in path.read_text()
    assert verify_run(run).ok
    assert not list(run.glob(".report*.tmp"))  # no temp file left behind
    # the sign-off stays current: a report file adds no evidence
    assert [s.stale for s in signoff_states(lines)] == [False]
    path.write_text(path.read_text().replace("Dana Risk", "Someone Else"))
    verdict = verify_run(run)
    assert not verdict.ok and any(p.startswith(REPORT_FILE) for p in verdict.file_problems)
    # rewriting reports the problem it found, then re-binds the new file
    page = write_report(run).read_text()
    assert "FILES DO NOT MATCH" in page and verify_run(run).ok


def test_tampered_line_is_reported_with_its_seq(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run1")
    raw = (run / AUDIT_FILE).read_text().splitlines()
    obj = json.loads(raw[8])
    obj["kl"] = 0.001  # a quiet edit of one update line
    raw[8] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    (run / AUDIT_FILE).write_text("\n".join(raw) + "\n")
    n_lines = len(raw)
    page = write_report(run).read_text()
    assert "TAMPERED" in page and "line seq 8" in page
    assert "v-bad" in page and "Lines from seq 8 on are shown as found" in page
    assert "not bound into the audit chain" in page
    assert "completed (from an unverified line)" in page
    assert "the run no longer verifies" in page  # its sign-off no longer holds
    assert len(read_lines(run)) == n_lines  # nothing appended to a broken chain


def test_interrupted_run_renders_and_log_is_left_alone(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run1", n_updates=12, finish=False, extras=False)
    log_path = run / AUDIT_FILE
    log_path.write_bytes(log_path.read_bytes() + b'{"seq": 14, "type": "upd')  # crash mid-line
    before = log_path.read_bytes()
    page = write_report(run).read_text()
    assert "INTERRUPTED" in page and "v-warn" in page
    assert "interrupted (log cut off mid-line" in page
    assert "Updates recorded</th><td>12 of 12 planned" in page
    assert log_path.read_bytes() == before  # the cut tail is the trainer's to move aside


def test_resumed_run(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run1", n_updates=12, finish=False, extras=False)
    with open(run / AUDIT_FILE, "ab") as f:
        f.write(b'{"seq": 14, "ty')  # crash mid-line
    rng = np.random.default_rng(5)
    with AuditLog(run) as log:  # moves the cut tail aside, as a resume does
        log.append("resumed", from_update=8, checkpoint="checkpoints/update_000008.pt",
                   cut_tail=log.cut_tail)
        for i in range(8, 12):  # the trainer redoes updates 8..11 from the checkpoint
            log.append("update", **update_line(i, rng, violate=i == 10, fail=False))
        log.append("run_finished", status="completed", updates=12, env_steps=2048 * 12,
                   reason=None)
    page = write_report(run).read_text()
    assert "Resumes</th><td class=\"num\">1</td>" in page
    assert "NaN, resume and abnormal-end events (2)" in page and "audit.jsonl.cut-14" in page
    assert "Updates that violated a limit (2)" in page  # update 5 before, 10 after the resume
    assert "12 of 12 planned (4 more rows superseded" in page
    assert verify_run(run).ok and read_lines(run)[-1]["role"] == "report"


def test_updates_redone_after_a_resume_count_once(tmp_path: Path) -> None:
    run = crashed_and_resumed_run(tmp_path / "run1")
    lines = read_lines(run)
    resumed_seq = next(ln["seq"] for ln in lines if ln["type"] == "resumed")
    rows = current_updates(lines)
    assert [r["update"] for r in rows] == list(range(12))
    assert [r["seq"] > resumed_seq for r in rows] == [False] * 8 + [True] * 4
    page = build_report_html(run)
    assert "Updates recorded</th><td>12 of 12 planned (2 more rows superseded" in page
    assert "Updates that violated a limit (2)" in page  # 5 and 10, not the old 8 and 9
    assert "Updates whose line search failed (0)" in page
    assert "2 update rows written before a resume" in page
    # constraint summary: 2 violated updates, first 5, last 10; CPO cases over 12 updates
    assert ('<td>temperature</td><td class="num">5</td><td class="num">11</td>'
            '<td class="num">1</td><td class="num">2</td><td class="num">5</td>'
            '<td class="num">10</td>') in page
    assert '<td>recovery</td><td class="num">2</td><td>16.7%</td>' in page
    assert "where environment; detail obs NaN in copy 3; action run stopped" in page
    result = run_result(run)  # the sweep's figures use the same rows
    assert (result["updates"], result["superseded_updates"]) == (12, 2)
    last5 = [r["return_mean"] for r in rows[-5:]]
    assert result["final_return"] == pytest.approx(sum(last5) / 5)


def test_unbound_report_never_replaces_a_bound_one(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run1", n_updates=6, finish=False, extras=False)
    with AuditLog(run) as log:
        log.append("run_finished", status="interrupted", updates=6, env_steps=2048 * 6,
                   reason="stopped by the user (SIGINT/SIGTERM)")
    bound = write_report(run)
    assert bound == run / REPORT_FILE and verify_run(run).ok
    before = bound.read_bytes()
    with AuditLog(run) as log:  # the run is resumed: the trainer is writing its log again
        log.append("resumed", from_update=6, checkpoint="checkpoints/update_000006.pt",
                   cut_tail=None)
    n_lines = len(read_lines(run))
    path = write_report(run)
    assert path == run / UNBOUND_FILE and path.is_file()
    assert bound.read_bytes() == before
    assert len(read_lines(run)) == n_lines  # nothing appended
    verdict = verify_run(run)
    assert verdict.ok and not verdict.file_problems
    page = path.read_text()
    assert "not bound into the audit chain: the run has no run_finished line" in page
    assert f"saves it as <code>{UNBOUND_FILE}</code>" in page
    assert not list(run.glob(".report*.tmp"))


def test_file_state_is_judged_on_the_line_shown(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run1")
    ckpt = run / "checkpoints" / "update_000029.pt"
    with AuditLog(run) as log:  # recorded again, then the chain is broken before that record
        log.append("evaluation", episodes=1, constraints=[])
        bad_seq = log.next_seq - 1
        log.append_file(run, ckpt, role="checkpoint")
    raw = (run / AUDIT_FILE).read_text().splitlines()
    obj = json.loads(raw[bad_seq])
    obj["episodes"] = 1000
    raw[bad_seq] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    (run / AUDIT_FILE).write_text("\n".join(raw) + "\n")
    files = build_report_html(run).split('<section id="files">')[1]
    (row,) = [r for r in files.split("<tr") if "update_000029.pt" in r]
    assert "not verified" in row and "matches" not in row
