"""A diverging critic is recorded and fails the run; it never ends as "completed"."""

from __future__ import annotations

from pathlib import Path

from safe_trpo.config import load_scenario
from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.run.trainer import start_run

ROOT = Path(__file__).resolve().parents[2]
SPEED = ROOT / "scenarios" / "speed_limit_cpo.toml"


def test_a_diverging_critic_is_a_recorded_failure(tmp_path: Path) -> None:
    scenario = load_scenario(SPEED, ["algo.total_steps=2400", "algo.steps_per_update=800",
                                     "algo.hidden_sizes=[16]", "algo.critic_epochs=2",
                                     "algo.critic_lr=1e300", "env.kwargs.episode_steps=50",
                                     f"run.out_dir={str(tmp_path)!r}"])
    outcome = start_run(scenario, progress=False)
    assert outcome.status == "failed" and "critic" in outcome.reason
    lines = read_lines(outcome.run_dir)
    events = [ln for ln in lines if ln["type"] == "nan_detected"]
    assert len(events) == 1 and events[0]["where"] == "critic"
    assert "critic_lr" in events[0]["detail"]
    finished = [ln for ln in lines if ln["type"] == "run_finished"]
    assert len(finished) == 1 and finished[0]["status"] == "failed"
    # No update row with a non-finite (null) loss was written as if it were a result.
    for row in (ln for ln in lines if ln["type"] == "update"):
        assert row["value_loss"] is not None
        assert all(v is not None for v in row["cost_value_losses"])
    assert verify_run(outcome.run_dir).ok
