"""The progress bar's postfix: plain integer steps, each constraint's cost against its limit."""

from __future__ import annotations

import io

from tqdm import tqdm

from safe_trpo.run.progress import postfix


def test_postfix_shows_plain_steps_and_costs_against_limits() -> None:
    row = {"return_mean": -21.04, "kl": 0.0091, "episodes": 32, "constraints": [
        {"name": "temperature", "limit": 5.0, "ep_cost": 3.2, "episodes_over": 0,
         "ep_cost_max": 4.9},
        {"name": "runaway", "limit": 0.25, "ep_cost": 0.12, "episodes_over": 3,
         "ep_cost_max": 1.5},
        {"name": "old", "limit": 1.0, "ep_cost": None}]}  # an older row: no counts
    got = postfix(row, 400000)
    assert got == {"steps": "400000", "ret": "-21", "kl": "0.0091",
                   "temperature": "3.2/5 (0/32 over)", "runaway": "0.12/0.25 (3/32 over, max 1.5)",
                   "old": "n/a/1"}
    out = io.StringIO()
    bar = tqdm(total=1, file=out, ascii=True, ncols=250)
    bar.set_postfix(got, refresh=True)
    bar.close()
    assert "steps=400000" in out.getvalue() and "4e+5" not in out.getvalue()
    assert "runaway=0.12/0.25 (3/32 over, max 1.5)" in out.getvalue()
