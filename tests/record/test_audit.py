"""The audit chain: the DESIGN.md contract, tamper detection, interruption, resumable append."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from safe_trpo.record.audit import (
    AUDIT_FILE,
    GENESIS_HASH,
    AuditLog,
    verify_chain_bytes,
    verify_run,
)


def make_log(run_dir: Path, n: int = 6) -> Path:
    with AuditLog(run_dir) as log:
        log.append("run_started", scenario={"env": {"id": "X"}}, seed=0, note="café ✓")
        for i in range(n - 2):
            log.append("update", update=i, kl=0.001 * i, constraints=[], return_mean=None)
        log.append("run_finished", status="completed")
    return run_dir / AUDIT_FILE


def test_lines_follow_the_contract_exactly(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    prev = GENESIS_HASH
    for seq, raw in enumerate(path.read_text(encoding="utf-8").splitlines()):
        obj = json.loads(raw)
        assert obj["seq"] == seq and obj["prev_hash"] == prev
        body = {k: v for k, v in obj.items() if k != "hash"}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert obj["hash"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
        prev = obj["hash"]
    assert verify_run(tmp_path).ok


@pytest.mark.parametrize("line_no", [0, 2, 5])
def test_changing_one_byte_of_any_line_names_that_line(tmp_path: Path, line_no: int) -> None:
    path = make_log(tmp_path)
    lines = path.read_bytes().split(b"\n")
    target = bytearray(lines[line_no])
    pos = target.index(b'"type"') + 9  # a byte inside the type value
    target[pos] = ord("Z") if target[pos] != ord("Z") else ord("Y")
    lines[line_no] = bytes(target)
    path.write_bytes(b"\n".join(lines))
    verdict = verify_run(tmp_path)
    assert not verdict.ok and verdict.chain.status == "tampered"
    assert verdict.chain.first_bad_seq == line_no
    assert f"seq {line_no}" in verdict.summary


def test_rehashed_edit_is_caught_by_the_next_line(tmp_path: Path) -> None:
    # An editor who recomputes the edited line's own hash still breaks the link to the next.
    path = make_log(tmp_path)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    from safe_trpo.record.audit import canonical_json, line_hash

    lines[2]["kl"] = 0.5
    lines[2]["hash"] = line_hash(lines[2])
    path.write_text("".join(canonical_json(x) + "\n" for x in lines))
    verdict = verify_chain_bytes(path.read_bytes())
    assert verdict.status == "tampered" and verdict.first_bad_seq == 3


def test_deleted_and_reordered_lines_are_caught(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:2] + lines[3:]))
    assert verify_chain_bytes(path.read_bytes()).first_bad_seq == 2
    path.write_bytes(b"\n".join([lines[1], lines[0], *lines[2:]]))
    assert verify_chain_bytes(path.read_bytes()).first_bad_seq == 0


def test_cut_off_last_line_is_an_interruption_and_append_continues(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    data = path.read_bytes()
    # A crash in the middle of writing line seq 6: its ledger entry never committed.
    partial = b'{"episodes":3,"prev_hash":"' + data[-80:-40]
    path.write_bytes(data + partial)
    verdict = verify_run(tmp_path)
    assert verdict.chain.status == "interrupted" and verdict.chain.n_lines == 6
    assert "seq 6" in verdict.summary and "cut off" in verdict.summary
    with AuditLog(tmp_path) as log:
        assert log.cut_tail is not None and log.cut_tail["bytes"] == len(partial)
        log.append("resumed", cut_tail=log.cut_tail)
    assert verify_run(tmp_path).ok
    # The cut bytes are kept aside, never deleted.
    assert (tmp_path / "audit.jsonl.cut-6").read_bytes() == partial
    assert path.read_bytes().startswith(data)


def test_append_refuses_a_tampered_chain(tmp_path: Path) -> None:
    from safe_trpo.errors import UserError

    path = make_log(tmp_path)
    path.write_bytes(path.read_bytes().replace(b'"seed":0', b'"seed":1'))
    with pytest.raises(UserError, match="broken chain"):
        AuditLog(tmp_path)


def test_recorded_files_are_checked(tmp_path: Path) -> None:
    artefact = tmp_path / "checkpoints" / "a.pt"
    artefact.parent.mkdir()
    artefact.write_bytes(b"weights")
    with AuditLog(tmp_path) as log:
        log.append("run_started")
        log.append_file(tmp_path, artefact, role="checkpoint")
    assert verify_run(tmp_path).ok
    artefact.write_bytes(b"weightz")
    verdict = verify_run(tmp_path)
    assert not verdict.ok and "checkpoints/a.pt: changed" in verdict.summary
    artefact.unlink()
    assert "missing" in verify_run(tmp_path).summary


def test_nan_is_never_written_as_invalid_json(tmp_path: Path) -> None:
    with AuditLog(tmp_path) as log:
        log.append("update", kl=float("nan"), values=[1.0, float("inf")])
    obj = json.loads((tmp_path / AUDIT_FILE).read_text())
    assert obj["kl"] is None and obj["values"] == [1.0, None]


def test_two_writers_keep_one_valid_chain(tmp_path: Path) -> None:
    # Training and a reviewer's sign-off may hold the same log open at once.
    first = AuditLog(tmp_path)
    first.append("run_started")
    second = AuditLog(tmp_path)
    second.append("signoff", reviewer="a")
    first.append("update", update=0)  # must link to the sign-off, not to its own last line
    second.append("evaluation")
    first.close()
    second.close()
    verdict = verify_run(tmp_path)
    assert verdict.ok and [ln["type"] for ln in verdict.chain.lines] == [
        "run_started", "signoff", "update", "evaluation"]


@pytest.mark.parametrize("fields", [{}, {"path": 3, "sha256": "x"},
                                    {"path": "../outside.txt", "sha256": "0" * 64},
                                    {"path": "/etc/passwd", "sha256": "0" * 64}])
def test_malformed_file_records_are_problems_not_crashes(tmp_path: Path, fields: dict) -> None:
    with AuditLog(tmp_path) as log:
        log.append("file", **fields)
    verdict = verify_run(tmp_path)
    assert not verdict.ok and "line seq 0: file record" in verdict.summary


@pytest.mark.parametrize("edit", [
    lambda raw: raw.replace(b'"type":"update"', b'"type": "update"'),  # whitespace only
    lambda raw: b'{"kl":0.9,' + raw[1:],  # a duplicate key json.loads would drop
])
def test_byte_edits_that_parse_to_the_same_object_are_tampering(tmp_path: Path, edit) -> None:
    path = make_log(tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[2] = edit(lines[2])
    path.write_bytes(b"\n".join(lines))
    verdict = verify_run(tmp_path)
    assert verdict.chain.status == "tampered" and verdict.chain.first_bad_seq == 2


def test_repairing_a_cut_tail_is_recorded_and_never_overwrites_kept_bytes(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    for _ in range(2):
        data = path.read_bytes()
        path.write_bytes(data + b'{"seq": 99, "partial')  # a crash mid-line
        with AuditLog(tmp_path) as log:
            log.append("evaluation")
    kept = sorted(p.name for p in tmp_path.glob("audit.jsonl.cut-*"))
    assert len(kept) == 2
    types = [ln["type"] for ln in verify_run(tmp_path).chain.lines]
    assert types.count("tail_repaired") == 2 and verify_run(tmp_path).ok
