"""FMUs built during the tests (the example heated tank compiled from C with the system
compiler, small Python FMUs made with pythonfmu; built once per session), a local Ray instance
and the rollout the parallel tests compare across backends."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from envs.fmu.build_example import build_fmu

N, STEPS = 5, 12  # episodes of 5 steps: every copy resets twice inside the rollout
TANK_KWARGS = {
    "step_size": 1.0,
    "episode_steps": 5,
    "actions": [{"name": "heat", "low": 0.0, "high": 1.0}],
    "observations": ["T", {"name": "dTdt", "low": -10.0, "high": 10.0}],
    "reward": {"output": "production"},
    "costs": {"overheat": {"output": "T", "above": 80.0}},
    "randomize": {"T0": [20.0, 40.0]},
}

# A mixing valve: out = 10 * u (a pure algebraic plant), plus a level that integrates
# (inflow - outflow). `level` may go negative, so it doubles as a bad cost in the tests.
VALVE_SCRIPT = '''
from pythonfmu import Fmi2Causality, Fmi2Variability, Fmi2Slave, Real


class Valve(Fmi2Slave):
    author = "safe-trpo tests"
    description = "valve feeding a tank"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.u = 0.0
        self.outflow = 2.0
        self.level = 1.0
        self.flow = 0.0
        self.register_variable(Real("u", causality=Fmi2Causality.input))
        self.register_variable(Real("outflow", causality=Fmi2Causality.parameter,
                                    variability=Fmi2Variability.tunable))
        self.register_variable(Real("level", causality=Fmi2Causality.output))
        self.register_variable(Real("flow", causality=Fmi2Causality.output))

    def do_step(self, current_time, step_size):
        self.flow = 10.0 * self.u
        self.level += step_size * (self.flow - self.outflow)
        return True
'''


def compiler() -> str:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.fail("no C compiler: the FMU tests need one (apt-get install gcc)")
    return "cc" if shutil.which("cc") else "gcc"


@pytest.fixture(scope="session")
def tank_fmu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The heated tank as an FMI 2.0 FMU, compiled from envs/fmu/heated_tank/heated_tank.c."""
    return build_fmu(tmp_path_factory.mktemp("fmu") / "heated_tank.fmu", compiler())


@pytest.fixture(scope="session")
def tank3_fmu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tank as an FMI 3.0 FMU (heated_tank3.c over the same tank_core.h)."""
    return build_fmu(tmp_path_factory.mktemp("fmu3") / "heated_tank3.fmu", compiler(), "3.0")


@pytest.fixture(scope="session")
def valve_fmu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python FMU built with ``pythonfmu build`` (the tool the package installs)."""
    folder = tmp_path_factory.mktemp("pyfmu")
    script = folder / "Valve.py"
    script.write_text(VALVE_SCRIPT)
    subprocess.run([sys.executable, "-m", "pythonfmu", "build", "-f", str(script), "-d",
                    str(folder)], check=True, capture_output=True, timeout=120)
    return folder / "Valve.fmu"


def info_layout(info: dict, prefix: str = "") -> list[tuple]:
    """Every key of a vector info dict, in order, with its dtype and values (recursing into
    ``final_info``): what must match Gymnasium's SyncVectorEnv exactly."""
    out: list[tuple] = []
    for key, value in info.items():
        if isinstance(value, dict):
            out += [(prefix + key, "dict")] + info_layout(value, f"{prefix}{key}.")
        else:
            out.append((prefix + key, value.dtype.str, value.shape,
                        [None if v is None else np.asarray(v).tolist() for v in value]))
    return out


def rollout(venv: gym.vector.VectorEnv, seed: int = 11) -> list[tuple]:
    """(obs, reward, terminated, truncated, infos) per step; actions are a fixed function of
    the step so every backend sees the same ones."""
    rng = np.random.default_rng(0)
    obs, info = venv.reset(seed=seed)
    out = [(obs, info_layout(info))]
    for _ in range(STEPS):
        actions = rng.uniform(-1, 1, (venv.num_envs, 1)).astype(np.float32)
        obs, reward, term, trunc, info = venv.step(actions)
        out.append((obs, reward, term, trunc, info_layout(info)))
    venv.close()
    return out


def same(a: list[tuple], b: list[tuple]) -> bool:
    """Bit for bit: arrays equal with the same dtype, info layouts equal."""
    def equal(x: object, y: object) -> bool:
        if isinstance(x, np.ndarray):
            return isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)
        return x == y

    return len(a) == len(b) and all(
        all(equal(x, y) for x, y in zip(s, t, strict=True)) for s, t in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def kwargs(tank_fmu: Path) -> dict:
    return {"fmu": str(tank_fmu), **TANK_KWARGS}


@pytest.fixture(scope="module")
def reference(kwargs: dict) -> list[tuple]:
    """Gymnasium's own SyncVectorEnv over single FMU envs: the layout and numbers to match."""
    from gymnasium.vector import AutoresetMode

    from envs.fmu import FMUEnv

    return rollout(gym.vector.SyncVectorEnv([lambda: FMUEnv(**kwargs)] * N,
                                            autoreset_mode=AutoresetMode.SAME_STEP))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray  # a test dependency: a missing ray fails here, it is not skipped

    yield
    ray.shutdown()
