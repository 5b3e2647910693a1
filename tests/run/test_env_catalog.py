"""Scenario authoring: `safe-trpo envs`, cost names checked before a run folder exists, paths
relative to the scenario file, the portfolio train/test split warning."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

from envs.info import EnvInfo
from envs.portfolio.synthetic import synthetic_prices
from safe_trpo.cli import main
from safe_trpo.config import load_scenario
from safe_trpo.errors import UserError
from safe_trpo.run import env_catalog
from safe_trpo.run.env_catalog import (
    check_constraint_names,
    describe_envs,
    env_info,
    registered_ids,
    scenario_warnings,
)
from safe_trpo.run.trainer import start_run

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def _reported_costs(env_id: str) -> set[str]:
    """The cost names the environment really puts in ``info`` (one step after reset)."""
    kwargs = {}
    if env_id == "SafeTRPO/Portfolio-v0":
        kwargs = {"prices": synthetic_prices(200, 3, seed=1), "episode_days": 20, "window": 5}
    env = gym.make(env_id, **kwargs)
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    env.close()
    return {k.removeprefix("cost_") for k in info if k.startswith("cost_")}


@pytest.mark.parametrize("env_id", registered_ids())
def test_every_registered_env_documents_the_costs_it_reports(env_id: str) -> None:
    info = env_info(env_id)
    assert isinstance(info, EnvInfo) and info.env_id == env_id
    if info.costs_from_kwarg is None:  # else the scenario names them (tests/envs/test_fmu_*)
        assert set(info.costs) == _reported_costs(env_id)
    docs = info.kwarg_docs()
    assert docs and all(k.doc for k in docs), "every kwarg has a docstring"
    text = describe_envs()
    entry = text[text.index(env_id):]
    assert all(name in entry for name in info.costs)
    assert all(f"    {k.name} = " in entry for k in docs)
    assert "example:" in entry and f'id = "{env_id}"' in entry


def test_registered_ids_are_the_shipped_ones() -> None:
    assert {"SafeTRPO/CSTR-v0", "SafeTRPO/PressureVessel-v0", "SafeTRPO/Portfolio-v0",
            "SafeTRPO/SpeedLimit-v0"} <= set(registered_ids())
    # A module:Class id finds the module's ENV_INFO; an env without one is simply unknown.
    assert env_info("envs.speed_limit:SpeedLimitEnv").env_id == "SafeTRPO/SpeedLimit-v0"
    assert env_info("Pendulum-v1") is None and env_info("no.such.module:X") is None


def test_cost_names_from_kwargs() -> None:
    info = EnvInfo("X-v0", "x", {}, None, "n steps", "", costs_from_kwarg="costs")
    assert info.cost_names({"costs": ["t_over", "p_over"]}) == ("cost", "t_over", "p_over")
    assert info.cost_names({"costs": {"t_over": "T > 400"}}) == ("cost", "t_over")
    assert info.cost_names({}) is None  # unknown: left to the environment to refuse


def test_a_wrong_cost_name_is_refused_before_a_run_folder_exists(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    scenario = load_scenario(SCENARIOS / "cstr_runaway.toml",
                             ["constraints.runaway.name=\"run_away\"",
                              f"run.out_dir={str(out)!r}"])
    with pytest.raises(UserError, match=r"#2 name = 'run_away'.*temperature, runaway"):
        start_run(scenario, progress=False)
    assert not out.exists()
    assert main(["train", str(SCENARIOS / "speed_limit_cpo.toml"), "--out", str(out),
                 "--set", "constraints.speed.name=\"velocity\""]) == 2
    assert not out.exists()


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "s.toml"
    path.write_text(text)
    return path


def test_out_dir_and_data_files_resolve_against_the_scenario_file(tmp_path: Path,
                                                                   monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "p.csv").write_text("x\n")
    path = _write(tmp_path / "scen", '[env]\nid = "SafeTRPO/SpeedLimit-v0"\n'
                  '[env.data_files]\nprices = "../data/p.csv"\n[run]\nout_dir = "../runs"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_scenario(path)
    assert Path(s.run.out_dir) == tmp_path / "runs"
    assert Path(s.env.data_files["prices"]) == tmp_path / "data" / "p.csv"
    # A path given on the command line is relative to where the command runs.
    s = load_scenario(path, ['run.out_dir="mine"'])
    assert Path(s.run.out_dir) == elsewhere / "mine"
    for shipped in SCENARIOS.glob("*.toml"):
        out_dir = load_scenario(shipped).run.out_dir
        assert Path(out_dir) == ROOT / "reports", shipped.name


def test_a_portfolio_scenario_without_a_train_test_split_warns(tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    # The shipped file is split, but every ticker in it still trades on its last date.
    (shipped,) = scenario_warnings(load_scenario(SCENARIOS / "portfolio_drawdown.toml"))
    assert shipped.startswith("survivorship:")
    text = (SCENARIOS / "portfolio_drawdown.toml").read_text()
    unsplit = "\n".join(ln for ln in text.splitlines()
                        if not ln.startswith(("train_end", "test_start", "test_end")))
    unsplit = unsplit.replace('"../data/stock_prices.csv"',
                              repr(str(ROOT / "data" / "stock_prices.csv")))
    path = _write(tmp_path, unsplit)
    split, survivors = scenario_warnings(load_scenario(path))
    assert "train/test split" in split and survivors.startswith("survivorship:")
    started = []
    monkeypatch.setattr("safe_trpo.run.trainer.start_run",
                        lambda *a, **k: started.append(1) or (_ for _ in ()).throw(
                            UserError("stop here")))
    assert main(["train", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "warning: [env] kwargs set no train/test split" in err and started == [1]


def test_keys_points_to_envs(capsys) -> None:
    assert main(["keys"]) == 0
    assert "safe-trpo envs" in capsys.readouterr().out
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "SafeTRPO/CSTR-v0" in out and "Any other Gymnasium environment" in out


def test_check_skips_envs_without_info() -> None:
    scenario = load_scenario(SCENARIOS / "pendulum_trpo.toml")
    check_constraint_names(scenario)  # no ENV_INFO for Pendulum-v1: left to the first step
    assert env_catalog.env_info(scenario.env.id) is None


def test_a_sweep_with_a_wrong_cost_name_stops_before_any_run(tmp_path: Path) -> None:
    from safe_trpo.sweep.plan import plan_sweep

    with pytest.raises(UserError, match="reports no such cost"):
        plan_sweep([SCENARIOS / "speed_limit_cpo.toml"], "0",
                   ['constraints.speed.name="sped"'], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_looking_up_an_id_from_data_imports_nothing(tmp_path: Path, monkeypatch) -> None:
    # The report and the review app look up ids read from received records: a module named
    # there must not run by being looked up (building the environment is where trust is asked).
    (tmp_path / "planted_env.py").write_text(
        f"open({str(tmp_path / 'ran')!r}, 'w').close()\nENV_INFO = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert env_info("planted_env:Env") is None
    assert not (tmp_path / "ran").exists()


def test_no_survivorship_warning_when_a_ticker_was_delisted(tmp_path: Path) -> None:
    prices = tmp_path / "p.csv"
    days = [f"2020-01-{d:02d}" for d in range(1, 31)]
    rows = [f"{d},{100 + i},{50 + i}" + ("" if i >= 25 else f",{20 + i}")
            for i, d in enumerate(days)]  # C stops trading five days before the file ends
    prices.write_text("date,A,B,C\n" + "\n".join(rows) + "\n")
    path = _write(tmp_path, '[env]\nid = "SafeTRPO/Portfolio-v0"\n'
                  f'kwargs = {{ prices = {str(prices)!r}, train_end = "2020-01-20", '
                  'test_start = "2020-01-21", window = 2, episode_days = 5 }\n')
    assert scenario_warnings(load_scenario(path)) == []
