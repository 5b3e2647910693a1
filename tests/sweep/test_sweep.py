"""Sweeps: small real sweeps on the local and Ray backends.

The real sweeps train a tiny SpeedLimit scenario (3 updates of 200 steps); each sweep still starts
worker processes (seconds of imports each), so the file keeps to a few small sweeps.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest

import safe_trpo.sweep.runner as sweep
from safe_trpo.errors import UserError
from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.sweep.plan import plan_sweep
from safe_trpo.sweep.runner import run_sweep
from safe_trpo.sweep.summary import (
    FINAL_WINDOW,
    find_sweeps,
    job_record,
    load_summary,
    sweep_run_dirs,
)
from tests.sweep.fixtures import TINY, write


def final_mean(run_dir: Path, get) -> float:
    """Independent reference: mean of the non-null values in the last FINAL_WINDOW update rows."""
    rows = [ln for ln in read_lines(run_dir) if ln["type"] == "update"][-FINAL_WINDOW:]
    return statistics.fmean(v for v in map(get, rows) if v is not None)


def attempt_lines(sweep_dir: Path) -> dict[str, int]:
    return {p.parent.name: len(p.read_text().splitlines())
            for p in sweep_dir.glob("runs/*/attempts.jsonl")}


# ---------------------------------------------------------------- real sweeps


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("sweep")
    scenario = write(tmp / "tiny.toml", TINY)
    plan = plan_sweep([scenario], "0-1", [], tmp / "out")
    summary = run_sweep(plan, "local", workers=2)
    return tmp, scenario, plan, summary


def kept_at_end(run_dir: Path) -> bool | None:
    """The speed limit kept by every episode of the last 5 rows (an independent reading of the
    verdict's rule); None when the rows do not say (no episode counts recorded)."""
    rows = [ln for ln in read_lines(run_dir) if ln["type"] == "update"][-5:]
    cons = [r["constraints"][0] for r in rows]
    if any((c.get("episodes_over") or 0) > 0 or (c["ep_cost"] or 0) > 10.0 for c in cons):
        return False
    counted = all("episodes_over" in c for c in cons) and sum(r["episodes"] for r in rows)
    return True if counted else None


def test_two_seed_local_sweep_gives_verified_runs_and_right_aggregates(local_sweep) -> None:
    _, _, plan, summary = local_sweep
    (config,) = summary["configurations"]
    assert (config["n_runs"], config["n_completed"]) == (2, 2)
    runs = {r["seed"]: plan.sweep_dir / r["run_dir"] for r in config["runs"]}
    for seed, run_dir in runs.items():
        verdict = verify_run(run_dir)
        assert verdict.ok and verdict.finished
        assert read_lines(run_dir)[0]["seed"] == seed
        assert (plan.sweep_dir / next(r for r in config["runs"] if r["seed"] == seed)["report"]
                ).is_file()
    returns = [final_mean(d, lambda r: r["return_mean"]) for d in runs.values()]
    costs = [final_mean(d, lambda r: r["constraints"][0]["ep_cost"]) for d in runs.values()]
    assert returns[0] != returns[1], "two seeds gave identical runs"
    assert config["return"]["median"] == pytest.approx(statistics.median(returns), rel=1e-12)
    assert config["return"]["min"] == pytest.approx(min(returns), rel=1e-12)
    speed = config["constraints"][0]
    assert speed["ep_cost"]["median"] == pytest.approx(statistics.median(costs), rel=1e-12)
    kept = [kept_at_end(d) for d in runs.values()]
    assert speed["frac_within"] == sum(k is True for k in kept) / 2
    assert config["frac_within_all_limits"] == speed["frac_within"]
    on_disk = load_summary(plan.sweep_dir)
    assert on_disk["configurations"][0]["return"] == config["return"]
    assert find_sweeps(plan.sweep_dir.parents[1]) == [plan.sweep_dir]
    assert sorted(sweep_run_dirs(plan.sweep_dir, on_disk)) == sorted(runs.values())
    on_disk["configurations"][0]["runs"][0]["run_dir"] = "../../.."  # a tampered summary
    assert sweep_run_dirs(plan.sweep_dir, on_disk) == [runs[1]]
    page = (plan.sweep_dir / "sweep.html").read_text()
    assert all(r["report"] in page for r in config["runs"])


def test_rerun_skips_finished_runs_without_calling_the_job(local_sweep, monkeypatch) -> None:
    _, scenario, plan, _ = local_sweep
    before_dirs = sorted(plan.sweep_dir.rglob("audit.jsonl"))
    before_attempts = attempt_lines(plan.sweep_dir)
    calls = []
    monkeypatch.setattr(sweep, "_execute", lambda jobs, *a: calls.append(jobs))
    out = plan.sweep_dir.parents[1]
    assert sweep.run_sweep_command([scenario], "0-1", [], "local", None, 2, out) == 0
    assert calls == [] and load_summary(plan.sweep_dir)["last_invocation"] == \
        {"skipped": 2, "ran": 0}
    assert sorted(plan.sweep_dir.rglob("audit.jsonl")) == before_dirs
    assert attempt_lines(plan.sweep_dir) == before_attempts


def test_failed_runs_are_reported_and_only_they_rerun(tmp_path: Path, monkeypatch, capsys) -> None:
    good = write(tmp_path / "good.toml", TINY)
    # Pendulum reports no cost_heat, and declares no cost names to check up front (no
    # ENV_INFO): start_run fails at the first step, after it has made the run folder.
    heat = write(tmp_path / "heat.toml", TINY.replace('name = "speed"', 'name = "heat"')
                 .replace('id = "SafeTRPO/SpeedLimit-v0"', 'id = "Pendulum-v1"')
                 .replace("kwargs = { episode_steps = 50 }", ""))
    scenarios, out = [good, heat], tmp_path / "out"
    plan = plan_sweep(scenarios, "0", [], out, make_reports=False)
    sweep_dir = plan.sweep_dir
    state = {c["label"]: c["runs"][0] for c in run_sweep(plan, "local")["configurations"]}
    assert state["good"]["state"] == "completed" and state["good"]["verified"]
    assert state["heat"]["state"] == "failed" and "cost_heat" in state["heat"]["reason"]
    assert state["heat"]["run_dir"] is not None

    executed = []
    real = sweep._execute
    monkeypatch.setattr(sweep, "_execute",
                        lambda jobs, *a: (executed.extend(j.label for j in jobs), real(jobs, *a)))
    assert sweep.run_sweep_command(scenarios, "0", [], "local", None, 2, out) == 1
    assert executed == ["heat"]
    printed = capsys.readouterr().out
    assert "1 already finished" in printed and "0/1 completed, 1 failed" in printed
    assert str(sweep_dir / "sweep.html") in printed
    again = {c["label"]: c["runs"][0] for c in load_summary(sweep_dir)["configurations"]}
    assert (again["good"]["attempts"], again["heat"]["attempts"]) == (1, 2)
    assert again["good"]["run_dir"] == state["good"]["run_dir"]
    heat_runs = list((sweep_dir / again["heat"]["job_dir"]).glob("*/audit.jsonl"))
    assert len(heat_runs) == 2, "the failed attempt's folder is kept beside the new one"


def test_a_job_failing_before_its_run_folder_is_logged_not_raised(tmp_path: Path) -> None:
    nope = write(tmp_path / "nope.toml", TINY.replace("SafeTRPO/SpeedLimit-v0", "Nope-v0"))
    (job,) = plan_sweep([nope], "3", [], tmp_path / "out", make_reports=False).jobs
    result = sweep.run_job(job)  # in this process: the failure path needs no training
    assert result["status"] == "failed" and "Nope-v0" in result["reason"]
    assert result["run_dir"] is None and "traceback" not in result
    log = (Path(job.job_dir) / "attempts.jsonl").read_text()
    logged = [json.loads(x) for x in log.splitlines()]
    assert [x["event"] for x in logged] == ["started", "finished"]
    assert "Traceback" in logged[1]["traceback"]
    record = job_record(job, tmp_path)
    assert record["state"] == "failed" and "Nope-v0" in record["reason"]


def test_a_worker_that_dies_fails_only_its_own_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFE_TRPO_TRUST_MODULES", "tests.sweep.fixtures")  # workers inherit it
    out, ready = tmp_path / "out", json.dumps(str(tmp_path / "ready"))
    attempts = json.dumps(f"{out}/sweeps/*/runs/good-*/attempts.jsonl")
    good = write(tmp_path / "good.toml", TINY.replace(
        '"SafeTRPO/SpeedLimit-v0"', '"tests.sweep.fixtures:BlockedOnFirstAttempt"').replace(
        "episode_steps = 50", f"episode_steps = 50, attempts_glob = {attempts}, ready = {ready}"))
    killer = write(tmp_path / "killer.toml", TINY.replace(
        '"SafeTRPO/SpeedLimit-v0"', '"tests.sweep.fixtures:SelfKillingEnv"').replace(
        "episode_steps = 50", f"wait_for = {ready}"))
    plan = plan_sweep([good, killer], "0", [], out, make_reports=False)
    state = {c["label"]: c["runs"][0] for c in run_sweep(plan, "local")["configurations"]}
    assert state["good"]["state"] == "completed" and state["good"]["verified"]
    assert state["good"]["attempts"] == 2, "killed with the pool, then re-run alone"
    assert state["killer"]["state"] == "failed" and "never finished" in state["killer"]["reason"]
    assert state["killer"]["attempts"] == 2, "once beside the other job, once alone"


def test_sigterm_stops_the_workers_and_still_writes_the_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFE_TRPO_TRUST_MODULES", "tests.sweep.fixtures")  # workers inherit it
    ready = tmp_path / "ready"
    # Left alone this run takes well over a minute (100 updates of 100 slow steps per copy).
    scenario = write(tmp_path / "slow.toml", TINY.replace(
        '"SafeTRPO/SpeedLimit-v0"', '"tests.sweep.fixtures:SlowSpeedLimit"').replace(
        "episode_steps = 50", f"episode_steps = 50, ready = {json.dumps(str(ready))}").replace(
        "total_steps = 600", "total_steps = 20000"))
    plan = plan_sweep([scenario], "0", [], tmp_path / "out", make_reports=False)
    received = []

    def sentinel(*args) -> None:  # without the sweep's own handler, SIGTERM would land here
        received.append(args)

    previous = signal.signal(signal.SIGTERM, sentinel)

    def stop_when_training() -> None:
        deadline = time.monotonic() + 120
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # to the sweep process only, as `kill` does

    killer = threading.Thread(target=stop_when_training, daemon=True)
    killer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(plan, "local", workers=1, echo=lambda _: None)
        assert signal.getsignal(signal.SIGTERM) is sentinel  # the previous handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)
        killer.join(5)
    assert received == [] and multiprocessing.active_children() == []
    (run,) = load_summary(plan.sweep_dir)["configurations"][0]["runs"]
    assert run["state"] == "failed" and "SIGTERM" in run["reason"]
    ends = [ln for ln in read_lines(plan.sweep_dir / run["run_dir"])
            if ln["type"] == "run_finished"]
    assert [e["status"] for e in ends] == ["interrupted"] and ends[0]["updates"] < 100


def test_two_seed_ray_sweep_matches_the_local_one(local_sweep) -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install safe-trpo[ray])")
    tmp, scenario, _, local = local_sweep
    plan = plan_sweep([scenario], "0-1", [], tmp / "ray-out")
    try:
        summary = run_sweep(plan, "ray", workers=2)
    except UserError as exc:
        if "cannot start" in str(exc):
            pytest.skip(f"Ray cannot start a local cluster here: {exc}")
        raise
    (config,) = summary["configurations"]
    assert config["n_completed"] == 2
    for r in config["runs"]:
        assert verify_run(plan.sweep_dir / r["run_dir"]).ok
    # Same scenario, same seeds, fresh processes on both backends: the same training.
    assert config["return"] == local["configurations"][0]["return"]
