"""Tier 2: short training runs behave (learn, record, reproduce, fail safely, resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safe_trpo.config import load_scenario
from safe_trpo.errors import UserError
from safe_trpo.record.audit import WALL_CLOCK_FIELDS, read_lines, verify_run
from safe_trpo.run.trainer import resume_run, start_run

ROOT = Path(__file__).resolve().parents[2]

CARTPOLE = """
[env]
id = "CartPole-v1"
num_envs = 8
[algo]
name = "trpo"
steps_per_update = 1024
total_steps = 20480
target_kl = 0.02
hidden_sizes = [32, 32]
critic_epochs = 5
critic_minibatch = 256
[run]
seed = 1
checkpoint_every = 5
"""

PENDULUM_TINY = """
[env]
id = "Pendulum-v1"
num_envs = 4
[algo]
name = "trpo"
steps_per_update = 400
total_steps = 1200
hidden_sizes = [16]
critic_epochs = 2
[run]
seed = 7
"""


def scenario(tmp_path: Path, text: str, *overrides: str):
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return load_scenario(path, [f"run.out_dir={str(tmp_path / 'reports')!r}", *overrides])


def updates(run_dir: Path) -> list[dict]:
    return [ln for ln in read_lines(run_dir) if ln["type"] == "update"]


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cartpole")
    outcome = start_run(scenario(tmp, CARTPOLE), progress=False)
    assert outcome.status == "completed"
    return outcome.run_dir


def test_short_cartpole_run_improves_its_return(cartpole_run: Path) -> None:
    returns = [u["return_mean"] for u in updates(cartpole_run) if u["return_mean"] is not None]
    first, last = returns[0], sum(returns[-5:]) / 5
    assert first < 40, "a random CartPole policy lasts ~20 steps"
    assert last > 2.5 * first, f"return went from {first:.1f} to {last:.1f}"


def test_every_update_row_follows_the_audit_contract(cartpole_run: Path) -> None:
    lines = read_lines(cartpole_run)
    assert lines[0]["type"] == "run_started" and lines[-1]["type"] == "run_finished"
    assert lines[0]["planned_updates"] == 20 and lines[-1]["status"] == "completed"
    assert set(lines[0]["versions"]) >= {"torch", "gymnasium", "numpy", "cvxpy", "python"}
    rows = updates(cartpole_run)
    assert [r["update"] for r in rows] == list(range(20))
    assert [r["env_steps"] for r in rows] == [1024 * (i + 1) for i in range(20)]
    required = {"update", "env_steps", "kl", "target_kl", "accepted", "backtracks",
                "return_mean", "episodes", "constraints"}
    for r in rows:
        assert required <= set(r)
        if r["accepted"]:
            assert 0 < r["kl"] <= r["target_kl"]
        else:
            assert r["kl"] == 0
    assert sum(r["accepted"] for r in rows) >= 15
    checkpoints = [ln for ln in lines if ln["type"] == "file" and ln["role"] == "checkpoint"]
    assert len(checkpoints) == 4  # every 5 updates
    assert verify_run(cartpole_run).ok


def _comparable(run_dir: Path) -> list[dict]:
    rows = []
    for ln in read_lines(run_dir):
        if ln["type"] in ("update", "run_finished"):
            rows.append({k: v for k, v in ln.items()
                         if k not in WALL_CLOCK_FIELDS | {"hash", "prev_hash", "seq"}})
    return rows


def test_same_scenario_and_seed_give_identical_audit_rows(tmp_path: Path) -> None:
    a = start_run(scenario(tmp_path, PENDULUM_TINY), progress=False).run_dir
    b = start_run(scenario(tmp_path, PENDULUM_TINY), progress=False).run_dir
    c = start_run(scenario(tmp_path, PENDULUM_TINY, "run.seed=8"), progress=False).run_dir
    assert a != b
    assert _comparable(a) == _comparable(b)
    assert _comparable(a) != _comparable(c)


def test_a_cost_the_env_never_reports_is_a_clear_error(tmp_path: Path) -> None:
    text = PENDULUM_TINY + '\n[[constraints]]\nname = "heat"\nlimit = 1.0\n'
    with pytest.raises(UserError, match=r"does not report info\['cost_heat'\]"):
        start_run(scenario(tmp_path, text), progress=False)
    run_dir = next(p for p in (tmp_path / "reports").iterdir() if p.is_dir())  # not the ledger
    last = read_lines(run_dir)[-1]
    assert last["type"] == "run_finished" and last["status"] == "failed"
    assert verify_run(run_dir).ok


def test_nan_from_the_environment_is_recorded_and_stops_safely(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFE_TRPO_TRUST_MODULES", "tests.run.nan_env")  # the user trusts it
    text = PENDULUM_TINY.replace('"Pendulum-v1"', '"tests.run.nan_env:NanAfterSteps"') \
        .replace("[algo]", "kwargs = { nan_after = 250 }\n[algo]")
    text = text.replace("total_steps = 1200", "total_steps = 4000") + "checkpoint_every = 1\n"
    outcome = start_run(scenario(tmp_path, text), progress=False)
    assert outcome.status == "failed" and "non-finite observation" in outcome.reason
    lines = read_lines(outcome.run_dir)
    nan = [ln for ln in lines if ln["type"] == "nan_detected"]
    assert len(nan) == 1 and nan[0]["where"] == "environment"
    assert len(updates(outcome.run_dir)) == 2  # 250 steps per copy = two full updates of 100
    assert verify_run(outcome.run_dir).ok


def test_sigkill_mid_run_then_resume_completes_and_verifies(tmp_path: Path) -> None:
    text = PENDULUM_TINY.replace("total_steps = 1200", "total_steps = 8000") \
        + "checkpoint_every = 3\n"
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    out = tmp_path / "reports"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "safe_trpo.cli", "train", str(path),
                             "--out", str(out), "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    run_dir = None
    while time.time() < deadline:
        dirs = list(out.glob("*/audit.jsonl")) if out.exists() else []
        if dirs:
            run_dir = dirs[0].parent
            text_now = dirs[0].read_text(encoding="utf-8", errors="replace")
            if text_now.count('"type":"update"') >= 7:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None
    before = verify_run(run_dir)
    assert not before.finished and before.chain.status in ("intact", "interrupted")
    outcome = resume_run(run_dir, progress=False)
    assert outcome.status == "completed" and outcome.updates == 20
    assert verify_run(run_dir).ok
    lines = read_lines(run_dir)
    resumed = [ln for ln in lines if ln["type"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["from_update"] % 3 == 0
    assert {u["update"] for u in updates(run_dir)} == set(range(20))
    # Updates after the resume point carry on from the checkpoint's step count.
    after = [u for u in lines if u["type"] == "update" and u["seq"] > resumed[0]["seq"]]
    assert after[0]["update"] == resumed[0]["from_update"]
    assert after[0]["env_steps"] == 400 * (resumed[0]["from_update"] + 1)
    with pytest.raises(UserError, match="already completed"):
        resume_run(run_dir, progress=False)


def test_cli_train_prints_the_run_folder(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(PENDULUM_TINY)
    result = subprocess.run([sys.executable, "-m", "safe_trpo.cli", "train", str(path), "--out",
                             str(tmp_path / "r"), "--no-progress", "--set", "run.seed=2"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.is_dir() and json.loads(
        (run_dir / "audit.jsonl").read_text().splitlines()[0])["seed"] == 2
