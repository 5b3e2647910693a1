"""A safety layer's interventions reach every training update row (``safety_interventions``):
counted per copy and step, finished copies read from ``final_info``; null without a layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from safe_trpo.algo.rollout import count_interventions
from safe_trpo.config import load_scenario
from safe_trpo.record.audit import read_lines
from safe_trpo.run.trainer import start_run

ROOT = Path(__file__).resolve().parents[2]


def test_counted_per_copy_with_finished_copies_from_final_info() -> None:
    done = np.array([False, True, False, True])
    info = {"safety_interventions": np.array([2, 0, 0, 0]),  # copy 1, 3: reset info here
            "final_info": {"safety_interventions": np.array([0, 1, 0, 0])}}
    assert count_interventions(info, done) == 2  # copy 0 now, copy 1 on its last step
    assert count_interventions({"cost": np.zeros(4)}, done) is None


def _one_update(tmp_path: Path, hard_cap: str | None) -> dict:
    sets = ["algo.steps_per_update=504", "algo.total_steps=504", "algo.critic_epochs=1",
            "env.num_envs=2", f"run.out_dir={str(tmp_path)!r}"]
    if hard_cap is not None:
        sets.append(f"env.kwargs.hard_concentration_cap={hard_cap}")
    scenario = load_scenario(ROOT / "scenarios" / "portfolio_drawdown.toml", sets)
    outcome = start_run(scenario, progress=False)
    return next(ln for ln in read_lines(outcome.run_dir) if ln["type"] == "update")


def test_portfolio_hard_cap_interventions_are_in_the_update_row(tmp_path: Path) -> None:
    # A cap of 0.13 on 8 assets leaves little room: a random initial policy hits it often.
    capped = _one_update(tmp_path / "capped", "0.13")
    assert isinstance(capped["safety_interventions"], int)
    assert 0 < capped["safety_interventions"] <= 504
    free = _one_update(tmp_path / "free", None)
    assert free["safety_interventions"] == 0  # the layer exists but never had to act
