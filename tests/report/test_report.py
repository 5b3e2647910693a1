"""The HTML run report: facts on the page, escaping, self-containment, binding, odd logs, size.

Run folders are built here with the real ``AuditLog``, following the line schema of the audit
contract (COMMON.md), so the report is tested against what the trainer writes.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from safe_trpo.errors import UserError
from safe_trpo.record.audit import AUDIT_FILE, AuditLog, read_lines, verify_run
from safe_trpo.record.signature import sign_fields
from safe_trpo.report.build import (
    REPORT_FILE,
    UNBOUND_FILE,
    build_report_html,
    scenario_toml,
    signoff_states,
    write_report,
)
from safe_trpo.report.plots import current_updates, envelope, thin_marks
from safe_trpo.sweep.summary import run_result
from tests.record.keyfix import make_key

LIMITS = {"temperature": 5.0, "pressure": 2.0}
EVIL = '<script>alert("x")</script> & <b>bold</b>'


def scenario() -> dict:
    return {
        "env": {"id": "SafeTRPO/CSTR-v0", "num_envs": 8, "kwargs": {"episode_minutes": 60.0},
                "data_files": {}},
        "algo": {"name": "cpo", "target_kl": 0.01, "gamma": 0.99, "steps_per_update": 2048},
        "constraints": [{"name": n, "limit": lim} for n, lim in LIMITS.items()],
        "run": {"seed": 0, "out_dir": "reports", "name": "cstr_demo"},
        "eval": {"episodes": 10},
    }


def start_run(run_dir: Path, planned: int) -> AuditLog:
    run_dir.mkdir(parents=True, exist_ok=True)
    log = AuditLog(run_dir)
    log.append("run_started", run_id=run_dir.name, scenario=scenario(),
               scenario_file="scenarios/cstr.toml", scenario_sha256="ab" * 32, seed=0,
               versions={"python": "3.11", "torch": "2.13.0"}, git_commit="deadbeef",
               data_files=[{"name": "prices", "path": "data/stock_prices.csv",
                            "sha256": "cd" * 32}], planned_updates=planned)
    return log


def update_line(i: int, rng: np.random.Generator, violate: bool, fail: bool) -> dict:
    """An update line; update 0 has no finished episode (null costs and return)."""
    cons = []
    for name, limit in LIMITS.items():
        cost = None if i == 0 else float(limit * (1.3 if violate and name == "temperature"
                                                  else rng.uniform(0.2, 0.9)))
        cons.append({"name": name, "limit": limit, "ep_cost": cost,
                     "violated": None if cost is None else cost > limit,
                     "margin": None if cost is None else limit - cost,
                     "nu": float(rng.uniform(0, 1))})
    case = "recovery" if violate else ("feasible" if i % 3 else "unconstrained")
    return dict(update=i, env_steps=2048 * (i + 1), kl=0.0 if fail else float(
        rng.uniform(0.002, 0.0099)), target_kl=0.01, accepted=not fail,
        backtracks=10 if fail else int(rng.integers(0, 3)),
        return_mean=None if i == 0 else float(-100 + i), episodes=0 if i == 0 else 4,
        algo="cpo", constraints=cons, cpo={"case": case, "lambda": float(rng.uniform(0, 2)),
                                           "nu": [c["nu"] for c in cons],
                                           "solver_status": "optimal", "solve_time_ms": 1.5},
        value_loss=0.1, wall_s=0.5)


def make_run(run_dir: Path, n_updates: int = 30, violate: tuple[int, ...] = (5, 17),
             fail: tuple[int, ...] = (9,), finish: bool = True, extras: bool = True) -> Path:
    """A run folder: updates, a checkpoint, an evaluation, a backtest and a sign-off."""
    rng = np.random.default_rng(0)
    log = start_run(run_dir, n_updates)
    for i in range(n_updates):
        log.append("update", **update_line(i, rng, i in violate, i in fail))
        if i == 3:
            log.append("nan_detected", where="cost_value", update=i, action="skipped update")
    if extras:
        ckpt = run_dir / "checkpoints" / "update_000029.pt"
        ckpt.parent.mkdir(exist_ok=True)
        ckpt.write_bytes(b"weights")
        log.append_file(run_dir, ckpt, role="checkpoint")
    if finish:
        log.append("run_finished", status="completed", updates=n_updates,
                   env_steps=2048 * n_updates, reason=None)
    if extras:
        log.append("evaluation", episodes=10, seed=123, deterministic=True, return_mean=-70.5,
                   return_std=3.2, constraints=[
                       {"name": "temperature", "limit": 5.0, "ep_cost_mean": 6.5,
                        "ep_cost_max": 9.0, "frac_over_limit": 0.6},
                       {"name": "pressure", "limit": 2.0, "ep_cost_mean": 1.0,
                        "ep_cost_max": 1.5, "frac_over_limit": 0.0}])
        log.append("backtest", split="test", limits={"drawdown": 0.15},
                   policy={"sharpe": 1.25, "max_drawdown": 0.08, "turnover": {"mean": 0.3}},
                   baselines={"equal_weight": {"sharpe": 0.75, "max_drawdown": 0.12},
                              "buy_and_hold": {"sharpe": 0.5, "max_drawdown": 0.2}})
        head = log.head_hash
        run_id = read_lines(run_dir)[0].get("run_id")
        log.append("signoff", **sign_fields(make_key("Dana Risk", "model-risk"), {
            "run_id": run_id, "decision": "approve", "comment": EVIL,
            "reviewed_seq": log.next_seq - 1, "reviewed_head_hash": head,
            "time": "2026-01-01T00:00:00Z"}))
    log.close()
    return run_dir


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of the standard run (built once: figures take a moment to draw)."""
    return build_report_html(make_run(tmp_path_factory.mktemp("std") / "run1"))


