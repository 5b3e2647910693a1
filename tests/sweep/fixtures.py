"""Shared helpers for the sweep tests: a tiny SpeedLimit scenario, fake run folders, and
environments that misbehave inside a sweep worker (referenced by entry point from scenarios)."""

from __future__ import annotations

import glob
import multiprocessing
import os
import signal
import time
from pathlib import Path

import gymnasium as gym

from envs.speed_limit import SpeedLimitEnv
from safe_trpo.record.audit import AuditLog

# A CPO scenario of 3 updates of 200 steps on SpeedLimit: seconds per run.
TINY = """
[env]
id = "SafeTRPO/SpeedLimit-v0"
num_envs = 2
kwargs = { episode_steps = 50 }
[algo]
name = "cpo"
steps_per_update = 200
total_steps = 600
hidden_sizes = [8]
critic_epochs = 1
[[constraints]]
name = "speed"
limit = 10.0
"""


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (making its folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- summary arithmetic


def fake_run(run_dir: Path, returns: list, costs: list, status: str = "completed",
             data_files: list | None = None) -> Path:
    """A run folder with a real audit chain and the given per-update return/cost values;
    ``data_files`` as the trainer records them (``config.data_file_hashes``)."""
    run_dir.mkdir(parents=True)
    log = AuditLog(run_dir)
    log.append("run_started", scenario={"constraints": [{"name": "speed", "limit": 10.0}]},
               data_files=data_files or [])
    for i, (ret, cost) in enumerate(zip(returns, costs, strict=True)):
        log.append("update", update=i, return_mean=ret,
                   constraints=[{"name": "speed", "limit": 10.0, "ep_cost": cost}])
    log.append("run_finished", status=status, updates=len(returns), env_steps=0, reason="")
    log.close()
    return run_dir


class BlockedOnFirstAttempt(SpeedLimitEnv):
    """SpeedLimit, except that on its job's first attempt it touches ``ready`` and pauses 5 s
    (its neighbour's worker dies meanwhile); later attempts run normally."""

    def __init__(self, attempts_glob: str = "", ready: str = "", **kwargs) -> None:
        (attempts,) = glob.glob(attempts_glob)
        first = Path(attempts).read_text().count('"started"') == 1
        if first and not Path(ready).exists():
            Path(ready).touch()
            time.sleep(5)
        super().__init__(**kwargs)


class SelfKillingEnv(gym.Env):
    """Kills the worker process that builds it, as an out-of-memory kill would, once the file
    ``wait_for`` exists (so that the neighbouring job is mid-run when the pool breaks)."""

    def __init__(self, wait_for: str = "", **kwargs) -> None:
        if multiprocessing.parent_process() is None:  # never the test process itself
            raise RuntimeError("SelfKillingEnv only runs inside a sweep worker")
        deadline = time.monotonic() + 60
        while not Path(wait_for).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)


class SlowSpeedLimit(SpeedLimitEnv):
    """SpeedLimit at about 2 ms a step, touching ``ready`` on its first step (the trainer is in
    its loop by then, with its SIGTERM handler installed)."""

    def __init__(self, ready: str = "", **kwargs) -> None:
        self.ready = ready
        super().__init__(**kwargs)

    def step(self, action):
        if not Path(self.ready).exists():
            Path(self.ready).touch()
        time.sleep(0.002)
        return super().step(action)
