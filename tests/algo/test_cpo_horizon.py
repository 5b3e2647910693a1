"""CPO never guesses the episode length its limit is spread over."""

from __future__ import annotations

from pathlib import Path

import pytest

from safe_trpo.config import load_scenario
from safe_trpo.errors import UserError
from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.run.trainer import start_run

LONG = """
[env]
id = "tests.algo.known_cost_env:KnownCostEnv"
num_envs = 2
kwargs = { pattern = [30.0], episode_steps = 1000 }
[algo]
name = "cpo"
steps_per_update = 40
total_steps = 80
hidden_sizes = [4]
critic_epochs = 1
[[constraints]]
name = "cost"
limit = 10.0
"""


def _scenario(tmp_path: Path, *extra: str):
    path = tmp_path / "long.toml"
    path.write_text(LONG)
    return load_scenario(path, [f"run.out_dir={str(tmp_path / 'runs')!r}", *extra])


def test_no_finished_episode_and_no_time_limit_is_refused(tmp_path: Path) -> None:
    # 20 steps per copy, episodes of 1000 steps, no max_episode_steps: nothing to go on.
    with pytest.raises(UserError, match=r"horizon = <episode length in steps>"):
        start_run(_scenario(tmp_path), progress=False)
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())  # not the ledger
    finished = [ln for ln in read_lines(run_dir) if ln["type"] == "run_finished"]
    assert finished and finished[-1]["status"] == "failed"
    assert verify_run(run_dir).ok


def test_a_declared_horizon_is_used(tmp_path: Path) -> None:
    outcome = start_run(_scenario(tmp_path, "constraints.cost.horizon=1000"), progress=False)
    assert outcome.status == "completed"
    rows = [ln for ln in read_lines(outcome.run_dir) if ln["type"] == "update"]
    for row in rows:
        assert row["episodes"] == 0 and row["cpo"]["horizon"] == [1000.0]
        c = row["constraints"][0]
        # No step has cost yet (it comes on an episode's last step): the whole budget is slack.
        assert c["margin_episode_units"] == pytest.approx(10.0)
        assert c["ep_cost"] is None and c["episodes_over"] == 0 and c["ep_cost_max"] is None