def test_report_states_the_facts(page: str) -> None:
    assert "INTACT" in page and "run1" in page and "cstr_demo" in page
    assert "Updates that violated a limit (2)" in page
    assert "Updates whose line search failed (1)" in page
    assert "NaN, resume and abnormal-end events (1)" in page
    # the two violating updates, with their cost against the limit
    assert page.count("temperature: 6.5 &gt; limit 5") == 2
    # CPO case counts: 2 recovery, the rest feasible/unconstrained (updates 0,3,..,27 minus none)
    assert "<td>recovery</td><td class=\"num\">2</td>" in page
    n_uncon = len([i for i in range(30) if i % 3 == 0 and i not in (5, 17)])
    assert f'<td>unconstrained</td><td class="num">{n_uncon}</td>' in page
    assert "ab" * 32 in page and "cd" * 32 in page and "deadbeef" in page
    assert "equal_weight" in page and "buy_and_hold" in page and "turnover.mean" in page
    assert "<th>limits.drawdown</th><td class=\"num\">0.15</td>" in page
    # columns: the policy, then the baselines in the log's (sorted-key) order
    assert ('<tr><td>sharpe</td><td class="num">1.25</td><td class="num">0.5</td>'
            '<td class="num">0.75</td></tr>') in page
    assert "mean over limit" in page  # the evaluation's temperature row
    assert "Dana Risk" in page and 'class="badge ok">current' in page
    assert "Standing: <strong>approved</strong>" in page


def test_untrusted_text_is_escaped_and_nothing_is_fetched(page: str) -> None:
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold" in page
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    assert refs, "expected images and anchors"
    assert all(r.startswith(("data:", "#")) for r in refs), refs
    assert not re.search(r"https?://|@import|url\(|<link", page, flags=re.I)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # KL, return, two constraints, each constraint's nu and CPO lambda on its own axes,
    # line search
    assert len(images) == 8
    for name in LIMITS:  # one cost-vs-limit figure per constraint
        assert f'alt="Constraint &#x27;{name}&#x27;: episode cost per update' in page
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)


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


