"""The review app's data layer and sign-off rules, without Streamlit."""

from __future__ import annotations

import math
import os
import string
from pathlib import Path

import pandas as pd
import pytest

from safe_trpo.errors import UserError
from safe_trpo.record import audit, signoff
from safe_trpo.record.audit import AuditLog, verify_run
from safe_trpo.review import launch, runs
from tests.review.fixtures import (
    BACKTEST_BASELINES,
    DEFAULT_COSTS,
    DEFAULT_LIMITS,
    append,
    head,
    make_malformed,
    make_run,
    rewrite_line,
)


def _sign(run_dir: Path, decision: str = "approve", reviewer: str = "Ada", comment: str = "ok",
          allowed: tuple[str, ...] | None = None) -> dict:
    seq, hash_ = head(run_dir)
    return signoff.append_signoff(run_dir, reviewer=reviewer, role="model-risk reviewer",
                                  decision=decision, comment=comment, displayed_seq=seq,
                                  displayed_hash=hash_, allowed=allowed)


# --- finding runs, and refusing everything else ------------------------------------------------

def test_scan_and_resolve_accept_only_run_folders_inside_the_root(tmp_path):
    root = tmp_path / "reports"
    make_run(root, "run-a")
    make_run(root, "run-b")
    (root / ".hidden").mkdir()
    (root / "notes.txt").write_text("x")
    outside = make_run(tmp_path, "outside")
    (root / "link-out").symlink_to(outside)
    (root / "link-in").symlink_to(root / "run-a")
    root = runs.reports_root(root)
    assert runs.scan_run_ids(root) == ["link-in", "run-a", "run-b"]
    assert runs.resolve_run(root, "run-a") == root / "run-a"
    for bad in ["../outside", "..", ".", "", "/etc", str(outside), "run-a/../../outside",
                "notes.txt", ".hidden", "link-out", "run-c", None]:
        with pytest.raises(UserError, match="unknown run"):
            runs.resolve_run(root, bad)


def test_sweep_folders_linking_outside_the_root_are_not_scanned(tmp_path):
    root = tmp_path / "reports"
    inside = make_run(root / "sweeps" / "ok" / "runs" / "job", "run")
    outside = tmp_path / "elsewhere"
    make_run(outside / "job", "secret")  # outside/job/secret
    make_run(outside, "secret-run")  # outside/secret-run
    (root / "sweeps" / "runs-out").mkdir()
    (root / "sweeps" / "runs-out" / "runs").symlink_to(outside)  # the runs folder itself
    (root / "sweeps" / "ok" / "runs" / "job-out").symlink_to(outside)  # a job folder
    root = runs.reports_root(root)
    assert runs.scan_run_ids(root) == [inside.relative_to(root).as_posix()]
    for bad in ("sweeps/runs-out/runs/job/secret", "sweeps/ok/runs/job-out/secret-run"):
        assert (root / bad / "audit.jsonl").is_file()  # reachable by path, refused by id
        with pytest.raises(UserError, match="unknown run"):
            runs.resolve_run(root, bad)


def test_reports_root_must_be_a_folder(tmp_path):
    with pytest.raises(UserError, match="reports folder not found"):
        runs.reports_root(tmp_path / "missing")


@pytest.mark.parametrize("case", ["intact", "tampered", "file_changed", "file_missing", "cut"])
def test_verify_contained_agrees_with_verify_run(tmp_path, case):
    run_dir = make_run(tmp_path, "r", checkpoint=True)
    ckpt = next((run_dir / "checkpoints").iterdir())
    if case == "tampered":
        rewrite_line(run_dir, 1, kl=0.5)
    elif case == "file_changed":
        ckpt.write_bytes(b"other")
    elif case == "file_missing":
        ckpt.unlink()
    elif case == "cut":
        with open(run_dir / "audit.jsonl", "a") as f:
            f.write('{"seq": 7')
    ours, theirs = signoff.verify_contained(run_dir), verify_run(run_dir)
    assert (ours.ok, ours.summary, ours.finished) == (theirs.ok, theirs.summary, theirs.finished)
    assert ours.ok == (case == "intact")


