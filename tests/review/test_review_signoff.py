"""The review app's sign-off rules, without Streamlit."""

from __future__ import annotations

import os

import pytest

from safe_trpo.errors import UserError
from safe_trpo.record import audit, signoff
from safe_trpo.record.audit import AuditLog, verify_run
from safe_trpo.review import runs
from tests.record.keyfix import make_key
from tests.review.fixtures import (
    append,
    head,
    make_run,
    rewrite_line,
    sign,
)

# --- sign-off rules --------------------------------------------------------------------------

def test_signoff_appends_a_bound_line_and_the_chain_stays_valid(tmp_path):
    run_dir = make_run(tmp_path, "r", checkpoint=True)
    seq, hash_ = head(run_dir)
    line = sign(run_dir, comment="  limits respected  ")
    assert line["type"] == "signoff" and line["seq"] == seq + 1
    assert {k: line[k] for k in ("reviewer", "role", "decision", "comment", "reviewed_seq",
                                 "reviewed_head_hash")} == {
        "reviewer": "Ada", "role": "model-risk reviewer", "decision": "approve",
        "comment": "limits respected", "reviewed_seq": seq, "reviewed_head_hash": hash_}
    assert verify_run(run_dir).ok
    states = signoff.signoff_states(audit.read_lines(run_dir))
    assert [(s.seq, s.stale) for s in states] == [(seq + 1, False)]
    assert runs.RunCache().summary(run_dir).signoff == "approved"


def test_approval_of_a_run_that_fails_verification_is_refused(tmp_path):
    run_dir = make_run(tmp_path, "r", checkpoint=True)
    next((run_dir / "checkpoints").iterdir()).write_bytes(b"swapped weights")
    before = (run_dir / "audit.jsonl").read_bytes()
    with pytest.raises(signoff.SignoffRefused, match="cannot approve.*FILES DO NOT MATCH"):
        sign(run_dir)
    assert (run_dir / "audit.jsonl").read_bytes() == before
    line = sign(run_dir, decision="reject", comment="checkpoint was replaced")
    assert line["decision"] == "reject"


@pytest.mark.parametrize("damage", ["tampered", "cut"])
def test_no_signoff_on_a_broken_chain(tmp_path, damage):
    run_dir = make_run(tmp_path, "r")
    seq, hash_ = head(run_dir)
    if damage == "tampered":
        rewrite_line(run_dir, 1, kl=0.5)
    else:
        with open(run_dir / "audit.jsonl", "a") as f:
            f.write('{"seq": ')
    before = (run_dir / "audit.jsonl").read_bytes()
    for decision in signoff.DECISIONS:
        with pytest.raises(signoff.SignoffRefused, match="audit chain is"):
            signoff.append_signoff(run_dir, key=make_key("Ada", "r"), decision=decision,
                                   comment="c", displayed_seq=seq, displayed_hash=hash_)
    assert (run_dir / "audit.jsonl").read_bytes() == before  # a cut tail is left where it is
    assert not list(run_dir.glob("audit.jsonl.cut-*"))


def test_signoff_refused_when_the_head_moved_or_the_run_is_running(tmp_path):
    run_dir = make_run(tmp_path, "r")
    seq, hash_ = head(run_dir)
    append(run_dir, "evaluation", episodes=1, return_mean=1.0, constraints=[])
    with pytest.raises(signoff.SignoffRefused, match="changed while you reviewed"):
        signoff.append_signoff(run_dir, key=make_key("Ada", "r"), decision="approve",
                               comment="", displayed_seq=seq, displayed_hash=hash_)
    running = make_run(tmp_path, "running", finished=False)
    with pytest.raises(signoff.SignoffRefused, match="has not finished"):
        sign(running)
    append(run_dir, "resumed", from_update=3, checkpoint="x", cut_tail=None)
    with pytest.raises(signoff.SignoffRefused, match="has not finished"):
        sign(run_dir)


def test_a_change_racing_the_signoff_refuses_it_under_the_lock(tmp_path, monkeypatch):
    # Another writer appends after the head check but before the sign-off's own append: the
    # head is checked again under the log's lock, so nothing unseen is ever signed.
    run_dir = make_run(tmp_path, "r")
    real = signoff.AuditLog

    def racing(path, ledger=None):
        append(run_dir, "evaluation", episodes=1, return_mean=1.0, constraints=[])
        return real(path, ledger)

    monkeypatch.setattr(signoff, "AuditLog", racing)
    seq, _ = head(run_dir)
    with pytest.raises(signoff.SignoffRefused, match=f"now ends at seq {seq + 1}"):
        sign(run_dir)
    lines = audit.read_lines(run_dir)
    assert len(lines) == seq + 2 and lines[-1]["type"] == "evaluation"
    assert verify_run(run_dir).ok


