"""Tier 3: learning checks that take minutes. Run with `python -m pytest -m expensive`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safe_trpo.config import load_scenario
from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.run.evaluate import evaluate_run
from safe_trpo.run.trainer import start_run

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
pytestmark = pytest.mark.expensive


def train(tmp_path: Path, name: str, *overrides: str) -> Path:
    scenario = load_scenario(SCENARIOS / name, [f"run.out_dir={str(tmp_path)!r}", *overrides])
    outcome = start_run(scenario, progress=False)
    assert outcome.status == "completed" and verify_run(outcome.run_dir).ok
    return outcome.run_dir


def last_rows(run_dir: Path, k: int = 5) -> list[dict]:
    return [ln for ln in read_lines(run_dir) if ln["type"] == "update"][-k:]


@pytest.mark.parametrize("seed", [0, 1])
def test_trpo_solves_pendulum_in_200k_steps(tmp_path: Path, seed: int) -> None:
    run_dir = train(tmp_path, "pendulum_trpo.toml", f"run.seed={seed}")
    final = np.mean([r["return_mean"] for r in last_rows(run_dir)])
    assert final > -400, f"mean training return of the last 5 updates: {final:.1f}"
    evaluation = evaluate_run(run_dir, episodes=10)
    assert evaluation["return_mean"] > -400


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpo_speed_limit_holds_the_limit_over_seeds(tmp_path: Path, seed: int) -> None:
    run_dir = train(tmp_path, "speed_limit_cpo.toml", f"run.seed={seed}")
    rows = last_rows(run_dir)
    cost = np.mean([r["constraints"][0]["ep_cost"] for r in rows])
    assert cost <= 1.05 * rows[-1]["constraints"][0]["limit"]
    assert np.mean([r["return_mean"] for r in rows]) > 40  # unconstrained reaches ~96
