"""Running a sweep's jobs: the job function and the ``local`` / ``ray`` execution backends.

``run_job`` trains one job in a worker process (never in the sweep's own) and logs each attempt
in the job's ``attempts.jsonl``. ``_execute`` runs a list of jobs on a backend: ``local`` uses a
spawn process pool on this machine that survives workers that die, ``ray`` runs the same job
function as Ray tasks. ``_sigterm_as_interrupt`` lets SIGTERM stop a sweep like Ctrl-C; running
workers are then told to stop (they record ``interrupted``). ``sweep.py`` plans sweeps and calls
these; ``run_job`` is re-exported from there.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safe_trpo.errors import UserError
from safe_trpo.run import trust
from safe_trpo.sweep.summary import ATTEMPTS_FILE, read_attempts, run_folders

if TYPE_CHECKING:  # only for annotations: sweep.py imports this module
    from safe_trpo.sweep.plan import Job

    Notify = Callable[[Job, dict[str, Any]], None]


def _log_attempt(job_dir: Path, entry: dict[str, Any]) -> None:
    with open(job_dir / ATTEMPTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()


def run_job(job: Job) -> dict[str, Any]:
    """Train one job in a fresh run folder under ``job.job_dir`` (runs in a worker process).

    Never raises for a failing run: the failure is logged in ``attempts.jsonl`` (with its
    traceback, as evidence) and returned, so the other jobs carry on.
    """
    import torch

    # One intra-op thread per job, so N jobs use N cores; a scenario asking for more threads
    # still gets them from start_run, because the recorded scenario must be what ran.
    torch.set_num_threads(1)
    job_dir = Path(job.job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    attempt = 1 + _started(job)
    before = set(run_folders(job_dir))
    started = time.perf_counter()
    _log_attempt(job_dir, {"event": "started", "attempt": attempt, "host": socket.gethostname(),
                           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    result: dict[str, Any] = {"status": "failed", "reason": "", "run_dir": None}
    try:
        result = _train(job)
    except Exception as exc:
        new = sorted(set(run_folders(job_dir)) - before)
        result.update(reason=" ".join(f"{type(exc).__name__}: {exc}".split())[:500],
                      run_dir=str(new[-1]) if new else None, traceback=traceback.format_exc())
    result.update(attempt=attempt, wall_s=round(time.perf_counter() - started, 3))
    _log_attempt(job_dir, {"event": "finished", **result})
    result.pop("traceback", None)
    return result


def _train(job: Job) -> dict[str, Any]:
    from safe_trpo.config import load_scenario
    from safe_trpo.run.trainer import start_run

    # json.dumps gives a TOML basic string with any quote or backslash in the path escaped.
    overrides = [*job.overrides, f"run.seed={job.seed}", f"run.out_dir={json.dumps(job.job_dir)}"]
    outcome = start_run(load_scenario(job.scenario, overrides), progress=False)
    result = {"status": outcome.status, "reason": outcome.reason,
              "run_dir": str(outcome.run_dir)}
    if outcome.status == "completed" and job.make_report:
        try:
            from safe_trpo.report.build import write_report

            write_report(outcome.run_dir)
        except Exception as exc:  # the run stands without its report; the summary links the folder
            result["report_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return result


def _failed(exc: BaseException) -> dict[str, Any]:
    return {"status": "failed", "reason": f"worker: {type(exc).__name__}: {exc}", "run_dir": None}


def _started(job: Job) -> int:
    return sum(a.get("event") == "started" for a in read_attempts(Path(job.job_dir)))


def _run_local(jobs: list[Job], workers: int, notify: Notify) -> None:
    """Run ``jobs`` on a spawn process pool, surviving workers that die.

    A worker that dies (segfault, OOM kill) breaks the whole pool: every unfinished future fails
    and the other workers are killed. Jobs that never started go back to a new pool; jobs that
    had started (the culprit and its innocent neighbours look alike) are re-run alone, one at a
    time, after the rest, so a job that dies again is reported failed without taking any other.
    """
    todo, suspects = list(jobs), []
    while todo or suspects:
        solo = not todo
        batch = [suspects.pop(0)] if solo else todo
        before = {job: _started(job) for job in batch}
        broken = _pool_round(batch, 1 if solo else workers, notify)
        started = [job for job in broken if _started(job) > before[job]]
        if broken and (solo or not started):  # its own crash, or a pool that cannot start
            for job in broken:
                notify(job, {"status": "failed", "run_dir": None, "reason":
                             "worker process died (crashed or killed) while running it alone"
                             if job in started else "worker pool broke before the job started"})
            broken, started = [], []
        suspects += started
        if not solo:
            todo = [job for job in broken if job not in started]


def _pool_round(jobs: list[Job], workers: int, notify: Notify) -> list[Job]:
    """One pool over ``jobs``; returns the jobs lost to a broken pool."""
    # spawn: workers inherit no torch/gym state from this process. Workers are reused across
    # jobs (imports cost seconds per process); a run does not depend on what its process ran
    # before, since start_run seeds torch and the environments (bench_sweep.py checks it).
    broken = []
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures: dict[Future, Job] = {pool.submit(run_job, job): job for job in jobs}
        # Python 3.11's pool wakes its watcher thread *before* spawning the worker a submit
        # adds, so the watcher may not see the last worker die until some other event. One more
        # (no-op) submit, once every worker exists, makes it watch them all.
        pool.submit(int)
        try:
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken.append(futures[fut])
                    continue
                except Exception as exc:  # e.g. a result that cannot be sent back
                    result = _failed(exc)
                notify(futures[fut], result)
        except BaseException:  # Ctrl-C / SIGTERM: running runs record their end; queued ones
            # never start. Ctrl-C in a terminal reaches the workers too, SIGTERM to this process
            # does not: pass it on, or the workers would go on training with no one watching.
            _terminate_workers(pool)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return broken


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Send SIGTERM to the pool's worker processes (the trainer turns it into ``interrupted``).

    Python 3.11 has no public way to reach them (``terminate_workers`` comes in 3.14), hence the
    private ``_processes`` (pid -> Process), read defensively.
    """
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            if proc.is_alive():
                proc.terminate()
        except (OSError, ValueError):  # already gone or closed
            continue


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt (so ``finally`` blocks run); the previous
    handler is restored after. Signal handlers can only be set from the main thread: elsewhere
    (e.g. a sweep started by the review app) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_ray(jobs: list[Job], address: str | None, workers: int, notify: Notify) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("ray backend needs `pip install safe-trpo[ray]`") from None
    owned = not ray.is_initialized()
    if owned:
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
        except Exception as exc:
            where = address or "a local cluster"
            raise UserError(f"ray backend: cannot start or join {where} ({exc})") from None
    try:
        # No retries: a run whose worker crashed is reported (and re-attempted by the next
        # sweep) rather than silently redone. Workers are reused across jobs, as with local.
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
        if os.environ.get(trust.ENV_VAR):  # the user's trusted modules reach every machine
            options["runtime_env"] = {"env_vars": {trust.ENV_VAR: os.environ[trust.ENV_VAR]}}
        task = ray.remote(**options)(run_job)
        refs = {task.remote(job): job for job in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(done[0])
            except Exception as exc:
                result = _failed(exc)
            notify(refs[done[0]], result)
    finally:
        if owned:
            ray.shutdown()


def _execute(jobs: list[Job], backend: str, address: str | None, workers: int,
             notify: Notify) -> None:
    if backend == "local":
        _run_local(jobs, workers, notify)
    elif backend == "ray":
        _run_ray(jobs, address, workers, notify)
    else:
        raise UserError(f"--backend {backend!r}: expected local or ray")
