"""A training run, top to bottom: set up, then collect -> learn -> audit -> checkpoint.

``start_run`` creates a run folder and trains a scenario from scratch; ``resume_run`` continues a
run folder from its last verified checkpoint to the planned total, appending to the same audit
chain. Either way every update is one hash-chained ``update`` line, written and flushed before
the next rollout starts.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from safe_trpo import __version__
from safe_trpo.algo.learn import learn
from safe_trpo.algo.rollout import NonFiniteError, RolloutCollector
from safe_trpo.algo.state import TrainState
from safe_trpo.config import Scenario, data_file_hashes, scenario_to_dict
from safe_trpo.errors import UserError
from safe_trpo.record.audit import AuditLog, file_sha256, read_lines
from safe_trpo.record.evidence import constraint_totals, current_update_rows
from safe_trpo.record.ledger import ledger_for_new_run
from safe_trpo.record.run_record import read_run_record
from safe_trpo.run.checkpoint import load_state, new_state, save_checkpoint
from safe_trpo.run.env_catalog import check_constraint_names
from safe_trpo.run.make_env import make_vector_env
from safe_trpo.run.progress import postfix as progress_postfix

# Resumed runs re-seed their environments (env states are not checkpointable in general);
# this offset keeps those seeds away from the ones the run started with.
RESUME_SEED_STRIDE = 7919


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    status: str  # completed | interrupted | failed
    updates: int
    env_steps: int
    reason: str = ""


def versions() -> dict[str, str]:
    import gymnasium

    # cvxpy's version from its installed metadata: importing it costs a TRPO run ~1 s.
    return {"safe_trpo": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "gymnasium": gymnasium.__version__,
            "numpy": np.__version__, "cvxpy": importlib.metadata.version("cvxpy")}


def git_commit() -> str | None:
    """The commit of the safe-trpo checkout this code runs from ("-dirty" if modified), or None
    when it is not running from its own checkout (an installed copy inside someone else's
    repository must not record that repository's commit)."""
    package_root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                                 cwd=package_root)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != package_root:
        return None
    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return None if commit is None else commit + ("-dirty" if dirty else "")


def _make_run_dir(scenario: Scenario) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = f"{scenario.run.name or 'run'}-{scenario.algo.name}-s{scenario.run.seed}-{stamp}"
    root = Path(scenario.run.out_dir)
    for k in range(1000):
        run_dir = root / (base if k == 0 else f"{base}-{k}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserError(f"[run] out_dir = {str(root)!r}: cannot create a run folder "
                            f"({exc.strerror})") from None
    raise UserError(f"{root}: cannot create a fresh run folder for {base}")


def start_run(scenario: Scenario, progress: bool = True) -> RunOutcome:
    """Train ``scenario`` from scratch in a new run folder under ``[run] out_dir``."""
    check_constraint_names(scenario)  # before any folder exists
    torch.manual_seed(scenario.run.seed)
    torch.set_num_threads(scenario.run.torch_threads)
    envs = make_vector_env(scenario.env)
    state = new_state(scenario, envs.single_observation_space, envs.single_action_space)
    # No ledger, no run: it is reached (or created) before the run folder exists.
    ledger = ledger_for_new_run(scenario.run.ledger, Path(scenario.run.out_dir))
    run_dir = _make_run_dir(scenario)
    source = Path(scenario.source)
    fields: dict[str, Any] = {"scenario_file": None, "scenario_sha256": None}
    if source.is_file():
        (run_dir / "scenario.toml").write_bytes(source.read_bytes())
        fields = {"scenario_file": str(source), "scenario_sha256": file_sha256(source)}
    audit = AuditLog(run_dir, ledger)
    audit.append("run_started", run_id=run_dir.name, scenario=scenario_to_dict(scenario),
                 seed=scenario.run.seed, versions=versions(), git_commit=git_commit(),
                 data_files=data_file_hashes(scenario), planned_updates=scenario.planned_updates,
                 **fields)
    if source.is_file():
        audit.append_file(run_dir, run_dir / "scenario.toml", role="scenario")
    return _train(scenario, run_dir, envs, state, audit, scenario.run.seed, progress)


