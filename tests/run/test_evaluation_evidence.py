"""The evaluation line counts episodes over each limit beside the fraction and the worst."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from safe_trpo.config import load_scenario
from safe_trpo.run.evaluate import Episodes, summarise

SPEED = Path(__file__).resolve().parents[2] / "scenarios" / "speed_limit_cpo.toml"


def test_evaluation_counts_episodes_over_the_limit() -> None:
    scenario = load_scenario(SPEED)  # one constraint, limit 10
    costs = np.array([[3.0], [10.0], [12.0], [25.0], [9.0]])
    summary = summarise(scenario, Episodes(np.zeros(5), costs, np.full(5, 100)))
    c = summary["constraints"][0]
    assert c["episodes_over"] == 2  # 12 and 25; 10 is at the limit, not over it
    assert c["frac_over_limit"] == 0.4
    assert c["ep_cost_max"] == 25.0 and c["ep_cost_mean"] == 11.8
