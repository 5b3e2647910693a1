"""What a sweep found: per-run results read from the run folders, aggregates across seeds, and
the self-contained ``sweep.html`` page.

Everything here is computed from what is on disk (the run folders and each job's
``attempts.jsonl``), never from what workers returned, so a re-run, an interrupted sweep and the
review app all see the same summary.

How a run's result is measured: the *final return* is the mean of the non-null ``return_mean``
values of the run's last ``FINAL_WINDOW`` current update rows (rows redone after a resume count
once, see ``report_plots.current_updates``), and a constraint's *final episode cost* is
the mean of the non-null ``ep_cost`` values of the same rows. One row's batch holds only a few
episodes, so averaging the last rows cuts that noise while still describing the end of training.

Whether a run *ends within its limits* is not judged from those means: it is the one rule of
``safe_trpo.record.verdict`` (``limits_at_end``), which the review app and the report use too: no
episode over any limit in the final policy's evaluation, or without one in the episodes of the
last ``END_WINDOW`` update rows. A count that cannot be established is unknown, never within.
Each run also carries its training totals: episodes over each limit and the worst episode.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from safe_trpo.errors import UserError
from safe_trpo.record.audit import AUDIT_FILE, read_lines, verify_run
from safe_trpo.record.verdict import END_WINDOW, integrity_word, limits_at_end, training_totals
from safe_trpo.report.html import atomic_write
from safe_trpo.report.plots import current_updates
from safe_trpo.sweep.plan import DataFiles, data_files_key

# The display half lives in summary_view; re-exported so ``summary.<name>`` keeps working.
from safe_trpo.sweep.summary_view import fmt as fmt
from safe_trpo.sweep.summary_view import fmt_frac as fmt_frac
from safe_trpo.sweep.summary_view import fmt_spread as fmt_spread
from safe_trpo.sweep.summary_view import render_html
from safe_trpo.sweep.summary_view import summary_table as summary_table
from safe_trpo.sweep.summary_view import summary_text as summary_text

if TYPE_CHECKING:
    from safe_trpo.sweep.plan import Job, SweepPlan

FINAL_WINDOW = END_WINDOW  # update rows averaged into a run's final return and final costs
SUMMARY_FILE = "sweep.json"
HTML_FILE = "sweep.html"
ATTEMPTS_FILE = "attempts.jsonl"
FORMAT = "safe-trpo-sweep/1"


def run_folders(job_dir: Path) -> list[Path]:
    """The run folders (one per attempt that got as far as creating one), oldest name first."""
    if not job_dir.is_dir():
        return []
    return sorted(p for p in job_dir.iterdir() if p.is_dir() and (p / AUDIT_FILE).is_file())


def run_is_done(run_dir: Path, data_files: DataFiles | None = None) -> bool:
    """Finished, verified and completed: the only state in which a sweep skips the run.

    data_files: the job's data files now (``data_files_key``); when given, a run that recorded
    other hashes is not done, so a changed price file re-runs the job. None skips that check.
    """
    verdict = verify_run(run_dir)
    if not (verdict.ok and verdict.finished):
        return False
    ends = [ln for ln in verdict.chain.lines if ln.get("type") == "run_finished"]
    if ends[-1].get("status") != "completed":
        return False
    if data_files is None:
        return True
    start = next((ln for ln in verdict.chain.lines if ln.get("type") == "run_started"), {})
    return data_files_key(start.get("data_files")) == data_files


def find_done_run(job_dir: Path, data_files: DataFiles | None = None) -> Path | None:
    """The newest run folder of a job that is done (see ``run_is_done``), else None."""
    for run_dir in reversed(run_folders(job_dir)):
        if run_is_done(run_dir, data_files):
            return run_dir
    return None


def read_attempts(job_dir: Path) -> list[dict[str, Any]]:
    """The job's attempt log: a ``started`` and (unless the process died) a ``finished`` line."""
    path = job_dir / ATTEMPTS_FILE
    if not path.is_file():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue  # a line cut off by a killed worker; the started line still counts
    return out


def _window_mean(rows: list[dict[str, Any]], get: Any) -> float | None:
    values = [v for v in (get(r) for r in rows[-FINAL_WINDOW:]) if isinstance(v, (int, float))]
    return float(np.mean(values)) if values else None