def test_stale_after_any_change_but_not_after_another_signoff(tmp_path):
    run_dir = make_run(tmp_path, "r", checkpoint=True)
    first = sign(run_dir)
    sign(run_dir, reviewer="Grace", decision="needs_changes", comment="more seeds")
    append(run_dir, "file", path="report.html", role="report", sha256="0" * 64, bytes=0)
    lines = audit.read_lines(run_dir)
    assert [s.stale for s in signoff.signoff_states(lines)] == [False, False]
    evaluation = append(run_dir, "evaluation", episodes=1, return_mean=1.0, constraints=[])
    states = signoff.signoff_states(audit.read_lines(run_dir))
    assert [s.stale for s in states] == [True, True]
    assert f"evaluation line at seq {evaluation['seq']}" in states[0].stale_reason
    assert states[0].reviewed_seq == first["reviewed_seq"]
    assert signoff.overall_state(states) == "stale"
    fresh = signoff.signoff_states(lines, run_verified=False)
    assert all(s.stale_reason == "the run no longer verifies" for s in fresh)


def test_signoff_naming_a_head_that_is_not_in_the_chain_is_stale(tmp_path):
    run_dir = make_run(tmp_path, "r")
    seq, _ = head(run_dir)
    for reviewed_seq, reviewed_hash in ((seq, "f" * 64), (seq + 5, "f" * 64), (True, "x"),
                                        (None, None)):
        append(run_dir, "signoff", reviewer="X", role="r", decision="approve", comment="",
                reviewed_seq=reviewed_seq, reviewed_head_hash=reviewed_hash)
    states = signoff.signoff_states(audit.read_lines(run_dir))
    assert len(states) == 4 and all(s.stale for s in states)
    assert "hash does not match" in states[0].stale_reason
    assert "names no earlier line" in states[1].stale_reason


def test_overall_state_is_conservative_and_per_reviewer():
    def st(reviewer, decision, stale=False):
        return signoff.SignoffState(1, reviewer, "r", decision, "", 0, "h", None,
                                    "x" if stale else "", signature="verified")
    assert signoff.overall_state([]) == "none"
    assert signoff.overall_state([st("a", "approve")]) == "approved"
    assert signoff.overall_state([st("a", "approve"), st("b", "reject")]) == "rejected"
    assert signoff.overall_state([st("a", "needs_changes"), st("A", "approve")]) == "approved"
    assert signoff.overall_state([st("a", "approve"), st("b", "needs_changes")]) == \
        "needs changes"
    assert signoff.overall_state([st("a", "reject", stale=True), st("b", "approve")]) == \
        "approved"


def test_reviewer_allow_list(tmp_path):
    text = tmp_path / "reviewers.txt"
    text.write_text("# model-risk team\nAda Lovelace\n\n  Grace Hopper  \n")
    toml = tmp_path / "reviewers.toml"
    toml.write_text('reviewers = ["Ada Lovelace", "Grace Hopper"]\n')
    assert signoff.load_reviewers(text) == signoff.load_reviewers(toml) == (
        "Ada Lovelace", "Grace Hopper")
    for content, name in (("# nobody\n", "x.txt"), ("reviewers = 3\n", "x.toml"),
                          ("reviewers = [\n", "y.toml")):
        (tmp_path / name).write_text(content)
        with pytest.raises(UserError, match=name):
            signoff.load_reviewers(tmp_path / name)
    with pytest.raises(UserError, match="cannot read"):
        signoff.load_reviewers(tmp_path / "missing.txt")
    run_dir = make_run(tmp_path, "r")
    allowed = signoff.load_reviewers(text)
    before = (run_dir / "audit.jsonl").read_bytes()
    with pytest.raises(signoff.SignoffRefused, match="not on the configured list"):
        sign(run_dir, reviewer="Mallory", allowed=allowed)
    assert (run_dir / "audit.jsonl").read_bytes() == before
    assert sign(run_dir, reviewer="Ada Lovelace", allowed=allowed)["reviewer"] == "Ada Lovelace"


@pytest.mark.parametrize(("fields", "message"), [
    ({"reviewer": " "}, "reviewer name is required"),
    ({"role": ""}, "role is required"),
    ({"reviewer": "Ada\nEve"}, "one line"),
    ({"reviewer": "x" * 200}, "at most"),
    ({"decision": "maybe"}, "expected one of"),
    ({"decision": "reject", "comment": ""}, "comment is required"),
    ({"decision": "needs_changes", "comment": "  "}, "comment is required"),
    ({"comment": "x" * 6000}, "at most 5000"),
])
def test_signoff_fields_are_validated(fields, message):
    values = {"reviewer": "Ada", "role": "r", "decision": "approve", "comment": ""} | fields
    with pytest.raises(signoff.SignoffRefused, match=message):
        signoff.validate_signoff(**values, allowed=None)


def test_audit_log_still_appends_after_a_signoff(tmp_path):
    # The trainer resumes by reopening the log: a sign-off line must not break that.
    run_dir = make_run(tmp_path, "r")
    sign(run_dir)
    with AuditLog(run_dir) as log:
        log.append("resumed", from_update=4, checkpoint=None, cut_tail=None)
    assert verify_run(run_dir).ok
    assert os.path.getsize(run_dir / "audit.jsonl") > 0
