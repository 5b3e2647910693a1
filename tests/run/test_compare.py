"""``safe-trpo compare``: policy and baselines on the same episodes, figures checked against an
independent evaluation path, the audit line, and the exact helpers (settling, intervals)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from scipy import stats

from envs.pid import cstr_pid
from safe_trpo.cli import main
from safe_trpo.config import load_scenario
from safe_trpo.errors import UserError
from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.run.compare import (
    compare_run,
    interval,
    parse_controllers,
    settling_times,
    wilson,
)
from safe_trpo.run.controllers import evaluate_controller
from safe_trpo.run.policy_io import load_policy
from safe_trpo.run.trainer import start_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cstr_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("compare")
    scenario = load_scenario(ROOT / "scenarios" / "cstr_runaway.toml", [
        "algo.total_steps=1600", "algo.steps_per_update=800", "algo.hidden_sizes=[16]",
        "algo.critic_epochs=2", "env.num_envs=2", "env.kwargs.episode_minutes=8.0",
        "env.kwargs.setpoint_period_minutes=3.0", f"run.out_dir={str(tmp)!r}"])
    return start_run(scenario, progress=False).run_dir


def test_settling_times_by_hand():
    sp = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0])
    pv = np.array([1.0, 1.0, 1.2, 1.7, 1.95, 2.05, 1.5, 0.9, 0.5])
    times, unsettled = settling_times(pv, sp, 0.5)
    # step 1 -> 2 at index 2: band 0.1; outside at 2, 3 -> settled from index 4: 2 steps = 1.0
    # step 2 -> 0 at index 6: band 0.2; still outside at the last step: whole segment, unsettled
    assert times == [1.0, 1.5] and unsettled == 1
    # a band floor wider than 10 % of the step: settled from index 3 (|1.7 - 2| <= 0.35)
    assert settling_times(pv, sp, 0.5, floor=0.35)[0][0] == 0.5


def test_intervals_are_the_textbook_ones():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    got = interval(x)
    half = stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2.0
    assert np.isclose(got["lo"], 3.5 - half) and np.isclose(got["hi"], 3.5 + half)
    assert got["min"] == 1.0 and got["max"] == 7.0
    w = wilson(0, 20)  # no episode over: the upper bound is still 16.1 %
    assert w["frac"] == 0.0 and w["lo"] == 0.0 and abs(w["hi"] - 0.1611) < 1e-3


def test_controller_names_are_checked():
    assert parse_controllers("pid, mpc,pid") == ["pid", "mpc"]
    with pytest.raises(UserError, match="--controllers"):
        parse_controllers("pid,lqr")


def test_compare_runs_every_controller_on_the_same_episodes(cstr_run: Path):
    record = compare_run(cstr_run, ["pid", "mpc", "hold"], episodes=4, seed=11)
    results, example = record["controllers"], record["example"]
    assert list(results) == ["policy", "pid", "mpc", "hold"]
    setpoints = [tuple(example[name]["ca_setpoint"]) for name in results]
    assert len(set(setpoints)) == 1 and len(set(setpoints[0])) > 1  # same schedule, and steps
    # the PID's figures against the independent evaluation path (run_episodes)
    scenario = load_policy(cstr_run).scenario  # the resolved scenario, overrides included
    venv = gym.make_vec("SafeTRPO/CSTR-v0", num_envs=2, **scenario.env.kwargs)
    reference = evaluate_controller(venv, cstr_pid(), 4, seed=11,
                                    limits={"temperature": 5.0, "runaway": 0.25})
    pid = results["pid"]
    assert np.isclose(pid["return"]["mean"], reference["return_mean"], rtol=1e-12)
    steps = 4 * 16  # 8 min of 0.5 min steps
    assert np.isclose(pid["iae"]["mean"],
                      reference["tracking_error_mean"] * steps * 0.5 / 4, rtol=1e-9)
    temp = next(c for c in pid["constraints"] if c["name"] == "temperature")
    assert np.isclose(temp["ep_cost"]["mean"], reference["costs"]["temperature"]["ep_cost_mean"])
    assert results["hold"]["valve_travel"]["max"] < 1e-12  # holding never moves the valve
    assert results["mpc"]["solve_ms"]["solves"] == steps  # one solve per copy and step
    last = read_lines(cstr_run)[-1]
    assert last["type"] == "comparison" and last["seed"] == 11
    assert verify_run(cstr_run).ok
    from safe_trpo.report.build import write_report

    page = Path(write_report(cstr_run)).read_text()
    section = page[page.index('<section id="comparison">'):]
    assert "mpc" in section[:section.index("</section>")] and "data:image/png" in section


def test_cli_compare_prints_the_table(cstr_run: Path, capsys: pytest.CaptureFixture):
    assert main(["compare", str(cstr_run), "--controllers", "pid", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "policy" in out and "pid" in out and "IAE" in out
    assert main(["compare", str(cstr_run), "--controllers", "bogus"]) == 2
    assert "--controllers" in capsys.readouterr().err