def crashed_and_resumed_run(run_dir: Path) -> Path:
    """Shaped like the trainer's log: updates 0..9, a checkpoint after update 7 (it holds the
    state at update 8), a crash mid-line, ``resumed`` from_update=8, then updates 8..11 again.
    Before the crash updates 8 and 9 violate and fail their line search; after it they do not."""
    rng = np.random.default_rng(3)
    log = start_run(run_dir, planned=12)
    for i in range(10):
        log.append("update", **update_line(i, rng, violate=i in (5, 8, 9), fail=i == 9))
        if i == 7:
            ckpt = run_dir / "checkpoints" / "update_000008.pt"
            ckpt.parent.mkdir(exist_ok=True)
            ckpt.write_bytes(b"weights at update 8")
            log.append_file(run_dir, ckpt, role="checkpoint")
    log.close()
    with open(run_dir / AUDIT_FILE, "ab") as f:
        f.write(b'{"seq": 99, "ty')  # the crash
    with AuditLog(run_dir) as log:
        log.append("resumed", from_update=8, checkpoint="checkpoints/update_000008.pt",
                   cut_tail=log.cut_tail)
        for i in range(8, 12):
            log.append("update", **update_line(i, rng, violate=i == 10, fail=False))
        log.append("nan_detected", where="environment", update=12, detail="obs NaN in copy 3",
                   action="run stopped; the last checkpoint holds the last good state")
        log.append("run_finished", status="completed", updates=12, env_steps=2048 * 12,
                   reason=None)
    return run_dir


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


def test_current_updates_keeps_odd_rows_and_the_latest_duplicate() -> None:
    lines = [{"type": "update", "update": 0, "v": "a"}, {"type": "update", "v": "no index"},
             {"type": "update", "update": 0, "v": "b"}, {"type": "resumed", "from_update": None},
             {"type": "update", "update": 1, "v": "c"}, {"type": "resumed", "from_update": 1},
             {"type": "update", "update": 1, "v": "d"}]
    assert [r["v"] for r in current_updates(lines)] == ["no index", "b", "d"]


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


def test_missing_fields_nulls_and_no_updates(tmp_path: Path) -> None:
    empty = tmp_path / "fresh"
    start_run(empty, planned=5).close()
    page = write_report(empty).read_text()
    assert "No updates yet" in page and "not finished" in page and "No sign-offs" in page
    assert "not bound into the audit chain: the run has no run_finished line" in page
    assert [ln["type"] for ln in read_lines(empty)] == ["run_started"]  # trainer may be writing
    odd = tmp_path / "odd"
    odd.mkdir()
    with AuditLog(odd) as log:  # no run_started; sparse, null and wrong-typed fields
        log.append("update", update=0, kl=None, constraints=[{"name": "t", "ep_cost": None}])
        log.append("update", kl="high", constraints="none", cpo="x", accepted=None)
        log.append("evaluation", constraints=[{"name": "t"}])
        log.append("backtest", policy="ppo", sharpe=0.3)
        log.append("signoff", reviewer=None, reviewed_head_hash="0" * 64)
    page = build_report_html(odd)
    assert "no run_started line" in page and "names no earlier line" in page
    assert "Updates recorded</th><td>2 of" in page
    with pytest.raises(UserError):
        build_report_html(tmp_path / "nope")


def test_stale_signoffs_are_shown(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run1")
    with AuditLog(run) as log:
        head = log.head_hash
        log.append("signoff", reviewer="B", role="qa", decision="reject", comment="",
                   reviewed_seq=log.next_seq - 1, reviewed_head_hash=head)  # head is a sign-off
        log.append("evaluation", episodes=1, constraints=[])
        log.append("signoff", reviewer="C", role="qa", decision="approve", comment="",
                   reviewed_seq=3, reviewed_head_hash=head)  # seq does not match the hash
    states = signoff_states(read_lines(run))
    assert [s.stale for s in states] == [True, True, True]
    page = build_report_html(run)
    assert page.count('class="badge warn">stale') == 3
    assert "evaluation line at seq" in page and "does not match line seq 3" in page
    assert "Standing: <strong>stale</strong>" in page


def test_envelope_keeps_extremes_exactly() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=10_001)
    y[[17, 4000]] = np.nan
    y[7777] = 50.0  # one spike must survive aggregation
    env = envelope(np.arange(len(y)), y, max_points=1000)
    size = env.size
    assert len(env.hi) <= 1000 and size == 11
    for b in range(len(env.hi)):
        chunk = y[b * size:(b + 1) * size]
        assert env.hi[b] == np.nanmax(chunk) and env.lo[b] == np.nanmin(chunk)
        assert env.mean[b] == pytest.approx(np.nanmean(chunk))
    assert np.nanmax(env.hi) == 50.0
    assert np.all(np.isnan(envelope(np.arange(4), np.full(4, np.nan), 2).hi))
    x, m = thin_marks(np.arange(5000), np.arange(5000.0) % 7, max_points=100)
    assert len(x) == 100 and np.all(m == 6)