def test_verify_contained_never_reads_a_file_outside_the_run(tmp_path, monkeypatch):
    # A crafted but validly chained record naming a file outside its folder, whose hash matches:
    # verify_run would hash it and call the run intact; the app must not read it at all.
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the reports folder")
    run_dir = make_run(tmp_path / "reports", "r")
    append(run_dir, "file", path="../../secret.txt", role="checkpoint",
           sha256=audit.file_sha256(secret), bytes=secret.stat().st_size)
    read = []
    real = signoff.file_sha256
    monkeypatch.setattr(signoff, "file_sha256", lambda p: read.append(Path(p)) or real(p))
    verdict = signoff.verify_contained(run_dir)
    assert not verdict.ok
    assert "points outside the run folder" in verdict.file_problems[0]
    assert read == []
    assert signoff.escaping_files(run_dir, verdict.chain.lines) == ["../../secret.txt"]
    summary = runs.RunCache().summary(run_dir)
    assert summary.integrity == "files changed" and not summary.verified


def test_an_audit_file_linking_outside_its_run_is_not_read(tmp_path):
    outside = make_run(tmp_path, "outside")
    run_dir = tmp_path / "reports" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "audit.jsonl").symlink_to(outside / "audit.jsonl")
    summary = runs.RunCache().summary(run_dir)
    assert summary.integrity == "unreadable" and "links outside" in summary.problem
    assert summary.env_id == "?"


# --- summaries -------------------------------------------------------------------------------

def test_summary_of_a_clean_run_matches_its_record(tmp_path):
    run_dir = make_run(tmp_path, "cstr-1", algo="cpo", seed=7)
    s = runs.RunCache().summary(run_dir)
    last = {name: DEFAULT_LIMITS[name] - costs[-1] for name, costs in DEFAULT_COSTS.items()}
    n = len(DEFAULT_COSTS["temperature"])
    violating = sum(any(costs[u] > DEFAULT_LIMITS[name] for name, costs in DEFAULT_COSTS.items())
                    for u in range(n))
    assert (s.run_id, s.env_id, s.algo, s.seed) == ("cstr-1", "SafeTRPO/CSTR-v0", "cpo", 7)
    assert (s.status, s.integrity, s.verified, s.problem) == ("completed", "intact", True, "")
    assert s.worst_margin_last == pytest.approx(min(last.values()))
    assert s.updates_violating == violating and s.updates == n
    assert s.signoff == "none"
    assert (s.head_seq, s.head_hash) == head(run_dir)


def test_malformed_folders_get_a_message_not_an_exception(tmp_path):
    expected = make_malformed(tmp_path)
    summaries = {s.run_id: s for s in runs.RunCache().summaries(tmp_path)}
    assert {k: s.integrity for k, s in summaries.items()} == expected
    for run_id, s in summaries.items():
        if run_id != "only-started":
            assert s.problem, run_id
        # Only the two whose chains are intact verify; everything else is flagged as such.
        assert s.verified == (run_id in ("only-started", "odd-scenario")), run_id
    assert summaries["only-started"].status == "not finished"
    assert summaries["only-started"].updates == 0
    assert summaries["tampered-line"].status == "unknown"
    assert "line seq 2" in summaries["tampered-line"].problem
    assert summaries["cut-tail"].status == "completed"  # the cut line came after run_finished
    assert "cut off" in summaries["cut-tail"].problem
    assert summaries["odd-scenario"].env_id == "?"


def test_cache_rereads_only_what_changed(tmp_path, monkeypatch):
    root = tmp_path
    run_dir = make_run(root, "a", checkpoint=True)
    make_run(root, "b")
    calls = []
    real = runs.load_run
    monkeypatch.setattr(runs, "load_run",
                        lambda d, run_id=None: calls.append(d.name) or real(d, run_id))
    cache = runs.RunCache()
    first = cache.summaries(root)
    assert sorted(calls) == ["a", "b"]
    calls.clear()
    assert cache.summaries(root) == first and calls == []
    append(run_dir, "evaluation", episodes=1, return_mean=1.0, constraints=[])
    cache.summaries(root)
    assert calls == ["a"]
    calls.clear()
    ckpt = next((run_dir / "checkpoints").iterdir())
    ckpt.write_bytes(b"replaced")  # a bound file changed, the audit file did not
    assert cache.summary(run_dir).integrity == "files changed" and calls == ["a"]
    (root / "b" / "audit.jsonl").unlink()
    (root / "b").rmdir()
    assert [s.run_id for s in cache.summaries(root)] == ["a"]


