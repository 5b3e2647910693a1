"""Walk-forward end to end on a small synthetic file: audited runs, out-of-sample backtests."""

from __future__ import annotations

import argparse
import json

import pytest

from envs.portfolio.synthetic import synthetic_prices
from safe_trpo.errors import UserError
from safe_trpo.finance.walkforward import run_walkforward_command
from safe_trpo.record.audit import read_lines, verify_run

SCENARIO = """
[env]
id = "SafeTRPO/Portfolio-v0"
num_envs = 2
[env.data_files]
prices = "prices.csv"
[env.kwargs]
episode_days = 20
window = 5
[algo]
name = "cpo"
steps_per_update = 80
total_steps = 160
hidden_sizes = [8]
[[constraints]]
name = "drawdown"
limit = 5.0
[run]
seed = 0
"""


def args(tmp_path, **kw):
    base = {"scenario": tmp_path / "wf.toml", "prices": tmp_path / "prices.csv",
            "train_years": 1.0, "test_years": 0.5, "seeds": "0-1", "windows": 2, "set": [],
            "out": tmp_path / "out", "cost_bps": None}
    return argparse.Namespace(**{**base, **kw})


def setup(tmp_path):
    synthetic_prices(800, 3, seed=1).to_csv(tmp_path / "prices.csv")
    (tmp_path / "wf.toml").write_text(SCENARIO)


def test_walkforward_refuses_bad_windows(tmp_path):
    setup(tmp_path)
    with pytest.raises(UserError, match="expected positive numbers"):
        run_walkforward_command(args(tmp_path, train_years=0.0), {})
    with pytest.raises(UserError, match="no 30.0 \\+ 1.0-year window fits"):
        run_walkforward_command(args(tmp_path, train_years=30.0, test_years=1.0), {})


@pytest.mark.expensive
def test_walkforward_trains_audited_runs_and_tests_them_out_of_sample(tmp_path, capsys):
    setup(tmp_path)
    assert run_walkforward_command(args(tmp_path), {}) == 0
    (summary_path,) = (tmp_path / "out" / "walkforward").glob("*/walkforward.json")
    summary = json.loads(summary_path.read_text())
    assert len(summary["windows"]) == 2 and summary["complete"]
    for w in summary["windows"]:
        assert w["train_end"] < w["test_start"]
        assert [r["seed"] for r in w["runs"]] == [0, 1]
        for r in w["runs"]:
            assert verify_run(r["run"]).ok
            (bt,) = [ln for ln in read_lines(r["run"]) if ln["type"] == "backtest"]
            assert bt["start"] >= w["test_start"] and bt["end"] <= w["test_end"]
            assert not bt["in_sample"] if "in_sample" in bt else True
    pooled = summary["pooled_out_of_sample"]
    assert {"policy seed 0", "policy seed 1", "equal-weight", "risk-parity"} <= set(pooled)
    days = {p["days"] for p in pooled.values()}
    assert len(days) == 1  # every strategy pooled over the same chained test days
    assert "pooled out-of-sample" in capsys.readouterr().out
    assert (summary_path.parent / "walkforward.html").read_text().count("seed ") >= 4
