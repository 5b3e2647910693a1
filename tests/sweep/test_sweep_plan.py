"""Sweeps: parsing seeds and --set values, and planning the jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from safe_trpo.errors import UserError
from safe_trpo.sweep.plan import parse_seeds, parse_sets, plan_sweep, split_values
from tests.sweep.fixtures import TINY, write

# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, seeds", [("5", [5]), ("0-3", [0, 1, 2, 3]), ("0,3,7", [0, 3, 7]),
                                         ("0-2,8", [0, 1, 2, 8]), (" 4 - 5 , 9", [4, 5, 9])])
def test_seed_syntax(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [("", "expected"), ("a", "expected"), ("-1", "expected"),
                                           ("5-2", "backwards"), ("0-3,2", "twice")])
def test_bad_seeds_are_refused(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_seeds(text)


def test_values_split_only_on_top_level_commas() -> None:
    assert split_values("[32,32],[64, 64]") == ["[32,32]", "[64, 64]"]
    assert split_values("'a,b',\"c,d\",e") == ["'a,b'", '"c,d"', "e"]
    assert split_values("{ x = 1, y = 2 },0.5") == ["{ x = 1, y = 2 }", "0.5"]
    for bad in ("1,,2", "[1,2", "'open"):
        with pytest.raises(UserError):
            split_values(bad)


def test_sets_parse_and_refuse_what_the_sweep_owns() -> None:
    assert parse_sets(["algo.target_kl=0.01,0.02", "constraints.speed.limit=5"]) == \
        [("algo.target_kl", ["0.01", "0.02"]), ("constraints.speed.limit", ["5"])]
    cases = ((["target_kl=1"], "section.key"), (["run.seed=1,2"], "--seeds"),
             (["run.out_dir=x"], "--out"), (["algo.gamma=0.9", "algo.gamma=0.8"], "twice"),
             (["algo.gamma=0.9,0.9"], "twice"))
    for bad, message in cases:
        with pytest.raises(UserError, match=message):
            parse_sets(bad)


def test_plan_is_the_product_with_deterministic_names(tmp_path: Path) -> None:
    scenario = write(tmp_path / "tiny.toml", TINY)
    sets = ["algo.target_kl=0.01,0.02", "constraints.speed.limit=5,10", "algo.hidden_sizes=[8,8]"]
    plan = plan_sweep([scenario], "0-2", sets, tmp_path / "out")
    assert len(plan.jobs) == 2 * 2 * 1 * 3
    labels = sorted({j.label for j in plan.jobs})
    assert "tiny[target_kl=0.02,limit=5,hidden_sizes=[8,8]]" in labels and len(labels) == 4
    assert len({j.job_dir for j in plan.jobs}) == len(plan.jobs)
    again = plan_sweep([scenario], "0-2", sets, tmp_path / "out")
    assert again.sweep_id == plan.sweep_id and again.jobs == plan.jobs
    assert plan_sweep([scenario], "0-1", sets, tmp_path / "out").sweep_id != plan.sweep_id
    write(scenario, TINY.replace("limit = 10.0", "limit = 11.0"))
    assert plan_sweep([scenario], "0-2", sets, tmp_path / "out").sweep_id != plan.sweep_id


def test_a_configuration_that_does_not_load_stops_the_sweep_before_it_starts(
        tmp_path: Path) -> None:
    scenario = write(tmp_path / "tiny.toml", TINY)
    with pytest.raises(UserError, match="target_kl"):
        plan_sweep([scenario], "0", ["algo.target_kl=0.01,-1"], tmp_path / "out")
    with pytest.raises(UserError, match="same scenario"):
        plan_sweep([scenario], "0", ["algo.target_kl=0.01,1e-2"], tmp_path / "out")