def test_cache_keeps_no_summary_of_a_file_that_changed_while_read(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, "a")
    real = runs.load_run
    calls = []

    def load_while_the_trainer_appends(d, run_id=None):
        detail = real(d, run_id)
        if not calls:  # the first read only: a line lands after the read, before the stamp
            append(run_dir, "evaluation", episodes=1, return_mean=1.0, constraints=[])
        calls.append(d)
        return detail

    monkeypatch.setattr(runs, "load_run", load_while_the_trainer_appends)
    cache = runs.RunCache()
    first = cache.summary(run_dir)
    seq, _ = head(run_dir)
    assert first.head_seq == seq - 1  # what was read: before the append
    second = cache.summary(run_dir)
    assert len(calls) == 2 and second.head_seq == seq  # read again, not served from the cache
    assert cache.summary(run_dir) == second and len(calls) == 2  # now unchanged: cached


def test_runs_in_sweeps_are_listed_under_their_scanned_id(tmp_path):
    root = tmp_path
    make_run(root, "run")
    nested = make_run(root / "sweeps" / "s" / "runs" / "job", "run")
    summaries = runs.RunCache().summaries(root)
    assert sorted(s.run_id for s in summaries) == ["run", "sweeps/s/runs/job/run"]
    assert runs.load_run(nested, "sweeps/s/runs/job/run").run_id == "sweeps/s/runs/job/run"


def test_a_thousand_runs_are_all_listed_correctly(tmp_path, monkeypatch):
    root = tmp_path / "reports"
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # building the runs is not under test
    for i in range(1000):
        costs = {"temperature": [6.0, 5.0 - (i % 7)]}
        make_run(root, f"run-{i:04d}", costs=costs, limits={"temperature": 5.0},
                 algo="cpo" if i % 2 else "trpo", seed=i)
    cache = runs.RunCache()
    summaries = cache.summaries(root)
    assert len(summaries) == 1000
    by_id = {s.run_id: s for s in summaries}
    assert sorted(by_id) == [f"run-{i:04d}" for i in range(1000)]
    for i in (0, 1, 6, 999):
        s = by_id[f"run-{i:04d}"]
        assert s.seed == i and s.algo == ("cpo" if i % 2 else "trpo")
        assert s.worst_margin_last == pytest.approx(i % 7) and s.updates_violating == 1
        assert s.verified
    frame = runs.summaries_frame(summaries)
    assert len(runs.filter_frame(frame, "CPO")) == 500  # "trpo" would also match SafeTRPO
    assert list(runs.filter_frame(frame, "run-0999 cpo")["run"]) == ["run-0999"]
    assert cache.summaries(root) == summaries


# --- sign-off rules --------------------------------------------------------------------------

def test_signoff_appends_a_bound_line_and_the_chain_stays_valid(tmp_path):
    run_dir = make_run(tmp_path, "r", checkpoint=True)
    seq, hash_ = head(run_dir)
    line = _sign(run_dir, comment="  limits respected  ")
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
        _sign(run_dir)
    assert (run_dir / "audit.jsonl").read_bytes() == before
    line = _sign(run_dir, decision="reject", comment="checkpoint was replaced")
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
            signoff.append_signoff(run_dir, reviewer="Ada", role="r", decision=decision,
                                   comment="c", displayed_seq=seq, displayed_hash=hash_)
    assert (run_dir / "audit.jsonl").read_bytes() == before  # a cut tail is left where it is
    assert not list(run_dir.glob("audit.jsonl.cut-*"))


def test_signoff_refused_when_the_head_moved_or_the_run_is_running(tmp_path):
    run_dir = make_run(tmp_path, "r")
    seq, hash_ = head(run_dir)
    append(run_dir, "evaluation", episodes=1, return_mean=1.0, constraints=[])
    with pytest.raises(signoff.SignoffRefused, match="changed while you reviewed"):
        signoff.append_signoff(run_dir, reviewer="Ada", role="r", decision="approve",
                               comment="", displayed_seq=seq, displayed_hash=hash_)
    running = make_run(tmp_path, "running", finished=False)
    with pytest.raises(signoff.SignoffRefused, match="has not finished"):
        _sign(running)
    append(run_dir, "resumed", from_update=3, checkpoint="x", cut_tail=None)
    with pytest.raises(signoff.SignoffRefused, match="has not finished"):
        _sign(run_dir)


