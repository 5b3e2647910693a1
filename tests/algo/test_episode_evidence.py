"""Episode-level evidence beside the mean episode cost: counts, worst case, CVaR, run totals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safe_trpo.algo.learn import episode_evidence
from safe_trpo.config import load_scenario
from safe_trpo.record.audit import read_lines
from safe_trpo.record.evidence import constraint_totals, current_update_rows
from safe_trpo.run.trainer import start_run

KNOWN = """
[env]
id = "tests.algo.known_cost_env:KnownCostEnv"
num_envs = 2
kwargs = {{ pattern = [1.0, 12.0, 3.0, 2.0], episode_steps = 5 }}
[algo]
name = "{algo}"
steps_per_update = 20
total_steps = 40
hidden_sizes = [4]
critic_epochs = 1
critic_minibatch = 20
[[constraints]]
name = "cost"
limit = 10.0
[run]
seed = 3
"""


def test_episode_evidence_counts_the_worst_and_the_tail() -> None:
    costs = np.arange(25, dtype=float)  # worst 10 %: ceil(2.5) = 3 episodes, 22..24
    ev = episode_evidence(costs, limit=20.0)
    assert ev == {"episodes_over": 4, "ep_cost_max": 24.0, "ep_cost_cvar90": 23.0}
    # A cost equal to the limit is within it (the limit is a budget, "exceeded" is strict).
    assert episode_evidence(np.array([5.0, 5.0]), 5.0)["episodes_over"] == 0
    # ... also when the sum only rounds to it: ten steps of 1e-6 against 10 x 1e-6.
    steps = np.full(10, 1e-6)
    assert episode_evidence(np.array([np.cumsum(steps)[-1], 1.1e-5]), 10 * 1e-6)[
        "episodes_over"] == 1
    one = episode_evidence(np.array([7.0]), 5.0)  # at least one episode in the tail
    assert one == {"episodes_over": 1, "ep_cost_max": 7.0, "ep_cost_cvar90": 7.0}
    assert episode_evidence(np.zeros(0), 5.0) == {"episodes_over": 0, "ep_cost_max": None,
                                                 "ep_cost_cvar90": None}


@pytest.mark.parametrize("algo", ["trpo", "cpo"])
def test_update_rows_and_run_totals_against_known_episode_costs(tmp_path: Path,
                                                                algo: str) -> None:
    path = tmp_path / "known.toml"
    path.write_text(KNOWN.format(algo=algo))
    scenario = load_scenario(path, [f"run.out_dir={str(tmp_path / 'runs')!r}"])
    outcome = start_run(scenario, progress=False)
    assert outcome.status == "completed"
    lines = read_lines(outcome.run_dir)
    rows = [ln for ln in lines if ln["type"] == "update"]
    # 10 steps per copy per update = 2 episodes per copy: costs (1, 12) then (3, 2), twice.
    expected = [(4, 6.5, 2, 12.0, 12.0), (4, 2.5, 0, 3.0, 3.0)]
    assert len(rows) == 2
    for row, (episodes, mean, over, worst, cvar) in zip(rows, expected, strict=True):
        c = row["constraints"][0]
        assert row["episodes"] == episodes
        assert c["ep_cost"] == pytest.approx(mean)
        assert c["violated"] is False  # the mean is under the limit ...
        assert c["episodes_over"] == over  # ... while single episodes are not
        assert c["ep_cost_max"] == worst
        assert c["ep_cost_cvar90"] == cvar
        if algo == "cpo":
            # The solver's margin in episode units: limit - horizon * mean per-step cost.
            step_cost = np.mean([1.0, 12.0, 1.0, 12.0] if row["update"] == 0
                                else [3.0, 2.0, 3.0, 2.0]) / 5
            assert c["margin_episode_units"] == pytest.approx(10.0 - 5 * step_cost)
        else:
            assert "margin_episode_units" not in c
    finished = [ln for ln in lines if ln["type"] == "run_finished"][-1]
    assert finished["constraint_totals"] == [
        {"name": "cost", "limit": 10.0, "episodes": 8, "episodes_over": 2, "ep_cost_max": 12.0}]


def test_totals_count_a_redone_update_once_and_unknown_stays_unknown() -> None:
    def row(update: int, over: int | None, worst: float) -> dict:
        return {"type": "update", "update": update, "episodes": 3,
                "constraints": [{"name": "c", "episodes_over": over, "ep_cost_max": worst}]}

    lines = [row(0, 1, 5.0), row(1, 2, 9.0), {"type": "resumed"}, row(1, 0, 4.0),
             row(2, 1, 6.0)]
    rows = current_update_rows(lines, below=3)
    assert [r["constraints"][0]["episodes_over"] for r in rows] == [1, 0, 1]
    assert constraint_totals(rows, [("c", 3.0)]) == [
        {"name": "c", "limit": 3.0, "episodes": 9, "episodes_over": 2, "ep_cost_max": 6.0}]
    old = [{**row(0, None, 5.0)}]
    old[0]["constraints"][0].pop("episodes_over")
    assert constraint_totals(old, [("c", 3.0)])[0]["episodes_over"] is None