def resume_run(run_dir: Path, progress: bool = True) -> RunOutcome:
    """Continue ``run_dir`` from its newest recorded checkpoint to the planned total."""
    record = read_run_record(run_dir)
    run_dir = record.run_dir
    finished = [ln for ln in record.lines if ln["type"] == "run_finished"]
    if finished and finished[-1]["status"] == "completed":
        raise UserError(f"{run_dir}: run already completed its "
                        f"{record.started['planned_updates']} updates")
    if record.checkpoint is None:
        raise UserError(f"{run_dir}: no recorded checkpoint to resume from")
    scenario = record.scenario
    torch.set_num_threads(scenario.run.torch_threads)
    state = load_state(scenario, record.checkpoint)
    envs = make_vector_env(scenario.env)
    audit = AuditLog(run_dir)
    audit.append("resumed", from_update=state.update, env_steps=state.env_steps,
                 checkpoint=record.checkpoint.relative_to(run_dir).as_posix(),
                 cut_tail=audit.cut_tail)
    env_seed = scenario.run.seed + RESUME_SEED_STRIDE * (state.update + 1)
    return _train(scenario, run_dir, envs, state, audit, env_seed, progress)


def _checkpoint(state: TrainState, run_dir: Path, audit: AuditLog) -> None:
    path = save_checkpoint(state, run_dir)
    audit.append_file(run_dir, path, role="checkpoint")


def _train(scenario: Scenario, run_dir: Path, envs: Any, state: TrainState, audit: AuditLog,
           env_seed: int, progress: bool) -> RunOutcome:
    """The loop: collect a rollout, learn from it, record it, checkpoint on schedule."""
    planned = scenario.planned_updates
    steps_per_env = scenario.algo.steps_per_update // envs.num_envs
    status, reason = "completed", ""
    bar = tqdm(total=planned, initial=state.update, disable=not progress, unit="update",
               desc=run_dir.name, dynamic_ncols=True)
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        collector = RolloutCollector(envs, [c.info_key for c in scenario.constraints], env_seed)
        if state.horizon is None and envs.spec is not None and envs.spec.max_episode_steps:
            state.horizon = float(envs.spec.max_episode_steps)
        while state.update < planned:
            started = time.perf_counter()
            first = state.update == 0
            rollout = collector.collect(state.policy, state.normalizer, steps_per_env,
                                        update_stats_per_step=first)
            state.env_steps += steps_per_env * envs.num_envs
            # learn also moves the observation normaliser (inside the audited step).
            row = learn(scenario, state, rollout)
            nan_event = row.pop("nan_event", None)
            if nan_event:
                audit.append("nan_detected", where="policy", update=state.update,
                             action=nan_event)
            audit.append("update", update=state.update, env_steps=state.env_steps, **row,
                         wall_s=time.perf_counter() - started)
            state.update += 1
            if state.update % scenario.run.checkpoint_every == 0 or state.update == planned:
                _checkpoint(state, run_dir, audit)
            bar.update(1)
            bar.set_postfix(progress_postfix(row, state.env_steps), refresh=False)
    except KeyboardInterrupt:
        status, reason = "interrupted", "stopped by the user (SIGINT/SIGTERM)"
    except NonFiniteError as exc:
        status, reason = "failed", str(exc)
        audit.append("nan_detected", where=exc.where, update=state.update, detail=str(exc),
                     action="run stopped; the last checkpoint holds the last good state")
    except BaseException as exc:
        audit.append("run_finished", status="failed", updates=state.update,
                     env_steps=state.env_steps, reason=f"{type(exc).__name__}: {exc}",
                     constraint_totals=_totals(scenario, run_dir, state))
        audit.close()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        bar.close()
        envs.close()
    audit.append("run_finished", status=status, updates=state.update,
                 env_steps=state.env_steps, reason=reason,
                 constraint_totals=_totals(scenario, run_dir, state))
    audit.close()
    return RunOutcome(run_dir, status, state.update, state.env_steps, reason)


def _totals(scenario: Scenario, run_dir: Path, state: TrainState) -> list[dict[str, Any]]:
    """Episodes over each limit and the worst episode, over the run's current updates."""
    rows = current_update_rows(read_lines(run_dir), below=state.update)
    return constraint_totals(rows, [(c.name, c.limit) for c in scenario.constraints])


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def scenario_digest(scenario: Scenario) -> str:
    """Short hash of the resolved scenario (sweeps use it to name configurations)."""
    import json

    text = json.dumps(scenario_to_dict(scenario), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