def test_a_change_racing_the_signoff_leaves_it_stale_not_current(tmp_path, monkeypatch):
    # Another writer appends after the head check but before the sign-off's own append.
    run_dir = make_run(tmp_path, "r")
    real = signoff.AuditLog

    def racing(path):
        append(run_dir, "evaluation", episodes=1, return_mean=1.0, constraints=[])
        return real(path)

    monkeypatch.setattr(signoff, "AuditLog", racing)
    seq, _ = head(run_dir)
    line = _sign(run_dir)
    assert line["seq"] == seq + 2 and line["reviewed_seq"] == seq
    assert verify_run(run_dir).ok
    assert signoff.signoff_states(audit.read_lines(run_dir))[0].stale


def test_stale_after_any_change_but_not_after_another_signoff(tmp_path):
    run_dir = make_run(tmp_path, "r", checkpoint=True)
    first = _sign(run_dir)
    _sign(run_dir, reviewer="Grace", decision="needs_changes", comment="more seeds")
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
                                    "x" if stale else "")
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
        _sign(run_dir, reviewer="Mallory", allowed=allowed)
    assert (run_dir / "audit.jsonl").read_bytes() == before
    assert _sign(run_dir, reviewer=" ada lovelace", allowed=allowed)["reviewer"] == "Ada Lovelace"


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


# --- tables ----------------------------------------------------------------------------------

def test_update_and_constraint_tables_keep_missing_values_missing(tmp_path):
    costs = {"temperature": [6.0, None, 4.0]}
    run_dir = make_run(tmp_path, "r", costs=costs, limits={"temperature": 5.0},
                       kls=[0.02, 0.0, 0.005], rejected=(1,), recovery=(2,))
    lines = audit.read_lines(run_dir)
    upd = runs.updates_frame(lines)
    assert list(upd["kl_over_target"]) == [True, False, False]
    assert list(upd["accepted"]) == [True, False, True]
    assert list(upd["case"]) == ["feasible", "feasible", "recovery"]
    cons = runs.constraints_frame(lines)
    assert math.isnan(cons["ep_cost"][1]) and math.isnan(cons["margin"][1])
    assert cons["violated"][1] is None
    assert list(cons["margin"].dropna()) == [-1.0, 1.0]
    odd = [{"type": "update", "update": "zero", "kl": float("nan"), "constraints": "none",
            "cpo": [1], "accepted": "yes"}]
    frame = runs.updates_frame(odd)
    assert frame[["update", "kl"]].isna().all(axis=None) and frame["accepted"][0] is None
    assert runs.constraints_frame(odd).empty


def test_results_tables(tmp_path):
    run_dir = make_run(tmp_path, "r", evaluation=True, backtest=True)
    lines = audit.read_lines(run_dir)
    evals, costs = runs.evaluation_frames(lines)
    assert list(evals["return_mean"]) == [-5.0]
    assert list(costs["mean over limit"]) == [True, True]
    line = next(ln for ln in lines if ln["type"] == "backtest")
    bt = runs.backtest_frame(line)
    # The trained policy's own row first, labelled by the run folder the line names.
    assert bt["controller"][0] == str(run_dir)
    assert sorted(bt["controller"][1:]) == sorted(BACKTEST_BASELINES)
    by_name = bt.set_index("controller")
    assert by_name.loc[str(run_dir), "sharpe"] == line["metrics"]["sharpe"] == 1.2
    for i, name in enumerate(BACKTEST_BASELINES):
        assert by_name.loc[name, "sharpe"] == pytest.approx(0.8 - 0.1 * i)
        assert by_name.loc[name, "breach_days.drawdown"] == i
    assert by_name.loc[str(run_dir), "breach_days.drawdown"] == 3
    flat = runs.backtest_frame({"type": "backtest", "seq": 3, "sharpe": 0.5, "policy": "run-x"})
    assert list(flat["controller"]) == ["run-x"] and list(flat["sharpe"]) == [0.5]
    events = runs.events_frame(lines)
    assert list(events["type"]) == ["run_started", "evaluation", "backtest", "run_finished"]


def test_backtest_fixture_matches_the_real_writer():
    """The fixture's line has the keys ``safe_trpo.finance.backtest`` records (else the test above
    would check a shape no run has)."""
    from envs.portfolio.baselines import BASELINE_NAMES
    from safe_trpo.finance import backtest
    from tests.review.fixtures import backtest_fields

    assert BACKTEST_BASELINES == BASELINE_NAMES
    source = Path(backtest.__file__).read_text()
    for key in backtest_fields(Path("r")):
        assert f'"{key}"' in source or f"{key}=" in source, key


