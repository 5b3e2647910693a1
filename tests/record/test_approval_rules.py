"""Approval rules (issue 14): what may be approved, and decisions that change."""

from __future__ import annotations

import pytest

from safe_trpo.cli import main
from safe_trpo.record import signoff
from safe_trpo.record.audit import read_lines
from tests.record.keyfix import make_key
from tests.review.fixtures import append, head, make_run


def _sign(run_dir, key, decision, comment="c"):
    seq, hash_ = head(run_dir)
    return signoff.append_signoff(run_dir, key=key, decision=decision, comment=comment,
                                  displayed_seq=seq, displayed_hash=hash_)


@pytest.mark.parametrize(("case", "reason"), [
    ("failed", "the run's status is failed"),
    ("interrupted", "the run's status is interrupted"),
    ("no_update", "the record has no update"),
    ("no_start", "the record has no run_started line"),
])
def test_a_run_that_may_not_be_approved_can_still_be_rejected(tmp_path, case, reason):
    if case in ("failed", "interrupted"):
        run_dir = make_run(tmp_path, "r", finished=False)
        append(run_dir, "run_finished", status=case, updates=4, env_steps=4, reason="x")
    elif case == "no_update":
        run_dir = make_run(tmp_path, "r", costs={"temperature": [], "valve_wear": []})
    else:
        run_dir = tmp_path / "r"
        run_dir.mkdir()
        append(run_dir, "update", update=0)
        append(run_dir, "run_finished", status="completed", updates=1, env_steps=1)
    before = (run_dir / "audit.jsonl").read_bytes()
    with pytest.raises(signoff.SignoffRefused, match=f"cannot approve: {reason}"):
        _sign(run_dir, make_key(), "approve")
    assert (run_dir / "audit.jsonl").read_bytes() == before
    assert _sign(run_dir, make_key(), "reject")["decision"] == "reject"
    assert _sign(run_dir, make_key("Bo"), "needs_changes")["decision"] == "needs_changes"


def test_an_approval_found_on_a_failed_run_does_not_count(tmp_path):
    run_dir = make_run(tmp_path, "r", finished=False)
    append(run_dir, "run_finished", status="failed", updates=4, env_steps=4, reason="NaN")
    seq, hash_ = head(run_dir)
    append(run_dir, "signoff", reviewer="Ada", role="r", decision="approve", comment="",
           reviewed_seq=seq, reviewed_head_hash=hash_)
    state = signoff.signoff_states(read_lines(run_dir))[0]
    assert state.stale_reason == "this run cannot be approved: the run's status is failed"


def test_a_later_decision_is_shown_with_the_earlier_one(tmp_path, capsys):
    run_dir = make_run(tmp_path, "r")
    ada = make_key("Ada Lovelace", "reviewer")
    first = _sign(run_dir, ada, "reject", "limit too loose")
    second = _sign(run_dir, ada, "approve")
    states = signoff.signoff_states(read_lines(run_dir))
    assert signoff.decision_changes(states) == [
        f"Ada Lovelace: reject (seq {first['seq']}), then approve (seq {second['seq']})"]
    assert main(["verify", str(run_dir)]) == 0
    assert (f"decisions changed: Ada Lovelace: reject (seq {first['seq']}), then approve "
            f"(seq {second['seq']})") in capsys.readouterr().out


def test_only_report_html_bound_as_report_adds_no_evidence(tmp_path):
    run_dir = make_run(tmp_path, "r")
    _sign(run_dir, make_key(), "approve")
    append(run_dir, "file", path="report.html", role="report", sha256="0" * 64, bytes=0)
    assert not signoff.signoff_states(read_lines(run_dir))[0].stale
    append(run_dir, "file", path="checkpoints/x.pt", role="report", sha256="0" * 64, bytes=0)
    state = signoff.signoff_states(read_lines(run_dir))[0]
    assert state.stale and "file line" in state.stale_reason
