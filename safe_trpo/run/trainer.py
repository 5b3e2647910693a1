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
from safe_trpo.run.checkpoint import (
    load_state,
    new_state,
    remove_stray_temps,
    save_checkpoint,
)
from safe_trpo.run.env_catalog import check_constraint_names
from safe_trpo.run.guard import Interrupts, disk_full_error, is_disk_full, run_lock
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
    with run_lock(run_dir):
        try:
            audit = _open_record(scenario, run_dir, ledger)
        except OSError as exc:
            envs.close()
            if is_disk_full(exc):
                raise UserError(f"{run_dir}: cannot write the run's record ({exc.strerror}); "
                                f"free space and train again") from None
            raise
        return _train(scenario, run_dir, envs, state, audit, scenario.run.seed, progress)


def _open_record(scenario: Scenario, run_dir: Path, ledger: Any) -> AuditLog:
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
    return audit


def resume_run(run_dir: Path, progress: bool = True) -> RunOutcome:
    """Continue ``run_dir`` from its newest recorded checkpoint to the planned total; a run
    killed before its first checkpoint restarts from update 0 inside the same chain."""
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    with run_lock(Path(run_dir)):  # held before the record is read: no other writer is live
        record = read_run_record(Path(run_dir))
        run_dir = record.run_dir
        finished = [ln for ln in record.lines if ln["type"] == "run_finished"]
        if finished and finished[-1]["status"] == "completed":
            raise UserError(f"{run_dir}: run already completed its "
                            f"{record.started['planned_updates']} updates")
        scenario = record.scenario
        torch.set_num_threads(scenario.run.torch_threads)
        envs = make_vector_env(scenario.env)
        if record.checkpoint is None:
            torch.manual_seed(scenario.run.seed)  # the same initial networks as the start
            state = new_state(scenario, envs.single_observation_space,
                              envs.single_action_space)
            checkpoint = None
        else:
            state = load_state(scenario, record.checkpoint)
            checkpoint = record.checkpoint.relative_to(run_dir).as_posix()
        remove_stray_temps(run_dir)
        try:
            audit = AuditLog(run_dir)
            audit.append("resumed", from_update=state.update, env_steps=state.env_steps,
                         checkpoint=checkpoint, cut_tail=audit.cut_tail)
        except OSError as exc:
            envs.close()
            if is_disk_full(exc):
                raise disk_full_error(run_dir, exc, state.update) from None
            raise
        env_seed = scenario.run.seed + RESUME_SEED_STRIDE * (state.update + 1)
        return _train(scenario, run_dir, envs, state, audit, env_seed, progress)


def _checkpoint(state: TrainState, run_dir: Path, audit: AuditLog) -> None:
    path = save_checkpoint(state, run_dir)
    audit.append_file(run_dir, path, role="checkpoint")


def _train(scenario: Scenario, run_dir: Path, envs: Any, state: TrainState, audit: AuditLog,
           env_seed: int, progress: bool) -> RunOutcome:
    """The loop: collect a rollout, learn from it, record it, checkpoint on schedule.

    SIGINT/SIGTERM stop the run between updates (a signal during an update waits for it to be
    recorded), and the state reached is checkpointed before ``run_finished``.
    """
    planned = scenario.planned_updates
    steps_per_env = scenario.algo.steps_per_update // envs.num_envs
    status, reason, disk_error = "completed", "", None
    saved = state.update  # the update count of the newest checkpoint on disk
    bar = tqdm(total=planned, initial=state.update, disable=not progress, unit="update",
               desc=run_dir.name, dynamic_ncols=True)
    with Interrupts() as interrupts:
        try:
            collector = RolloutCollector(envs, [c.info_key for c in scenario.constraints],
                                         env_seed)
            if state.horizon is None and envs.spec is not None \
                    and envs.spec.max_episode_steps:
                state.horizon = float(envs.spec.max_episode_steps)
            while state.update < planned:
                started = time.perf_counter()
                first = state.update == 0
                rollout = collector.collect(state.policy, state.normalizer, steps_per_env,
                                            update_stats_per_step=first)
                with interrupts.critical():
                    row = _update(scenario, state, rollout, audit, started,
                                  steps_per_env * envs.num_envs)
                    if state.update % scenario.run.checkpoint_every == 0 \
                            or state.update == planned:
                        _checkpoint(state, run_dir, audit)
                        saved = state.update
                bar.update(1)
                bar.set_postfix(progress_postfix(row, state.env_steps), refresh=False)
        except KeyboardInterrupt:
            status, reason = "interrupted", "stopped by the user (SIGINT/SIGTERM)"
        except NonFiniteError as exc:
            status, reason = "failed", str(exc)
            audit.append("nan_detected", where=exc.where, update=state.update,
                         detail=str(exc),
                         action="run stopped; the last checkpoint holds the last good state")
        except OSError as exc:
            if not is_disk_full(exc):
                _fail(audit, state, exc, scenario, run_dir)
                raise
            disk_error = exc
        except BaseException as exc:
            _fail(audit, state, exc, scenario, run_dir)
            raise
        finally:
            bar.close()
            envs.close()
        interrupts.hold()  # a second Ctrl-C must not cut the final checkpoint short
        if disk_error is not None:
            _fail(audit, state, disk_error, scenario, run_dir)  # best effort: the disk is full
            raise disk_full_error(run_dir, disk_error, saved) from None
        if status == "interrupted" and state.update > saved:
            # Only whole updates happen between signals, so this state is consistent.
            _checkpoint(state, run_dir, audit)
        audit.append("run_finished", status=status, updates=state.update,
                     env_steps=state.env_steps, reason=reason,
                     constraint_totals=_totals(scenario, run_dir, state))
        audit.close()
    return RunOutcome(run_dir, status, state.update, state.env_steps, reason)


def _update(scenario: Scenario, state: TrainState, rollout: Any, audit: AuditLog,
            started: float, batch_steps: int) -> dict[str, Any]:
    """Learn from one rollout and record it as an ``update`` line; returns the row."""
    state.env_steps += batch_steps
    # learn also moves the observation normaliser (inside the audited step).
    row = learn(scenario, state, rollout)
    nan_event = row.pop("nan_event", None)
    if nan_event:
        audit.append("nan_detected", where="policy", update=state.update, action=nan_event)
    audit.append("update", update=state.update, env_steps=state.env_steps, **row,
                 wall_s=time.perf_counter() - started)
    state.update += 1
    return row


def _fail(audit: AuditLog, state: TrainState, exc: BaseException, scenario: Scenario,
          run_dir: Path) -> None:
    """Record a failed end; on a full disk this may fail too, leaving the chain as it was."""
    try:
        audit.append("run_finished", status="failed", updates=state.update,
                     env_steps=state.env_steps, reason=f"{type(exc).__name__}: {exc}",
                     constraint_totals=_totals(scenario, run_dir, state))
    except OSError as again:
        if not is_disk_full(again):
            raise
    finally:
        audit.close()


def _totals(scenario: Scenario, run_dir: Path, state: TrainState) -> list[dict[str, Any]]:
    """Episodes over each limit and the worst episode, over the run's current updates."""
    rows = current_update_rows(read_lines(run_dir), below=state.update)
    return constraint_totals(rows, [(c.name, c.limit) for c in scenario.constraints])


def scenario_digest(scenario: Scenario) -> str:
    """Short hash of the resolved scenario (sweeps use it to name configurations)."""
    import json

    text = json.dumps(scenario_to_dict(scenario), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
