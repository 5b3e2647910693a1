"""Sweeps: scenarios x ``--set`` values x seeds, every combination an independent, audited run.

Layout (all names deterministic, so a re-run finds what an earlier one did)::

    <out>/sweeps/<sweep_id>/            sweep_id = readable prefix + hash of (scenario file
        sweep.json, sweep.html          contents, seeds, --set values)
        runs/<config>-s<seed>/          one folder per job: <config> = label slug + digest of
            attempts.jsonl              the resolved scenario; every attempt logs started/finished
            <run folder>/               made by ``start_run`` (one per attempt, never deleted)

A job is done when one of its run folders verifies, has finished, says ``completed`` and recorded
the same data files (sha256 of [env.data_files]) as the scenario reads now; a re-run skips done
jobs and re-attempts the others in a fresh run folder beside the old ones. SIGTERM stops a sweep
like Ctrl-C: running runs are told to stop (they record ``interrupted``), and the summary is
still written. Jobs run in
worker processes, never in the sweep's own: ``local`` uses a spawn process pool on this machine,
``ray`` the same job function as Ray tasks (``pip install safe-trpo[ray]``). With a Ray cluster
of several machines, ``--out`` must be on a filesystem all of them share, and safe-trpo must be
installed on each. The plan (jobs, seeds, ``--set`` values) is in ``plan``, the job function
and the backends in ``backends``, sweep.json/html in ``summary``.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safe_trpo.errors import UserError

# run_sweep looks ``_execute`` up here, so tests can replace it with monkeypatch.setattr(sweep, ...)
from safe_trpo.sweep.backends import _execute, _sigterm_as_interrupt
from safe_trpo.sweep.backends import run_job as run_job
from safe_trpo.sweep.plan import Job, SweepPlan, plan_sweep
from safe_trpo.sweep.summary import (
    build_summary,
    find_done_run,
    summary_text,
    write_summary,
)


@contextmanager
def _sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Refuse a second sweep process on the same folder (it would run the same jobs twice)."""
    with open(sweep_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"{sweep_dir}: another sweep is running in this folder") from None
        yield


def run_sweep(plan: SweepPlan, backend: str = "local", address: str | None = None,
              workers: int = 2, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the jobs of ``plan`` that are not done yet, then write and return the summary.

    backend: ``local`` (process pool) or ``ray``; address: Ray cluster address, None starts a
    local cluster; workers: parallel runs (processes, or the local Ray cluster's CPUs), >= 1.
    """
    if workers < 1:
        raise UserError(f"--workers {workers}: expected at least 1")
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    with _sweep_lock(plan.sweep_dir), _sigterm_as_interrupt():
        pending = [job for job in plan.jobs
                   if find_done_run(Path(job.job_dir), job.data_files) is None]
        skipped = len(plan.jobs) - len(pending)
        echo(f"sweep {plan.sweep_id}: {len(plan.jobs)} runs, {skipped} already finished and "
             f"verified, {len(pending)} to run ({backend}, {workers} workers)")
        count = iter(range(1, len(pending) + 1))

        def notify(job: Job, result: dict[str, Any]) -> None:
            echo(f"[{next(count)}/{len(pending)}] {job.label} seed {job.seed}: {result['status']}"
                 + (f" ({result['reason']})" if result.get("reason") else "")
                 + (f" in {result['wall_s']:.1f} s" if "wall_s" in result else ""))
            if result.get("run_dir") and not Path(result["run_dir"]).is_dir():
                echo(f"  run folder {result['run_dir']} is not visible here: --out must be on a "
                     "filesystem shared with the workers")

        try:
            if pending:
                _execute(pending, backend, address, workers, notify)
        finally:  # also after Ctrl-C or SIGTERM: the summary says what is done and what is not
            summary = build_summary(plan, backend, skipped, len(pending))
            write_summary(plan.sweep_dir, summary)
    return summary


def run_sweep_command(scenarios: list[Path], seeds: str, sets: list[str], backend: str,
                      address: str | None, workers: int, out: Path) -> int:
    """``safe-trpo sweep``: 0 when every run completed, 1 when any did not (after all ran)."""
    plan = plan_sweep(scenarios, seeds, sets, out)
    summary = run_sweep(plan, backend, address, workers)
    print(summary_text(summary))
    print(plan.sweep_dir / "sweep.html")
    configs = summary["configurations"]
    return 0 if all(c["n_completed"] == c["n_runs"] for c in configs) else 1
