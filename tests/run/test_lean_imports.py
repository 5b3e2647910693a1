"""A job imports only what it uses: plain TRPO training loads no cvxpy, Streamlit, matplotlib,
Ray or pandas (each costs a fresh process up to seconds of imports), while a CPO run does load
cvxpy, so the check can tell the two apart. Each case is a fresh interpreter that trains one
small update through the CLI's own entry and then lists what it imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("cvxpy", "streamlit", "matplotlib", "ray", "pandas", "scipy", "sympy", "torch._dynamo")

SCRIPT = """
import json, sys
from safe_trpo.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def modules_after(*argv: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, out.stdout
    return set(result["modules"])


def loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def one_update(scenario: str, out: Path, steps: int) -> list[str]:
    return ["train", str(ROOT / "scenarios" / scenario), "--no-progress", "--out", str(out),
            "--set", f"algo.steps_per_update={steps}", "--set", f"algo.total_steps={steps}",
            "--set", "algo.critic_epochs=1"]


def test_plain_trpo_training_imports_no_heavy_library(tmp_path: Path) -> None:
    modules = modules_after(*one_update("pendulum_trpo.toml", tmp_path, 256))
    assert "safe_trpo.run.trainer" in modules and "torch" in modules  # it did train
    assert [name for name in HEAVY if loaded(modules, name)] == []
    for package in ("report", "review", "sweep", "finance"):
        assert not loaded(modules, f"safe_trpo.{package}"), package
    assert not loaded(modules, "envs.portfolio")


@pytest.mark.parametrize("name", ["cvxpy"])
def test_a_cpo_run_does_load_the_solver(tmp_path: Path, name: str) -> None:
    # 800 steps over 8 copies: each finishes one 100-step episode (CPO needs one to set its
    # horizon when the env declares no time limit).
    modules = modules_after(*one_update("speed_limit_cpo.toml", tmp_path, 800))
    assert loaded(modules, name)


def test_the_console_entry_exits_fast_without_losing_the_record(tmp_path: Path) -> None:
    # ``entry`` (the safe-trpo script, python -m safe_trpo.cli) freezes the heap before the
    # interpreter exits, to skip the collector's walks over torch's objects. Everything the
    # run wrote must still be there and verify, and the exit codes must be main's.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    train = subprocess.run([sys.executable, "-m", "safe_trpo.cli",
                            *one_update("pendulum_trpo.toml", tmp_path, 256)],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    run_dir = train.stdout.strip().splitlines()[-1]
    verify = subprocess.run([sys.executable, "-m", "safe_trpo.cli", "verify", run_dir],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert verify.returncode == 0 and "VERIFIED" in verify.stdout, verify.stdout + verify.stderr
    bad = subprocess.run([sys.executable, "-m", "safe_trpo.cli", "train",
                          str(tmp_path / "missing.toml")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.startswith("safe-trpo train: error:") and bad.stderr.count("\n") == 1


def test_imports_without_gc_restores_the_collector_and_freezes_nothing_in_process() -> None:
    import gc

    from safe_trpo import cli

    frozen = gc.get_freeze_count()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), cli._imports_without_gc():
        assert not gc.isenabled()
        raise RuntimeError("an import failed")
    assert gc.isenabled()  # back on, even after a failure inside
    assert gc.get_freeze_count() == frozen  # a caller of main keeps its heap collectable
