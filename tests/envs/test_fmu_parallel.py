"""Parallel FMU rollouts: the same seed gives the same rollout in this process, in N worker
processes and on Ray actors, laid out exactly as Gymnasium's SyncVectorEnv (SAME_STEP)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from envs.fmu import FMUVectorEnv
from safe_trpo.config import EnvConfig, load_scenario
from safe_trpo.record.audit import WALL_CLOCK_FIELDS, read_lines
from safe_trpo.run.make_env import make_vector_env
from safe_trpo.run.trainer import start_run
from tests.envs import fmu_fixtures
from tests.envs.fmu_fixtures import N, rollout, same

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "fmu" / "heated_tank.toml"

tank_fmu = fmu_fixtures.tank_fmu
valve_fmu = fmu_fixtures.valve_fmu
local_ray = fmu_fixtures.local_ray
kwargs = fmu_fixtures.kwargs
reference = fmu_fixtures.reference


def test_in_process_and_worker_processes_match_sync_vector_env(kwargs: dict,
                                                               reference: list) -> None:
    assert any(step[3].any() for step in reference[1:])  # episodes did end in the rollout
    assert any("final_info.cost_overheat" in str(step[4]) for step in reference[1:])
    for workers in (0, 1, 2, 3):
        venv = FMUVectorEnv(N, workers=workers, **kwargs)
        assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        assert same(rollout(venv), reference), f"workers = {workers}"


def test_python_fmus_run_in_worker_processes(valve_fmu: Path) -> None:
    """A pythonfmu FMU embeds a Python interpreter in its binary; it still runs per worker."""
    kwargs = {"fmu": str(valve_fmu), "step_size": 0.5, "episode_steps": 3,
              "actions": [{"name": "u", "low": 0.0, "high": 1.0}],
              "observations": ["level", "flow"], "reward": {"output": "flow"},
              "randomize": {"outflow": [0.0, 4.0]}}
    inline, workers = (FMUVectorEnv(4, workers=w, **kwargs) for w in (0, 2))
    actions = np.linspace(-1, 1, 4, dtype=np.float32)[:, None]
    for venv in (inline, workers):
        venv.reset(seed=3)
    for _ in range(4):
        a, b = inline.step(actions), workers.step(actions)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[1].tolist() == pytest.approx([0.0, 10 / 3, 20 / 3, 10.0])  # flow = 10 u
    inline.close()
    workers.close()


def test_a_different_seed_gives_a_different_rollout(kwargs: dict, reference: list) -> None:
    assert not same(rollout(FMUVectorEnv(N, workers=2, **kwargs), seed=12), reference)


def test_scenario_builds_worker_processes_and_ray_actors_with_the_same_rollout(
        kwargs: dict, reference: list, local_ray: None) -> None:
    cfg = EnvConfig(id="SafeTRPO/FMU-v0", num_envs=N, data_files={"fmu": kwargs["fmu"]},
                    kwargs={k: v for k, v in kwargs.items() if k != "fmu"})
    local = make_vector_env(cfg)
    assert local.backend == "process" and local.workers == min(N, os.cpu_count())
    assert same(rollout(local), reference)
    on_ray = make_vector_env(dataclasses.replace(cfg, backend="ray"))
    assert on_ray.backend == "ray" and on_ray.workers >= 1
    assert same(rollout(on_ray), reference)
    three_actors = FMUVectorEnv(N, workers=3, backend="ray", **kwargs)
    assert same(rollout(three_actors), reference)


def test_ray_backend_runs_any_gymnasium_env(local_ray: None) -> None:
    cfg = EnvConfig(id="Pendulum-v1", num_envs=3, backend="ray")
    venv = make_vector_env(cfg)
    sync = make_vector_env(dataclasses.replace(cfg, backend="local"))
    for env in (venv, sync):
        env.reset(seed=5)
    actions = np.full((3, 1), 0.5, np.float32)
    for _ in range(3):
        a, b = venv.step(actions), sync.step(actions)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    venv.close()
    sync.close()


def without_clock(value: object) -> object:
    """An audit line without wall-clock fields (at any depth: CPO's solve time is nested) and
    without its chain fields."""
    if isinstance(value, dict):
        return {k: without_clock(v) for k, v in value.items()
                if k not in WALL_CLOCK_FIELDS | {"hash", "prev_hash", "seq"}}
    if isinstance(value, list):
        return [without_clock(v) for v in value]
    return value


def test_training_records_the_same_rows_in_process_in_workers_and_on_ray(
        tank_fmu: Path, tmp_path: Path, local_ray: None) -> None:
    """DESIGN.md's rule (same scenario + seed -> same audit rows) holds across backends."""
    shutil.copy(tank_fmu, tmp_path / "heated_tank.fmu")
    (tmp_path / "tank.toml").write_text(SCENARIO.read_text())
    rows = []
    for overrides in (["env.kwargs.workers=0"], [], ["env.backend='ray'"]):
        scenario = load_scenario(tmp_path / "tank.toml", [
            f"run.out_dir={str(tmp_path / 'runs')!r}", "algo.steps_per_update=400",
            "algo.total_steps=800", *overrides])
        run_dir = start_run(scenario, progress=False).run_dir
        rows.append([without_clock(ln) for ln in read_lines(run_dir)
                     if ln["type"] in ("update", "run_finished")])
    assert rows[0][0]["return_mean"] is not None and rows[0][-1]["status"] == "completed"
    assert rows[0] == rows[1] == rows[2]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity (Linux) and at least 2 allowed CPUs")
def test_workers_that_fill_the_allowed_cpus_are_pinned_one_per_cpu(kwargs: dict) -> None:
    import functools

    from envs.fmu import FMUEnv, ParallelVectorEnv

    allowed = sorted(os.sched_getaffinity(0))
    fns = [functools.partial(FMUEnv, **kwargs)] * (2 * len(allowed))
    venv = ParallelVectorEnv(fns)  # default workers: one per allowed CPU
    try:
        pinned = [os.sched_getaffinity(p.pid) for p in venv._exec.procs]
    finally:
        venv.close()
    assert sorted(cpu for cpus in pinned for cpu in cpus) == allowed
    assert all(len(cpus) == 1 for cpus in pinned)
    # Fewer workers than CPUs: left to the scheduler, on every allowed CPU.
    venv = ParallelVectorEnv(fns, workers=len(allowed) - 1)
    try:
        unpinned = [os.sched_getaffinity(p.pid) for p in venv._exec.procs]
    finally:
        venv.close()
    assert all(sorted(cpus) == allowed for cpus in unpinned)
