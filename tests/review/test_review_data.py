"""The review app's data layer without Streamlit: finding runs, verifying and summarising them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safe_trpo.errors import UserError
from safe_trpo.record import audit, signoff
from safe_trpo.record.audit import verify_run
from safe_trpo.review import runs
from tests.review.fixtures import (
    DEFAULT_COSTS,
    DEFAULT_LIMITS,
    append,
    head,
    make_malformed,
    make_run,
    rewrite_line,
)

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


def test_summary_counts_rows_redone_after_a_resume_once(tmp_path) -> None:
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


def test_a_log_cut_before_run_finished_reads_interrupted_as_in_the_verdict(tmp_path):
    # A crash mid-line leaves no run_finished: the list, the verdict (and the report, which
    # reads the same chain status) must all call it interrupted, not "not finished".
    cut = make_run(tmp_path, "crashed", finished=False)
    with open(cut / "audit.jsonl", "a", encoding="utf-8") as f:
        f.write('{"seq": 99, "type": "upd')
    make_run(tmp_path, "running", finished=False)
    summaries = {s.run_id: s for s in runs.RunCache().summaries(tmp_path)}
    assert summaries["crashed"].integrity == "interrupted"
    assert summaries["crashed"].status == "interrupted"
    assert summaries["running"].status == "not finished"  # intact, no end yet: maybe running
    for s in summaries.values():
        if s.verdict is not None:
            assert s.verdict.status == s.status, s.run_id
