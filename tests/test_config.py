"""Scenario loading: valid files load, malformed ones are refused with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from safe_trpo.cli import main
from safe_trpo.config import load_scenario, scenario_from_dict, scenario_to_dict
from safe_trpo.errors import UserError

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

GOOD = """
[env]
id = "Pendulum-v1"
num_envs = 4
[algo]
name = "trpo"
steps_per_update = 400
total_steps = 800
[run]
seed = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_shipped_scenarios_load() -> None:
    paths = sorted(SCENARIOS.glob("*.toml"))
    assert any(p.name == "pendulum_trpo.toml" for p in paths)
    for path in paths:
        try:
            scenario = load_scenario(path)
        except UserError as exc:  # only a missing shared data file may stop one
            assert "file not found" in str(exc), exc
            continue
        assert scenario.planned_updates >= 1


def test_good_scenario_and_defaults(tmp_path: Path) -> None:
    s = load_scenario(write(tmp_path, GOOD))
    assert (s.env.id, s.env.num_envs, s.run.seed, s.algo.target_kl) == ("Pendulum-v1", 4, 3, 0.01)
    assert s.planned_updates == 2
    assert s.run.name == "s"  # defaults to the file stem
    # The resolved record re-creates the same scenario.
    assert scenario_from_dict(scenario_to_dict(s)) == s.__class__(**{**s.__dict__, "source":
                                                                      "<scenario>"})


@pytest.mark.parametrize("edit, fragment", [
    ("[algo]\nname = \"trpo\"\nsteps_per_update = 400\ntotal_steps = 800\nbogus = 1",
     "unknown key 'bogus'"),
    ("[algo]\nname = \"trpo\"\nsteps_per_update = 400\ntotal_steps = 800\ntarget_kl = \"big\"",
     "[algo].target_kl: expected float, got str"),
    ("[algo]\nname = \"trpo\"\nsteps_per_update = 400\ntotal_steps = 800\ntarget_kl = -1",
     "[algo].target_kl: expected a value > 0"),
    ("[algo]\nname = \"ppo\"\nsteps_per_update = 400\ntotal_steps = 800",
     "[algo].name: expected one of 'trpo', 'cpo', 'trpo-lag'"),
    ("[algo]\nname = \"trpo\"\nsteps_per_update = 401\ntotal_steps = 800",
     "steps_per_update (401) must be a multiple of [env] num_envs (4)"),
    ("[algo]\nname = \"cpo\"\nsteps_per_update = 400\ntotal_steps = 800",
     "needs at least one [[constraints]]"),
    ("[algo]\nname = \"trpo\"\nsteps_per_update = 400\ntotal_steps = 800\n"
     "[[constraints]]\nname = \"x\"", "needs 'name' and 'limit'"),
    ("[algo]\nname = \"trpo\"\nsteps_per_update = 400\ntotal_steps = 800\n[extra]\na = 1",
     "unknown section 'extra'"),
    ("[algo]\nname = \"trpo\"\nsteps_per_update = 400\ntotal_steps = true",
     "[algo].total_steps: expected int, got bool"),
])
def test_malformed_scenario_is_refused_with_the_key(tmp_path: Path, edit: str,
                                                    fragment: str) -> None:
    text = GOOD.split("[algo]")[0] + edit
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_scenario(path)
    message = str(info.value)
    assert fragment in message
    assert str(path) in message and "\n" not in message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not valid TOML"):
        load_scenario(write(tmp_path, "[env\nid="))
    with pytest.raises(UserError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.toml")


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    s = load_scenario(path, ["algo.target_kl=0.02", "env.id=CartPole-v1",
                             "algo.hidden_sizes=[8, 8]"])
    assert (s.algo.target_kl, s.env.id, s.algo.hidden_sizes) == (0.02, "CartPole-v1", [8, 8])
    with pytest.raises(UserError, match="target_kl: expected a value > 0"):
        load_scenario(path, ["algo.target_kl=0"])
    with pytest.raises(UserError, match="unknown key 'nope'"):
        load_scenario(path, ["algo.nope=1"])


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, GOOD.replace("seed = 3", "seed = -3"))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "[run].seed: expected a value >= 0" in err
    assert main(["verify", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_data_files_resolve_against_the_scenario_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "p.csv").write_text("x")
    text = GOOD.replace('num_envs = 4', 'num_envs = 4\ndata_files = { prices = "data/p.csv" }')
    s = load_scenario(write(tmp_path, text))
    assert Path(s.env.data_files["prices"]) == (tmp_path / "data" / "p.csv").resolve()
    bad = GOOD.replace('num_envs = 4', 'num_envs = 4\ndata_files = { prices = "data/q.csv" }')
    with pytest.raises(UserError, match="prices: file not found"):
        load_scenario(write(tmp_path, bad))


@pytest.mark.parametrize("text, fragment", [
    ('env = 3\n', "[env] must be a table"),
    ('run = "x"\n[env]\nid = "Pendulum-v1"\n', "[run] must be a table"),
])
def test_sections_that_are_not_tables_are_refused(tmp_path: Path, text: str,
                                                  fragment: str) -> None:
    with pytest.raises(UserError, match=fragment.replace("[", "\\[").replace("]", "\\]")):
        load_scenario(write(tmp_path, text))


def test_bad_env_kwargs_and_unsupported_spaces_are_one_line_errors(tmp_path: Path) -> None:
    from safe_trpo.run.trainer import start_run

    bad = GOOD.replace('num_envs = 4', 'num_envs = 4\nkwargs = { g = "heavy" }')
    bad = bad.replace("[run]", f"[run]\nout_dir = {str(tmp_path / 'r')!r}")
    with pytest.raises(UserError, match=r"environment's step\(\) raised TypeError"):
        start_run(load_scenario(write(tmp_path, bad)), progress=False)
    missing = GOOD.replace('num_envs = 4', 'num_envs = 4\nkwargs = { no_such_kwarg = 1 }')
    missing = missing.replace("[run]", f"[run]\nout_dir = {str(tmp_path / 'r')!r}")
    with pytest.raises(UserError, match="could not be built"):
        start_run(load_scenario(write(tmp_path, missing)), progress=False)
    tuple_obs = GOOD.replace('"Pendulum-v1"', '"Blackjack-v1"').replace(
        "[run]", f"[run]\nout_dir = {str(tmp_path / 'r')!r}")
    with pytest.raises(UserError, match="unsupported observation space"):
        start_run(load_scenario(write(tmp_path, tuple_obs)), progress=False)