def run_result(run_dir: Path) -> dict[str, Any]:
    """One run's verdict, status and final metrics (see the module docstring)."""
    verdict = verify_run(run_dir)
    lines = read_lines(run_dir)
    rows = current_updates(lines)
    # The verdict reads only what verified (as the app does); the means keep reading all rows.
    end = limits_at_end(verdict.chain.lines)
    totals = training_totals(verdict.chain.lines)
    superseded = sum(ln.get("type") == "update" for ln in lines) - len(rows)
    start = next((ln for ln in lines if ln.get("type") == "run_started"), {})
    limits = {c["name"]: c["limit"] for c in start.get("scenario", {}).get("constraints", [])}
    ends = [ln for ln in lines if ln.get("type") == "run_finished"]
    costs = {name: _window_mean(rows, lambda r, n=name: _cost(r, n)) for name in limits}
    report = run_dir / "report.html"
    return {
        "run_status": ends[-1].get("status") if ends else "unfinished",
        "reason": ends[-1].get("reason", "") if ends else "no run_finished line",
        "verified": verdict.ok, "verify": verdict.summary, "updates": len(rows),
        "superseded_updates": superseded,
        "final_return": _window_mean(rows, lambda r: r.get("return_mean")),
        "final_costs": costs, "limits": limits,
        "within_limits": end.within, "within_basis": end.basis,
        "kept_at_end": {c.name: c.kept for c in end.counts},
        "integrity": integrity_word(verdict.chain.status, verdict.file_problems),
        "episodes_over": {c.name: c.over for c in totals},
        # Older records only bound the count from below (rows without episodes_over).
        "episodes_over_at_least": {c.name: c.note.startswith("at least") for c in totals},
        "episodes": {c.name: c.episodes for c in totals},
        "worst_episode": {c.name: c.worst for c in totals},
        "report": report if report.is_file() else None,
    }


def _cost(row: dict[str, Any], name: str) -> Any:
    return next((c.get("ep_cost") for c in row.get("constraints", []) if c.get("name") == name),
                None)


def job_record(job: Job, sweep_dir: Path) -> dict[str, Any]:
    """A job's state from disk: completed (a done run), failed (attempted, none done), pending."""
    job_dir = Path(job.job_dir)
    attempts = [a for a in read_attempts(job_dir) if a.get("event") == "started"]
    done = find_done_run(job_dir, job.data_files)
    folders = run_folders(job_dir)
    record: dict[str, Any] = {"seed": job.seed, "job_dir": _rel(job_dir, sweep_dir),
                              "attempts": len(attempts), "run_dir": None, "state": "pending",
                              "reason": "", "verified": None, "verify": None,
                              "final_return": None, "final_costs": {}, "within_limits": None,
                              "report": None}
    shown = done or (folders[-1] if folders else None)
    if shown is not None:
        result = run_result(shown)
        result["report"] = _rel(result["report"], sweep_dir) if result["report"] else None
        record.update(result, run_dir=_rel(shown, sweep_dir))
    if done is not None:
        record.update(state="completed", reason="")
    elif shown is not None and run_is_done(shown):
        # Completed and verified, but on data files that have changed since: to run again.
        record.update(state="pending", reason="data files changed since its completed run")
    elif attempts:
        record.update(state="failed", reason=_failure_reason(job_dir, record))
    return record


