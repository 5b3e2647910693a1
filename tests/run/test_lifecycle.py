"""Run lifecycle: Ctrl-C, evaluation lines, bad run folders and checkpoints, a NaN policy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from safe_trpo.algo import learn as learn_module
from safe_trpo.cli import main
from safe_trpo.config import load_scenario
from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.run.trainer import start_run

ROOT = Path(__file__).resolve().parents[2]
SPEED = ROOT / "scenarios" / "speed_limit_cpo.toml"


def tiny(tmp_path: Path, *extra: str):
    return load_scenario(SPEED, ["algo.total_steps=8000", "algo.steps_per_update=800",
                                 "algo.hidden_sizes=[16]", "algo.critic_epochs=2",
                                 "run.checkpoint_every=2", "env.kwargs.episode_steps=50",
                                 f"run.out_dir={str(tmp_path)!r}", *extra])


def test_ctrl_c_ends_cleanly_as_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SPEED.read_text().replace("total_steps = 120000", "total_steps = 400000"))
    proc = subprocess.Popen([sys.executable, "-m", "safe_trpo.cli", "train", str(path), "--out",
                             str(tmp_path / "r"), "--no-progress", "--set",
                             "run.checkpoint_every=2"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        logs = list((tmp_path / "r").glob("*/audit.jsonl"))
        if logs and logs[0].read_text().count('"type":"update"') >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "run interrupted" in out and "Traceback" not in err
    run_dir = logs[0].parent
    last = read_lines(run_dir)[-1]
    assert last["type"] == "run_finished" and last["status"] == "interrupted"
    verdict = verify_run(run_dir)
    assert verdict.ok and verdict.finished


def test_evaluate_appends_an_evaluation_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    outcome = start_run(tiny(tmp_path), progress=False)
    assert main(["evaluate", str(outcome.run_dir), "--episodes", "6", "--seed", "5"]) == 0
    assert "over 6 episodes" in capsys.readouterr().out
    line = read_lines(outcome.run_dir)[-1]
    assert line["type"] == "evaluation" and line["episodes"] == 6 and line["seed"] == 5
    (c,) = line["constraints"]
    assert c["name"] == "speed" and c["limit"] == 10.0
    assert 0 <= c["ep_cost_mean"] <= c["ep_cost_max"] <= 50
    assert c["frac_over_limit"] in {k / 6 for k in range(7)}
    assert verify_run(outcome.run_dir).ok
    # Deterministic policy + same seeds -> the same evaluation.
    assert main(["evaluate", str(outcome.run_dir), "--episodes", "6", "--seed", "5"]) == 0
    again = read_lines(outcome.run_dir)[-1]
    assert again["return_mean"] == line["return_mean"]


def test_unreadable_checkpoint_and_missing_folder_give_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    outcome = start_run(tiny(tmp_path, "algo.total_steps=1600"), progress=False)
    checkpoint = sorted((outcome.run_dir / "checkpoints").glob("*.pt"))[-1]
    checkpoint.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(outcome.run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "recorded files do not match the record" in err
    assert "update_000002.pt: changed since recorded" in err
    assert main(["verify", str(outcome.run_dir)]) == 1
    assert "changed since recorded" in capsys.readouterr().out
    assert main(["resume", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_foreign_checkpoint_file_is_refused_clearly(tmp_path: Path) -> None:
    from safe_trpo.errors import UserError
    from safe_trpo.run.checkpoint import read_checkpoint

    bad = tmp_path / "x.pt"
    torch.save({"format": 99}, bad)
    with pytest.raises(UserError, match="not a safe-trpo checkpoint"):
        read_checkpoint(bad)
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="unreadable checkpoint"):
        read_checkpoint(bad)


def test_non_finite_policy_step_is_reverted_and_recorded(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_cpo_step = learn_module.cpo_step
    calls = {"n": 0}

    def poisoned(policy, *args, **kwargs):
        result = real_cpo_step(policy, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                next(policy.parameters()).fill_(float("nan"))
        return result

    monkeypatch.setattr(learn_module, "cpo_step", poisoned)
    outcome = start_run(tiny(tmp_path, "algo.total_steps=4000"), progress=False)
    assert outcome.status == "completed"
    lines = read_lines(outcome.run_dir)
    events = [ln for ln in lines if ln["type"] == "nan_detected"]
    assert len(events) == 1 and events[0]["where"] == "policy" and events[0]["update"] == 1
    row = next(ln for ln in lines if ln["type"] == "update" and ln["update"] == 1)
    assert row["accepted"] is False and row["kl"] == 0.0
    assert row["step_fraction"] == 0.0 and row["surrogate_improvement"] == 0.0
    # The run went on: later steps were accepted and the final policy is finite.
    later = [ln for ln in lines if ln["type"] == "update" and ln["update"] > 1]
    assert any(ln["accepted"] for ln in later)
    from safe_trpo.run.policy_io import load_policy

    final = load_policy(outcome.run_dir).policy
    assert all(torch.isfinite(p).all() for p in final.parameters())
    assert verify_run(outcome.run_dir).ok


def test_changed_scenario_copy_or_data_file_is_refused(tmp_path: Path) -> None:
    from safe_trpo.config import data_file_hashes, scenario_to_dict
    from safe_trpo.errors import UserError
    from safe_trpo.record.audit import AuditLog
    from safe_trpo.record.run_record import read_run_record

    outcome = start_run(tiny(tmp_path, "algo.total_steps=1600"), progress=False)
    assert verify_run(outcome.run_dir).ok
    copy = outcome.run_dir / "scenario.toml"
    copy.write_text(copy.read_text() + "\n# edited\n")
    assert "scenario.toml: changed since recorded" in verify_run(outcome.run_dir).summary

    prices = tmp_path / "prices.csv"
    prices.write_text("date,A,B\n2020-01-01,1,2\n")
    scenario = load_scenario(SPEED, [f'env.data_files.prices="{prices}"'])
    run_dir = tmp_path / "fake-run"
    run_dir.mkdir()
    with AuditLog(run_dir) as log:
        log.append("run_started", scenario=scenario_to_dict(scenario), planned_updates=1,
                   data_files=data_file_hashes(scenario))
    assert read_run_record(run_dir).checkpoint is None
    prices.write_text("date,A,B\n2020-01-01,1,3\n")
    with pytest.raises(UserError, match="data file\\(s\\) prices changed"):
        read_run_record(run_dir)