def test_md_makes_log_text_literal():
    evil = "[x](http://evil) **b** $x$ :red[y] <b> `c` # h\n- item \\"
    escaped = runs.md(evil)
    assert escaped.startswith(r"\[x\]\(http\:\/\/evil\)")
    # Read back as CommonMark does: every punctuation character comes escaped, and dropping
    # the escapes gives the text (newline flattened to a space).
    plain, i = [], 0
    while i < len(escaped):
        if escaped[i] == "\\":
            assert escaped[i + 1] in string.punctuation, escaped[i:]
            plain.append(escaped[i + 1])
            i += 2
        else:
            assert escaped[i] not in string.punctuation, escaped[i:]
            plain.append(escaped[i])
            i += 1
    assert "".join(plain) == evil.replace("\n", " ")
    assert runs.md("a\nb\r\nc") == "a b c"


def test_thin_keeps_every_flagged_row():
    frame = pd.DataFrame({"x": range(10_000)})
    flagged = frame["x"].isin([3, 4, 5, 9_999])
    view = runs.thin(frame, flagged, max_points=100)
    assert len(view) <= 104 and set(view["x"]) >= {3, 4, 5, 9_999}
    assert runs.thin(frame.head(50), flagged.head(50), max_points=100).equals(frame.head(50))


# --- launching -------------------------------------------------------------------------------

def test_launch_command(tmp_path):
    reviewers = tmp_path / "reviewers.txt"
    reviewers.write_text("Ada\n")
    cmd = launch.build_command(tmp_path, 8600, reviewers_file=reviewers)
    assert cmd[1:3] == ["-m", "safe_trpo.review.serve"]
    run = cmd.index("run")
    assert cmd[3:run] == ["--allow-host", "127.0.0.1:8600", "--allow-host", "[::1]:8600",
                          "--allow-host", "localhost:8600"]
    assert Path(cmd[run + 1]) == launch.APP
    flags = dict(zip(cmd[run + 2:cmd.index("--"):2], cmd[run + 3:cmd.index("--"):2],
                     strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8600"
    assert flags["--server.headless"] == "true"
    assert cmd[cmd.index("--"):] == ["--", "--reports", str(tmp_path.resolve()),
                                     "--reviewers", str(reviewers.resolve())]
    with pytest.raises(UserError, match="reports folder not found"):
        launch.build_command(tmp_path / "nope", 8600)
    with pytest.raises(UserError, match="--port"):
        launch.build_command(tmp_path, 70000)
    with pytest.raises(UserError, match="cannot read the reviewer list"):
        launch.build_command(tmp_path, 8600, reviewers_file=tmp_path / "missing.txt")


def test_audit_log_still_appends_after_a_signoff(tmp_path):
    # The trainer resumes by reopening the log: a sign-off line must not break that.
    run_dir = make_run(tmp_path, "r")
    _sign(run_dir)
    with AuditLog(run_dir) as log:
        log.append("resumed", from_update=4, checkpoint=None, cut_tail=None)
    assert verify_run(run_dir).ok
    assert os.path.getsize(run_dir / "audit.jsonl") > 0


def test_summary_counts_rows_redone_after_a_resume_once(tmp_path) -> None:
    from safe_trpo.review import runs
    from tests.review.fixtures import append, make_run

    run_dir = make_run(tmp_path, "resumed-run", costs={"temperature": [1.0, 9.0, 9.0]},
                       limits={"temperature": 5.0}, finished=False)
    append(run_dir, "resumed", from_update=1, env_steps=100, checkpoint="x", cut_tail=None)
    for u, cost in ((1, 1.0), (2, 1.0)):
        append(run_dir, "update", update=u, env_steps=100 * (u + 1), kl=0.001,
               target_kl=0.01, accepted=True, backtracks=0, return_mean=1.0, episodes=1,
               constraints=[{"name": "temperature", "limit": 5.0, "ep_cost": cost,
                             "violated": cost > 5.0, "margin": 5.0 - cost, "nu": 0.0}])
    summary = runs.summarize(runs.load_run(run_dir))
    assert summary.updates == 3 and summary.updates_violating == 0
