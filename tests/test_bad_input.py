"""Bad scenario input through the CLI: one line naming the file/key, exit 2, no traceback, and
no run folder left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[env]
id = "Pendulum-v1"
num_envs = 2
[algo]
steps_per_update = 200
total_steps = 200
hidden_sizes = [8]
critic_epochs = 1
"""

CASES = {
    "seed above 2**63": (TINY + "[run]\nseed = 18446744073709551616\n", [], "[run].seed"),
    "seed above 2**63 by --set": (TINY, ["--set", "run.seed=9223372036854775808"], "[run].seed"),
    "eval seed above 2**63": (TINY + "[eval]\nseed = 18446744073709551616\n", [], "[eval].seed"),
    "deeply nested TOML": (TINY + "x = " + "[" * 5000 + "]" * 5000 + "\n", [], "nested"),
    "huge hidden_sizes": (TINY.replace("[8]", "[100000000000]"), [], "hidden_sizes"),
    "many layers": (TINY.replace("[8]", str([8] * 500)), [], "hidden_sizes"),
    "env constructor fails after import": (
        TINY.replace('"Pendulum-v1"', '"tests.run.broken_env:BrokenEnv"'),
        ["--trust-module", "tests.run.broken_env"], "ZeroDivisionError"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_scenario_gets_one_line(tmp_path: Path, name: str) -> None:
    text, extra, expected = CASES[name]
    path = tmp_path / "s.toml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "safe_trpo.cli", "train", str(path), "--out",
                             str(tmp_path / "r"), "--no-progress", *extra], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                            timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert expected in lines[0]
    assert not (tmp_path / "r").exists()


def test_evaluate_seed_out_of_range_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "safe_trpo.cli", "evaluate", str(tmp_path),
                             "--seed", str(2**64)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.returncode == 2 and "expected a seed from 0 to 2**63-1" in result.stderr
