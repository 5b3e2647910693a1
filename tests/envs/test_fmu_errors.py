"""Bad FMU interfaces and failing plants: one clear line naming the variable or the model
time, and a training run that meets one ends as a recorded failed run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from envs.fmu import FMUEnv, FMUVectorEnv
from safe_trpo.config import load_scenario
from safe_trpo.errors import UserError
from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.run.trainer import start_run
from tests.envs import fmu_fixtures
from tests.envs.fmu_fixtures import TANK_KWARGS

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "fmu" / "heated_tank.toml"

tank_fmu = fmu_fixtures.tank_fmu
tank3_fmu = fmu_fixtures.tank3_fmu
valve_fmu = fmu_fixtures.valve_fmu


def make(fmu: Path, **changes: object) -> FMUEnv:
    return FMUEnv(fmu=str(fmu), **{**TANK_KWARGS, **changes})


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize(("changes", "expected"), [
    ({"actions": [{"name": "heater", "low": 0, "high": 1}]},
     "actions[0]: no variable named 'heater'"),
    ({"observations": ["T", "t"]}, "observations[1]: no variable named 't' in the FMU (did you "
                                   "mean 'T'?)"),
    ({"reward": {"output": "yield"}}, "reward.output: no variable named 'yield'"),
    ({"costs": {"hot": {"output": "Temp", "above": 1}}}, "costs.hot.output: no variable named "
                                                         "'Temp'"),
    ({"randomize": {"kk": [0, 1]}}, "randomize.kk: no variable named 'kk'"),
    ({"actions": [{"name": "T", "low": 0, "high": 1}]},
     "actions[0]: 'T' has causality output, expected input"),
    ({"actions": [{"name": "k", "low": 0, "high": 1}]},
     "actions[0]: 'k' has causality parameter, expected input"),
    ({"observations": ["heat"]}, "observations[0]: 'heat' has causality input, expected output "
                                 "or local"),
    ({"start_values": {"T": 3.0}}, "start_values.T: 'T' (causality output, initial calculated) "
                                   "cannot be given a start value"),
    ({"actions": [{"name": "heat", "low": 0, "high": 2}]},
     "actions[0]: [0.0, 2.0] leaves the declared range [0.0, 1.0] of 'heat'"),
    ({"reward": {"track": "T", "setpoint": 1, "scale": 0}}, "reward.scale: expected a number > 0"),
    ({"costs": {"hot": {"output": "T", "above": 1, "below": 0}}}, "give above or below"),
    ({"step_size": -1.0}, "step_size: expected model seconds > 0"),
])
def test_bad_interface_is_one_line_naming_the_variable(tank_fmu: Path, changes: dict,
                                                       expected: str) -> None:
    with pytest.raises(UserError) as exc:
        make(tank_fmu, **changes)
    assert one_line(exc) == f"heated_tank.fmu: {expected}" or expected in one_line(exc)
    assert one_line(exc).startswith("heated_tank.fmu: ")


def test_missing_and_broken_fmu_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="FMU file not found"):
        make(tmp_path / "none.fmu")
    bad = tmp_path / "bad.fmu"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError) as exc:
        make(bad)
    assert one_line(exc).startswith("bad.fmu: not an FMU")
    with pytest.raises(UserError, match="fmu is required"):
        FMUEnv(**TANK_KWARGS)


def test_vector_entry_point_checks_the_kwargs_before_starting_workers(tank_fmu: Path) -> None:
    with pytest.raises(UserError, match=r"^SafeTRPO/FMU-v0: unknown \[env.kwargs\] key 'stepsize'"):
        FMUVectorEnv(2, fmu=str(tank_fmu), stepsize=1.0, **TANK_KWARGS)
    with pytest.raises(UserError, match="reward.output: no variable named 'Q'"):
        FMUVectorEnv(2, fmu=str(tank_fmu), **{**TANK_KWARGS, "reward": {"output": "Q"}})


def test_failing_do_step_names_the_model_time(tank_fmu: Path) -> None:
    env = make(tank_fmu, randomize=None, start_values={"T0": 70.0, "fail_above": 75.0},
               episode_steps=50)
    env.reset(seed=0)
    env.step(np.array([1.0]))  # 70 -> ~74.5
    with pytest.raises(UserError) as exc:
        env.step(np.array([1.0]))
    assert one_line(exc) == ("heated_tank.fmu: fmi2DoStep from model time 1 s to 2 s failed "
                             "(fmi2DoStep failed with status 3 (error).); the plant stopped "
                             "there")


def test_failing_fmi3_do_step_and_nan_name_the_model_time(tank3_fmu: Path) -> None:
    env = make(tank3_fmu, randomize=None, start_values={"T0": 70.0, "fail_above": 75.0},
               episode_steps=50)
    env.reset(seed=0)
    env.step(np.array([1.0]))
    with pytest.raises(UserError) as exc:
        env.step(np.array([1.0]))
    assert one_line(exc) == ("heated_tank3.fmu: fmi3DoStep from model time 1 s to 2 s failed "
                             "(fmi3DoStep failed with status 3 (error).); the plant stopped "
                             "there")
    env = make(tank3_fmu, start_values={"nan_after": 1.0})
    env.reset(seed=0)
    with pytest.raises(UserError, match=r"^heated_tank3.fmu: 'T' is nan at model time 1 s "
                                        r"\(after fmi3DoStep\)"):
        env.step(np.array([0.0]))


def test_non_finite_output_names_the_variable_and_time(tank_fmu: Path) -> None:
    env = make(tank_fmu, start_values={"nan_after": 3.0}, episode_steps=50)
    env.reset(seed=0)
    env.step(np.array([0.0]))
    env.step(np.array([0.0]))
    with pytest.raises(UserError) as exc:
        env.step(np.array([0.0]))
    assert one_line(exc) == ("heated_tank.fmu: 'T' is nan at model time 3 s (after fmi2DoStep); "
                             "the FMU produced a non-finite value")


def test_negative_cost_output_is_refused(valve_fmu: Path) -> None:
    env = FMUEnv(fmu=str(valve_fmu), step_size=1.0, episode_steps=4,
                 actions=[{"name": "u", "low": 0.0, "high": 1.0}], observations=["level"],
                 reward={"output": "flow"}, costs={"level": {"output": "level"}})
    env.reset(seed=0)
    with pytest.raises(UserError, match=r"costs.level: output 'level' is -1 < 0 at model time "
                                        r"1 s; a cost must be >= 0"):
        env.step(np.array([-1.0]))  # no inflow: level 1 - 2 = -1


def test_worker_error_reaches_the_caller_with_the_copy(tank_fmu: Path) -> None:
    venv = FMUVectorEnv(3, workers=2, fmu=str(tank_fmu),
                        **{**TANK_KWARGS, "start_values": {"nan_after": 1.0}})
    try:
        venv.reset(seed=0)
        with pytest.raises(UserError, match=r"^env copy 0: heated_tank.fmu: 'T' is nan at "
                                            r"model time 1 s"):
            venv.step(np.zeros((3, 1)))
    finally:
        venv.close()


def test_a_crashing_plant_is_a_dead_worker_not_a_hang(tank_fmu: Path) -> None:
    venv = FMUVectorEnv(2, workers=2, fmu=str(tank_fmu),
                        **{**TANK_KWARGS, "start_values": {"abort_after": 2.0}})
    try:
        venv.reset(seed=0)
        venv.step(np.zeros((2, 1)))
        with pytest.raises(UserError) as exc:
            venv.step(np.zeros((2, 1)))  # the C code calls abort() in both workers
        assert one_line(exc) == ("the worker process of env copies 0+ died (exit code -6); an "
                                 "FMU's native code may have crashed")
    finally:
        venv.close()


def test_a_plant_failing_during_training_ends_as_a_recorded_failed_run(
        tank_fmu: Path, tmp_path: Path) -> None:
    shutil.copy(tank_fmu, tmp_path / "heated_tank.fmu")
    scenario_file = tmp_path / "tank.toml"
    scenario_file.write_text(SCENARIO.read_text())
    scenario = load_scenario(scenario_file, [
        f"run.out_dir={str(tmp_path / 'runs')!r}", "algo.steps_per_update=400",
        "algo.total_steps=1600", "env.kwargs.start_values={ fail_above = 60.0 }"])
    with pytest.raises(UserError) as exc:
        start_run(scenario, progress=False)
    assert "fmi2DoStep from model time" in one_line(exc)
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())  # not the ledger
    lines = read_lines(run_dir)
    assert lines[0]["data_files"][0]["name"] == "fmu"  # the FMU's hash is in the record
    assert lines[-1]["type"] == "run_finished" and lines[-1]["status"] == "failed"
    assert "fmi2DoStep from model time" in lines[-1]["reason"]
    assert verify_run(run_dir).ok
