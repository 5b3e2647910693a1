"""The heated-tank FMU has a limit an unconstrained policy breaks: TRPO learns to overheat,
CPO keeps the overheat cost far lower (tier 2, short), and within its budget (tier 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from safe_trpo.config import load_scenario
from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.run.trainer import start_run
from tests.envs import fmu_fixtures

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "fmu" / "heated_tank.toml"

tank_fmu = fmu_fixtures.tank_fmu


def train(tmp_path: Path, fmu: Path, *overrides: str) -> list[dict]:
    """Train the shipped scenario on ``fmu``; the update rows of the (verified) record."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(fmu, tmp_path / "heated_tank.fmu")
    (tmp_path / "tank.toml").write_text(SCENARIO.read_text())
    scenario = load_scenario(tmp_path / "tank.toml",
                             [f"run.out_dir={str(tmp_path / 'runs')!r}", *overrides])
    outcome = start_run(scenario, progress=False)
    assert outcome.status == "completed" and verify_run(outcome.run_dir).ok
    return [ln for ln in read_lines(outcome.run_dir) if ln["type"] == "update"]


def overheat(rows: list[dict], last: int) -> float:
    return float(np.mean([r["constraints"][0]["ep_cost"] for r in rows[-last:]]))


def test_short_trpo_overheats_and_short_cpo_stays_far_cooler(tank_fmu: Path,
                                                             tmp_path: Path) -> None:
    short = ("algo.steps_per_update=800", "algo.total_steps=6400")
    trpo = train(tmp_path / "trpo", tank_fmu, "algo.name='trpo'", *short)
    cpo = train(tmp_path / "cpo", tank_fmu, "algo.name='cpo'", *short)
    limit = cpo[-1]["constraints"][0]["limit"]
    # TRPO chases production into the limit (seed 0: ~240 degC-steps per episode over the last
    # 3 updates); CPO, same seed and budget, stays near it (~40).
    assert overheat(trpo, 3) > 4 * limit
    assert overheat(cpo, 3) < 0.5 * overheat(trpo, 3)
    assert trpo[-1]["return_mean"] > trpo[0]["return_mean"]  # TRPO did learn: more heat


@pytest.mark.expensive
def test_cpo_holds_the_overheat_budget_and_produces(tank_fmu: Path, tmp_path: Path) -> None:
    cpo = train(tmp_path / "cpo", tank_fmu, "algo.total_steps=96000")
    trpo = train(tmp_path / "trpo", tank_fmu, "algo.name='trpo'", "algo.total_steps=96000")
    limit = cpo[-1]["constraints"][0]["limit"]
    assert overheat(cpo, 5) <= 1.5 * limit
    assert overheat(trpo, 5) > 10 * limit
    assert np.mean([r["return_mean"] for r in cpo[-5:]]) > cpo[0]["return_mean"]