def test_scenario_toml_is_readable() -> None:
    toml = scenario_toml(scenario())
    assert '[env]\nid = "SafeTRPO/CSTR-v0"' in toml
    assert "kwargs = { episode_minutes = 60.0 }" in toml
    assert toml.count("[[constraints]]") == 2


def test_ten_thousand_updates_stay_under_5_mb(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Size, not speed: skip the 10,000 per-line fsyncs, which only cost time on a busy disk.
    monkeypatch.setattr("safe_trpo.record.audit.os.fsync", lambda fd: None)
    run = make_run(tmp_path / "big", n_updates=10_000, violate=tuple(range(0, 10_000, 7)),
                   fail=tuple(range(3, 10_000, 11)))
    size = write_report(run).stat().st_size
    assert size < 5 * 1024 * 1024, size
    page = (run / REPORT_FILE).read_text()
    assert "Updates that violated a limit (1428)" in page  # 0,7,..,9996 minus update 0 (null)
    assert "... and 1328 more updates that violated a limit" in page
    assert "Each plotted point aggregates 10 updates" in page


def test_random_odd_logs_render_escaped(tmp_path: Path) -> None:
    """Well-chained logs with fields of any type in any place: the page renders, escaped."""
    rng = np.random.default_rng(7)
    values = [None, 3, -2.5, 1e300, True, [], {}, [1, "a"], EVIL, {EVIL: 1.0, "k": {"n": EVIL}},
              [{"name": EVIL, "ep_cost": "hi", "limit": None, "violated": "yes"}],
              [{"name": "t", "ep_cost": 7.0, "limit": 5.0, "nu": EVIL}]]
    kinds = ["run_started", "update", "evaluation", "backtest", "signoff", "resumed",
             "run_finished", "nan_detected", EVIL]
    keys = ["scenario", "constraints", "cpo", "kl", "target_kl", "accepted", "backtracks",
            "return_mean", "update", "policy", "baselines", "metrics", "reviewed_head_hash",
            "reviewed_seq", "from_update", "status", "data_files", "versions", "run_id",
            "comment", "reviewer", EVIL]
    for trial in range(12):
        run = tmp_path / f"odd{trial}"
        run.mkdir()
        with AuditLog(run) as log:
            for _ in range(int(rng.integers(1, 15))):
                fields = {str(k): values[int(rng.integers(len(values)))]
                          for k in rng.choice(keys, int(rng.integers(0, 10)), replace=False)}
                log.append(str(kinds[int(rng.integers(len(kinds)))]), **fields)
        page = build_report_html(run)
        assert page.rstrip().endswith("</html>")
        assert "<script" not in page.lower(), trial


def test_largest_kl_ratio_is_over_all_updates_not_only_violations() -> None:
    from safe_trpo.report.plots import line_search_summary, update_table

    lines = [{"type": "update", "seq": i, "update": i, "kl": kl, "target_kl": 0.01,
              "accepted": True, "backtracks": 0, "constraints": []}
             for i, kl in enumerate([0.004, 0.0099, 0.002])]
    facts = dict(line_search_summary(update_table(lines, [])))
    assert facts["Updates with KL above target_kl"] == 0
    assert facts["Largest KL / target_kl"] == pytest.approx(0.99)


def test_resolved_scenario_block_is_valid_toml_that_round_trips() -> None:
    import tomllib

    from safe_trpo.config import load_scenario, scenario_from_dict, scenario_to_dict
    from safe_trpo.report.build import scenario_toml

    path = Path(__file__).resolve().parents[2] / "scenarios" / "cstr_runaway.toml"
    resolved = scenario_to_dict(load_scenario(path))
    parsed = tomllib.loads(scenario_toml(resolved))
    assert scenario_from_dict(parsed) == scenario_from_dict(resolved)
