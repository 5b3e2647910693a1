"""Sweeps: parsing, the summary's arithmetic, and small real sweeps on the local and Ray backends.

The real sweeps train a tiny SpeedLimit scenario (3 updates of 200 steps); each sweep still starts
worker processes (seconds of imports each), so the file keeps to a few small sweeps.
"""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import signal
import statistics
import threading
import time
from pathlib import Path

import gymnasium as gym
import pytest

import safe_trpo.sweep.runner as sweep
from envs.speed_limit import SpeedLimitEnv
from safe_trpo.config import data_file_hashes, load_scenario
from safe_trpo.errors import UserError
from safe_trpo.record.audit import AuditLog, read_lines, verify_run
from safe_trpo.sweep.plan import Job, parse_seeds, parse_sets, plan_sweep, split_values
from safe_trpo.sweep.runner import run_sweep
from safe_trpo.sweep.summary import (
    FINAL_WINDOW,
    config_summary,
    find_done_run,
    find_sweeps,
    job_record,
    load_summary,
    render_html,
    run_result,
    spread,
    sweep_run_dirs,
)

TINY = """
[env]
id = "SafeTRPO/SpeedLimit-v0"
num_envs = 2
kwargs = { episode_steps = 50 }
[algo]
name = "cpo"
steps_per_update = 200
total_steps = 600
hidden_sizes = [8]
critic_epochs = 1
[[constraints]]
name = "speed"
limit = 10.0
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def final_mean(run_dir: Path, get) -> float:
    """Independent reference: mean of the non-null values in the last FINAL_WINDOW update rows."""
    rows = [ln for ln in read_lines(run_dir) if ln["type"] == "update"][-FINAL_WINDOW:]
    return statistics.fmean(v for v in map(get, rows) if v is not None)


def attempt_lines(sweep_dir: Path) -> dict[str, int]:
    return {p.parent.name: len(p.read_text().splitlines())
            for p in sweep_dir.glob("runs/*/attempts.jsonl")}


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, seeds", [("5", [5]), ("0-3", [0, 1, 2, 3]), ("0,3,7", [0, 3, 7]),
                                         ("0-2,8", [0, 1, 2, 8]), (" 4 - 5 , 9", [4, 5, 9])])
def test_seed_syntax(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [("", "expected"), ("a", "expected"), ("-1", "expected"),
                                           ("5-2", "backwards"), ("0-3,2", "twice")])
def test_bad_seeds_are_refused(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_seeds(text)


def test_values_split_only_on_top_level_commas() -> None:
    assert split_values("[32,32],[64, 64]") == ["[32,32]", "[64, 64]"]
    assert split_values("'a,b',\"c,d\",e") == ["'a,b'", '"c,d"', "e"]
    assert split_values("{ x = 1, y = 2 },0.5") == ["{ x = 1, y = 2 }", "0.5"]
    for bad in ("1,,2", "[1,2", "'open"):
        with pytest.raises(UserError):
            split_values(bad)


def test_sets_parse_and_refuse_what_the_sweep_owns() -> None:
    assert parse_sets(["algo.target_kl=0.01,0.02", "constraints.speed.limit=5"]) == \
        [("algo.target_kl", ["0.01", "0.02"]), ("constraints.speed.limit", ["5"])]
    cases = ((["target_kl=1"], "section.key"), (["run.seed=1,2"], "--seeds"),
             (["run.out_dir=x"], "--out"), (["algo.gamma=0.9", "algo.gamma=0.8"], "twice"),
             (["algo.gamma=0.9,0.9"], "twice"))
    for bad, message in cases:
        with pytest.raises(UserError, match=message):
            parse_sets(bad)


def test_plan_is_the_product_with_deterministic_names(tmp_path: Path) -> None:
    scenario = write(tmp_path / "tiny.toml", TINY)
    sets = ["algo.target_kl=0.01,0.02", "constraints.speed.limit=5,10", "algo.hidden_sizes=[8,8]"]
    plan = plan_sweep([scenario], "0-2", sets, tmp_path / "out")
    assert len(plan.jobs) == 2 * 2 * 1 * 3
    labels = sorted({j.label for j in plan.jobs})
    assert "tiny[target_kl=0.02,limit=5,hidden_sizes=[8,8]]" in labels and len(labels) == 4
    assert len({j.job_dir for j in plan.jobs}) == len(plan.jobs)
    again = plan_sweep([scenario], "0-2", sets, tmp_path / "out")
    assert again.sweep_id == plan.sweep_id and again.jobs == plan.jobs
    assert plan_sweep([scenario], "0-1", sets, tmp_path / "out").sweep_id != plan.sweep_id
    write(scenario, TINY.replace("limit = 10.0", "limit = 11.0"))
    assert plan_sweep([scenario], "0-2", sets, tmp_path / "out").sweep_id != plan.sweep_id


def test_a_configuration_that_does_not_load_stops_the_sweep_before_it_starts(
        tmp_path: Path) -> None:
    scenario = write(tmp_path / "tiny.toml", TINY)
    with pytest.raises(UserError, match="target_kl"):
        plan_sweep([scenario], "0", ["algo.target_kl=0.01,-1"], tmp_path / "out")
    with pytest.raises(UserError, match="same scenario"):
        plan_sweep([scenario], "0", ["algo.target_kl=0.01,1e-2"], tmp_path / "out")


# ---------------------------------------------------------------- summary arithmetic


def fake_run(run_dir: Path, returns: list, costs: list, status: str = "completed",
             data_files: list | None = None) -> Path:
    """A run folder with a real audit chain and the given per-update return/cost values;
    ``data_files`` as the trainer records them (``config.data_file_hashes``)."""
    run_dir.mkdir(parents=True)
    log = AuditLog(run_dir)
    log.append("run_started", scenario={"constraints": [{"name": "speed", "limit": 10.0}]},
               data_files=data_files or [])
    for i, (ret, cost) in enumerate(zip(returns, costs, strict=True)):
        log.append("update", update=i, return_mean=ret,
                   constraints=[{"name": "speed", "limit": 10.0, "ep_cost": cost}])
    log.append("run_finished", status=status, updates=len(returns), env_steps=0, reason="")
    log.close()
    return run_dir


def test_final_metrics_average_the_last_rows_and_never_guess_unknowns(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "a", [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0],
                   [20.0, 20.0, 9.0, None, 11.0, 3.0, 1.0])
    result = run_result(run)
    assert result["final_return"] == pytest.approx((4 + 5 + 6 + 7) / 4)  # last 5 rows, non-null
    assert result["final_costs"]["speed"] == pytest.approx((9 + 11 + 3 + 1) / 4)
    assert result["within_limits"] is True and result["verified"]
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
            log.append("update", update=i, return_mean=ret,
                       constraints=[{"name": "speed", "limit": 10.0, "ep_cost": cost}])
        log.append("resumed", from_update=8, checkpoint="checkpoints/update_000008.pt",
                   cut_tail=None)
        for i in range(8, 12):
            log.append("update", update=i, return_mean=float(i),
                       constraints=[{"name": "speed", "limit": 10.0, "ep_cost": 1.0}])
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


# ---------------------------------------------------------------- real sweeps


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("sweep")
    scenario = write(tmp / "tiny.toml", TINY)
    plan = plan_sweep([scenario], "0-1", [], tmp / "out")
    summary = run_sweep(plan, "local", workers=2)
    return tmp, scenario, plan, summary


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
    assert speed["frac_within"] == sum(c <= 10.0 for c in costs) / 2
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
    # The env reports no cost_heat: start_run fails after it has made the run folder.
    heat = write(tmp_path / "heat.toml", TINY.replace('name = "speed"', 'name = "heat"'))
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


class BlockedOnFirstAttempt(SpeedLimitEnv):
    """SpeedLimit, except that on its job's first attempt it touches ``ready`` and pauses 5 s
    (its neighbour's worker dies meanwhile); later attempts run normally."""

    def __init__(self, attempts_glob: str = "", ready: str = "", **kwargs) -> None:
        (attempts,) = glob.glob(attempts_glob)
        first = Path(attempts).read_text().count('"started"') == 1
        if first and not Path(ready).exists():
            Path(ready).touch()
            time.sleep(5)
        super().__init__(**kwargs)


class SelfKillingEnv(gym.Env):
    """Kills the worker process that builds it, as an out-of-memory kill would, once the file
    ``wait_for`` exists (so that the neighbouring job is mid-run when the pool breaks)."""

    def __init__(self, wait_for: str = "", **kwargs) -> None:
        if multiprocessing.parent_process() is None:  # never the test process itself
            raise RuntimeError("SelfKillingEnv only runs inside a sweep worker")
        deadline = time.monotonic() + 60
        while not Path(wait_for).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_that_dies_fails_only_its_own_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFE_TRPO_TRUST_MODULES", "tests.sweep.test_sweep")  # workers inherit it
    out, ready = tmp_path / "out", json.dumps(str(tmp_path / "ready"))
    attempts = json.dumps(f"{out}/sweeps/*/runs/good-*/attempts.jsonl")
    good = write(tmp_path / "good.toml", TINY.replace(
        '"SafeTRPO/SpeedLimit-v0"', '"tests.sweep.test_sweep:BlockedOnFirstAttempt"').replace(
        "episode_steps = 50", f"episode_steps = 50, attempts_glob = {attempts}, ready = {ready}"))
    killer = write(tmp_path / "killer.toml", TINY.replace(
        '"SafeTRPO/SpeedLimit-v0"', '"tests.sweep.test_sweep:SelfKillingEnv"').replace(
        "episode_steps = 50", f"wait_for = {ready}"))
    plan = plan_sweep([good, killer], "0", [], out, make_reports=False)
    state = {c["label"]: c["runs"][0] for c in run_sweep(plan, "local")["configurations"]}
    assert state["good"]["state"] == "completed" and state["good"]["verified"]
    assert state["good"]["attempts"] == 2, "killed with the pool, then re-run alone"
    assert state["killer"]["state"] == "failed" and "never finished" in state["killer"]["reason"]
    assert state["killer"]["attempts"] == 2, "once beside the other job, once alone"


class SlowSpeedLimit(SpeedLimitEnv):
    """SpeedLimit at about 2 ms a step, touching ``ready`` on its first step (the trainer is in
    its loop by then, with its SIGTERM handler installed)."""

    def __init__(self, ready: str = "", **kwargs) -> None:
        self.ready = ready
        super().__init__(**kwargs)

    def step(self, action):
        if not Path(self.ready).exists():
            Path(self.ready).touch()
        time.sleep(0.002)
        return super().step(action)


def test_sigterm_stops_the_workers_and_still_writes_the_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFE_TRPO_TRUST_MODULES", "tests.sweep.test_sweep")  # workers inherit it
    ready = tmp_path / "ready"
    # Left alone this run takes well over a minute (100 updates of 100 slow steps per copy).
    scenario = write(tmp_path / "slow.toml", TINY.replace(
        '"SafeTRPO/SpeedLimit-v0"', '"tests.sweep.test_sweep:SlowSpeedLimit"').replace(
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
