"""Sweeps: the summary's arithmetic, what counts as done, and its HTML."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

import safe_trpo.sweep.runner as sweep
from safe_trpo.config import data_file_hashes, load_scenario
from safe_trpo.record.audit import AuditLog, verify_run
from safe_trpo.sweep.plan import Job, plan_sweep
from safe_trpo.sweep.runner import run_sweep
from safe_trpo.sweep.summary import (
    config_summary,
    find_done_run,
    job_record,
    render_html,
    run_result,
    spread,
)
from tests.sweep.fixtures import TINY, fake_run, write


def test_final_metrics_average_the_last_rows_and_never_guess_unknowns(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "a", [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0],
                   [20.0, 20.0, 9.0, None, 11.0, 3.0, 1.0])
    result = run_result(run)
    assert result["final_return"] == pytest.approx((4 + 5 + 6 + 7) / 4)  # last 5 rows, non-null
    assert result["final_costs"]["speed"] == pytest.approx((9 + 11 + 3 + 1) / 4)
    # The window's mean (6) is within the limit 10, but one of its rows (11) was over: the
    # verdict's rule (record.verdict, as in the review app) says not within.
    assert result["within_limits"] is False and result["verified"]
    unknown = run_result(fake_run(tmp_path / "b", [1.0] * 6, [30.0] + [None] * 5))
    assert unknown["final_costs"]["speed"] is None and unknown["within_limits"] is None


def test_spread_and_fraction_within_limits_against_numpy_free_reference() -> None:
    values = [3.0, 1.0, 4.0, 1.5, 9.0]
    s = spread(values)
    q = statistics.quantiles(values, n=4, method="inclusive")
    assert s["median"] == statistics.median(values) and (s["q25"], s["q75"]) == pytest.approx(
        (q[0], q[2]))
    assert (s["min"], s["max"], s["n"]) == (1.0, 9.0, 5) and spread([]) is None
    runs = [{"state": "completed", "final_return": 1.0, "limits": {"speed": 10.0},
             "final_costs": {"speed": c}, "within_limits": w}
            for c, w in ((5.0, True), (12.0, False), (None, None))]
    runs.append({"state": "failed"})
    c = config_summary("x", "x", [], runs)
    assert (c["n_runs"], c["n_completed"], c["n_failed"]) == (4, 3, 1)
    assert c["frac_within_all_limits"] == pytest.approx(1 / 3)  # unknown counts as not within
    assert c["constraints"][0]["n_unknown"] == 1
    assert c["constraints"][0]["ep_cost"]["median"] == statistics.median([5.0, 12.0])


def test_only_a_completed_verified_run_counts_as_done(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    assert find_done_run(job_dir) is None
    fake_run(job_dir / "r1", [1.0], [0.0], status="interrupted")
    assert find_done_run(job_dir) is None
    good = fake_run(job_dir / "r2", [1.0], [0.0])
    assert find_done_run(job_dir) == good
    lines = (good / "audit.jsonl").read_text().replace('"return_mean":1.0', '"return_mean":9.0')
    (good / "audit.jsonl").write_text(lines)  # tampered: no longer done, so it would re-run
    assert not verify_run(good).ok and find_done_run(job_dir) is None


def test_a_changed_data_file_makes_a_done_job_run_again(tmp_path: Path, monkeypatch) -> None:
    prices = write(tmp_path / "prices.csv", "date,close\n2024-01-02,100\n")
    scenario = write(tmp_path / "tiny.toml", TINY.replace(
        "[algo]", '[env.data_files]\nprices = "prices.csv"\n[algo]'))
    out = tmp_path / "out"
    plan = plan_sweep([scenario], "0", [], out, make_reports=False)
    (job,) = plan.jobs
    recorded = data_file_hashes(load_scenario(scenario, [f"run.seed={job.seed}"]))
    run = fake_run(Path(job.job_dir) / "r1", [1.0], [0.0], data_files=recorded)
    assert find_done_run(Path(job.job_dir), job.data_files) == run
    assert job_record(job, plan.sweep_dir)["state"] == "completed"

    write(prices, "date,close\n2024-01-02,101\n")  # the data changed, the scenario did not
    again = plan_sweep([scenario], "0", [], out, make_reports=False)
    assert again.sweep_id == plan.sweep_id and again.jobs[0].job_dir == job.job_dir
    assert find_done_run(Path(job.job_dir), again.jobs[0].data_files) is None
    record = job_record(again.jobs[0], again.sweep_dir)
    assert record["state"] == "pending" and "data files changed" in record["reason"]
    executed = []
    monkeypatch.setattr(sweep, "_execute", lambda jobs, *a: executed.extend(jobs))
    summary = run_sweep(again, "local", echo=lambda _: None)
    assert executed == list(again.jobs) and summary["last_invocation"] == {"skipped": 0, "ran": 1}


def test_run_result_counts_updates_redone_after_a_resume_once(tmp_path: Path) -> None:
    """Updates 0..9, crash, resumed from_update=8, updates 8..11 (the trainer's shape)."""
    run = tmp_path / "run"
    run.mkdir()
    with AuditLog(run) as log:
        log.append("run_started", scenario={"constraints": [{"name": "speed", "limit": 10.0}]})
        rows = [(i, float(i), 1.0) for i in range(8)] + [(8, 500.0, 99.0), (9, 500.0, 99.0)]
        for i, ret, cost in rows:
            log.append("update", update=i, return_mean=ret, episodes=4,
                       constraints=[{"name": "speed", "limit": 10.0, "ep_cost": cost,
                                     "episodes_over": int(cost > 10) * 4}])
        log.append("resumed", from_update=8, checkpoint="checkpoints/update_000008.pt",
                   cut_tail=None)
        for i in range(8, 12):
            log.append("update", update=i, return_mean=float(i), episodes=4,
                       constraints=[{"name": "speed", "limit": 10.0, "ep_cost": 1.0,
                                     "episodes_over": 0}])
        log.append("run_finished", status="completed", updates=12, env_steps=0, reason="")
    result = run_result(run)
    assert (result["updates"], result["superseded_updates"]) == (12, 2)
    assert result["final_return"] == pytest.approx(statistics.fmean(range(7, 12)))
    assert result["final_costs"]["speed"] == 1.0 and result["within_limits"] is True


def test_an_attempt_that_never_finished_is_reported_failed(tmp_path: Path) -> None:
    job = Job("s.toml", (), 0, "s", "s", str(tmp_path / "job"))
    write(tmp_path / "job" / "attempts.jsonl", json.dumps({"event": "started", "attempt": 1}))
    record = job_record(job, tmp_path)
    assert record["state"] == "failed" and "never finished" in record["reason"]
    fresh = job_record(Job("s.toml", (), 1, "s", "s", str(tmp_path / "other")), tmp_path)
    assert fresh["state"] == "pending"


def test_html_escapes_every_value_and_fetches_nothing() -> None:
    evil = "<script>alert(1)</script>"
    run = {"seed": 0, "state": "failed", "attempts": 1, "verify": evil, "reason": evil,
           "run_dir": 'runs/a"b', "report": None, "final_return": None, "final_costs": {},
           "within_limits": None}
    summary = {"sweep_id": evil, "updated": "t", "seeds": [0], "backend": "local",
               "scenarios": [{"path": evil, "sha256": "0" * 64}], "method": {"text": evil},
               "configurations": [config_summary(evil, "k", [evil], [run])]}
    page = render_html(summary)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="runs/a%22b/"' in page
    assert "http://" not in page and "https://" not in page and "<img" not in page