def _failure_reason(job_dir: Path, record: dict[str, Any]) -> str:
    """Why the latest attempt did not give a done run, from the attempt log or the run itself."""
    log = read_attempts(job_dir)
    last_start = max((a.get("attempt", 0) for a in log if a.get("event") == "started"), default=0)
    end = next((a for a in reversed(log)
                if a.get("event") == "finished" and a.get("attempt") == last_start), None)
    if end is None:
        return f"attempt {last_start} never finished (worker process killed or crashed)"
    if end.get("status") == "completed" and record.get("verified") is False:
        return f"run completed but does not verify: {record['verify']}"
    return end.get("reason") or f"run {end.get('status')}"


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def spread(values: list[float]) -> dict[str, Any] | None:
    """Median, quartiles (IQR = q75 - q25), min, max and count; None when there are no values."""
    if not values:
        return None
    a = np.asarray(values, dtype=float)
    q25, median, q75 = np.percentile(a, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75),
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def config_summary(label: str, key: str, overrides: list[str],
                   runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates over the seeds of one configuration; only completed runs enter them."""
    done = [r for r in runs if r["state"] == "completed"]
    names = list(done[0]["limits"]) if done else []
    constraints = []
    for name in names:
        costs = [r["final_costs"][name] for r in done if r["final_costs"].get(name) is not None]
        limit = done[0]["limits"][name]
        kept = [r.get("kept_at_end", {}).get(name) for r in done]
        overs = [r.get("episodes_over", {}).get(name) for r in done]
        worst = [w for r in done if (w := r.get("worst_episode", {}).get(name)) is not None]
        constraints.append({
            "name": name, "limit": limit, "ep_cost": spread(costs),
            # The verdict's rule per constraint: no episode over it at the end.
            "frac_within": sum(k is True for k in kept) / len(done),
            "n_unknown": len(done) - len(costs),
            "training_episodes_over": (sum(overs) if all(o is not None for o in overs)
                                       else None),
            "training_episodes_over_at_least": any(
                r.get("episodes_over_at_least", {}).get(name) for r in done),
            "training_episodes": sum(r.get("episodes", {}).get(name) or 0 for r in done),
            "training_worst_episode": max(worst) if worst else None})
    within = [r["within_limits"] for r in done]
    return {
        "label": label, "key": key, "overrides": overrides, "n_runs": len(runs),
        "n_completed": len(done), "n_failed": sum(r["state"] == "failed" for r in runs),
        "n_pending": sum(r["state"] == "pending" for r in runs),
        "return": spread([r["final_return"] for r in done if r["final_return"] is not None]),
        "constraints": constraints,
        # Over completed runs; a run with an unknown cost counts as not within.
        "frac_within_all_limits": (sum(w is True for w in within) / len(done)
                                   if done and names else None),
        "runs": runs,
    }


def build_summary(plan: SweepPlan, backend: str, skipped: int, ran: int) -> dict[str, Any]:
    """The whole ``sweep.json`` document for ``plan``, read from the run folders now."""
    import time

    from safe_trpo.record.audit import file_sha256

    configs: dict[str, tuple[Job, list[dict[str, Any]]]] = {}
    for job in plan.jobs:
        configs.setdefault(job.config, (job, []))[1].append(job_record(job, plan.sweep_dir))
    return {
        "format": FORMAT, "sweep_id": plan.sweep_id,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": [{"path": str(p), "sha256": file_sha256(p)} for p in plan.scenarios],
        "seeds": list(plan.seeds), "sets": [[k, list(v)] for k, v in plan.sets],
        "backend": backend, "last_invocation": {"skipped": skipped, "ran": ran},
        "method": {"final_window": FINAL_WINDOW, "text": _METHOD},
        "configurations": [config_summary(job.label, key, list(job.overrides), runs)
                           for key, (job, runs) in configs.items()],
    }


_METHOD = (f"Final return and final episode cost: mean over the last {FINAL_WINDOW} update rows "
           "of each run (non-null values). Spread across seeds: median, IQR [q25, q75] and "
           "min-max over completed runs. A run ends within its limits when no episode went over "
           "any limit in the final policy's evaluation or, without one, in the last "
           f"{END_WINDOW} update rows (the rule the review app and the report use); unknown "
           "counts as not within. Training episodes over each limit are totals over all "
           "training episodes of the completed runs.")


def write_summary(sweep_dir: Path, summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``sweep.json`` and ``sweep.html`` atomically (readers never see half a file)."""
    json_path = atomic_write(sweep_dir / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")
    html_path = atomic_write(sweep_dir / HTML_FILE, render_html(summary))
    return json_path, html_path


def find_sweeps(reports_dir: Path) -> list[Path]:
    """Sweep folders (``<reports>/sweeps/<id>/`` with a sweep.json), most recently updated first."""
    root = Path(reports_dir) / "sweeps"
    if not root.is_dir() or root.is_symlink():
        return []
    # No symbolic link is followed: a received reports folder could point a sweep folder or
    # its sweep.json anywhere on the reader's machine.
    found = [p.parent for p in root.glob(f"*/{SUMMARY_FILE}")
             if not p.parent.is_symlink() and not p.is_symlink() and p.is_file()]
    return sorted(found, key=lambda d: (d / SUMMARY_FILE).stat().st_mtime, reverse=True)


def load_summary(sweep_dir: Path) -> dict[str, Any]:
    """The parsed ``sweep.json`` of ``sweep_dir``; UserError if it is missing or not a sweep."""
    path = Path(sweep_dir) / SUMMARY_FILE
    if path.is_symlink() or Path(sweep_dir).is_symlink():
        raise UserError(f"{path}: is a symbolic link (not followed)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no sweep summary (not a sweep folder)") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{path}: unreadable sweep summary ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: expected a sweep summary of format {FORMAT}")
    return data


def sweep_run_dirs(sweep_dir: Path, summary: dict[str, Any]) -> list[Path]:
    """The run folders a summary names, resolved, keeping only those inside ``sweep_dir`` (the
    paths come from a file on disk; a reader must not follow one that points elsewhere)."""
    root = Path(sweep_dir).resolve()
    dirs = []
    for config in summary.get("configurations", []):
        for run in config.get("runs", []):
            if isinstance(run.get("run_dir"), str):
                path = (root / run["run_dir"]).resolve()
                if path.is_relative_to(root) and path != root and path.is_dir():
                    dirs.append(path)
    return dirs
