"""The review app's data layer: find run folders, summarise them, turn audit lines into tables.

Nothing here imports Streamlit, so it is tested directly. Two rules shape it:

- Only the reports folder is read. A run is addressed by its *id*, its folder's path relative
  to the reports folder (``name``, or ``sweeps/<id>/runs/<job>/<name>`` for a sweep's run), and
  an id is only accepted if a scan of the reports folder found it (``resolve_run``); the folder,
  its audit file and every file the chain names must resolve inside the reports folder.
- The list of runs stays fast with thousands of runs. A summary (which includes verifying the
  chain and the files it binds) is cached per run folder, keyed by the audit file's
  (mtime_ns, size, inode) and the stamps of the bound files; it is recomputed only when one of
  them changes, so a rerun of the page costs one ``stat`` per file, not one read per line.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from safe_trpo.errors import UserError
from safe_trpo.record.audit import AUDIT_FILE, RunVerdict
from safe_trpo.record.signoff import overall_state, signoff_states, verify_contained
from safe_trpo.record.verdict import Verdict, run_status, run_verdict
from safe_trpo.report.plots import current_updates

# The table builders and text helpers moved to frames.py; re-exported here so ``runs.<name>``
# (the app, the tests, the benchmark) keeps working unchanged.
from safe_trpo.review.frames import (  # noqa: F401
    UPDATE_NUMBERS,
    _constraints,
    backtest_frame,
    constraints_frame,
    evaluation_frames,
    events_frame,
    filter_frame,
    md,
    num,
    thin,
    updates_frame,
)

# How the list colours each integrity verdict; only "intact" means the record can be trusted.
INTEGRITY_LEVELS = {
    "intact": "good", "files changed": "bad", "tampered": "bad", "unreadable": "bad",
    "interrupted": "warn", "empty": "warn", "no audit": "warn",
}
SIGNOFF_LEVELS = {"approved": "good", "rejected": "bad", "needs changes": "warn",
                  "stale": "warn", "none": ""}



def reports_root(path: Path | str) -> Path:
    """The reports folder, resolved; ``UserError`` if it is not a folder."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"{path}: reports folder not found (expected a folder of run folders)")
    return root


SWEEPS_DIR = "sweeps"  # <reports>/sweeps/<id>/runs/<job>/<run folder>, made by `safe-trpo sweep`


def scan_run_ids(root: Path) -> list[str]:
    """Names of the run folders directly inside ``root``, plus the run folders of sweeps as
    ``sweeps/<id>/runs/<job>/<run>`` (hidden entries and links out skipped)."""
    ids = [name for name in _subfolders(root, root) if name != SWEEPS_DIR]
    sweeps = root / SWEEPS_DIR
    if sweeps.is_dir() and _inside(sweeps, root):
        for sweep in _subfolders(sweeps, root):
            jobs = sweeps / sweep / "runs"
            # ``runs`` is opened by name, not met as an entry: check it too (a link out of root).
            if not (jobs.is_dir() and _inside(jobs, root)):
                continue
            for job in _subfolders(jobs, root):
                for run in _subfolders(jobs / job, root):
                    ids.append(f"{SWEEPS_DIR}/{sweep}/runs/{job}/{run}")
    # Every id once more as a whole, whatever level a link sits at.
    return sorted(i for i in ids if _inside(root / i, root))


def _subfolders(folder: Path, root: Path) -> list[str]:
    names = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if entry.is_symlink() and not _inside(Path(entry.path), root):
                continue
            names.append(entry.name)
    return names


def _inside(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return resolved != root and resolved.is_relative_to(root)


def resolve_run(root: Path, run_id: str) -> Path:
    """The folder of run ``run_id``; refuses any name a scan of ``root`` did not find."""
    if not isinstance(run_id, str) or run_id not in scan_run_ids(root):
        raise UserError(f"unknown run {run_id!r}: no run folder of that name in {root}")
    path = root / run_id
    if not _inside(path, root):  # scan_run_ids already skips these; checked again on purpose
        raise UserError(f"run {run_id!r}: resolves outside {root}; refusing to read it")
    return path


def contained_file(run_dir: Path, rel: str) -> Path | None:
    """``run_dir/rel`` if it is a regular file that resolves inside the run folder, else None."""
    path = run_dir / rel
    return path if path.is_file() and path.resolve().is_relative_to(run_dir.resolve()) else None


@dataclass(frozen=True)
class RunSummary:
    """One row of the list of runs. ``problem`` is empty when the folder reads cleanly."""

    run_id: str
    env_id: str
    algo: str
    seed: int | None
    status: str  # completed | interrupted | failed (from run_finished) | not finished | unknown
    integrity: str  # a key of INTEGRITY_LEVELS
    verified: bool
    detail: str  # the verifier's one-line verdict
    updates: int
    env_steps: int | None
    last_return: float | None
    worst_margin_last: float | None  # min over constraints of margin, last update; <0 violated
    updates_violating: int  # updates in which any constraint's episode cost exceeded its limit
    signoff: str  # none | approved | rejected | needs changes | stale
    head_seq: int | None
    head_hash: str | None
    started: str
    problem: str
    verdict: Verdict | None = None  # the one verdict rule (record.verdict), as every reader uses

    @property
    def limits_at_end(self) -> str:
        """``within (evaluation)`` / ``OVER (end of training)`` / ``unknown (...)``, plus
        ``; training: N episodes over`` when training episodes went over a limit."""
        if self.verdict is None:
            return "unknown"
        lim = self.verdict.limits
        word = {True: "within", False: "OVER", None: "unknown"}[lim.within]
        # Never "within" alone while training episodes went over: say how many, in the cell.
        over = sum(c.over or 0 for c in self.verdict.training)
        bound = ">=" if any(c.note.startswith("at least") for c in self.verdict.training) else ""
        return f"{word} ({lim.basis})" + (f"; training: {bound}{over} episodes over"
                                          if over else "")

    @property
    def episodes_over(self) -> str:
        """Training episodes over each limit: ``runaway 3/480, temperature 0/480``."""
        if self.verdict is None or not self.verdict.training:
            return ""
        return ", ".join(
            f"{c.name} " + ("not recorded" if c.over is None else
                            f"{'>=' if c.note.startswith('at least') else ''}{c.over}"
                            + (f"/{c.episodes}" if c.episodes is not None else ""))
            for c in self.verdict.training)


def summaries_frame(summaries: list[RunSummary]) -> pd.DataFrame:
    """The list of runs as a table, one row per run, columns as the app shows them."""
    rows = [{
        "run": s.run_id, "scenario": s.env_id, "algorithm": s.algo, "status": s.status,
        "integrity": s.integrity, "limits at end": s.limits_at_end,
        "training episodes over limit": s.episodes_over,
        "worst margin, last update": s.worst_margin_last,
        "updates violating": s.updates_violating, "updates": s.updates,
        "sign-off": s.signoff, "started": s.started, "problem": s.problem,
    } for s in summaries]
    columns = ["run", "scenario", "algorithm", "status", "integrity", "limits at end",
               "training episodes over limit", "worst margin, last update", "updates violating",
               "updates", "sign-off", "started", "problem"]
    return pd.DataFrame(rows, columns=columns)



@dataclass(frozen=True)
class RunDetail:
    """A run as the review page needs it: the verdict now and the lines that verified."""

    run_id: str
    run_dir: Path
    verdict: RunVerdict | None  # None when there is no readable audit file
    lines: list[dict[str, Any]]
    integrity: str  # a key of INTEGRITY_LEVELS
    problem: str  # empty when the folder reads cleanly, else a message for the reviewer


def load_run(run_dir: Path, run_id: str | None = None) -> RunDetail:
    """Verify a run folder now and keep its verified lines; never raises on a bad folder.

    run_id: the id the scan gave the folder (``scan_run_ids``: its path relative to the reports
        folder); None means the folder's name, which is the id of a run directly in the root.
    """
    run_dir = Path(run_dir)
    run_id = run_dir.name if run_id is None else run_id
    audit = run_dir / AUDIT_FILE
    if not audit.exists():
        return RunDetail(run_id, run_dir, None, [], "no audit",
                         f"no {AUDIT_FILE}: not a run folder, or the run never started")
    try:
        verdict = verify_contained(run_dir)
    except (UserError, OSError, ValueError) as exc:
        return RunDetail(run_id, run_dir, None, [], "unreadable",
                         f"{AUDIT_FILE} cannot be read: {exc}")
    chain = verdict.chain
    if chain.status != "intact":
        integrity = chain.status
    else:
        integrity = "files changed" if verdict.file_problems else "intact"
    return RunDetail(run_id, run_dir, verdict, chain.lines, integrity,
                     _chain_problem(verdict))


def _chain_problem(verdict: RunVerdict) -> str:
    chain = verdict.chain
    if chain.status == "empty":
        return f"{AUDIT_FILE} is empty: the run never wrote its first line"
    if chain.status == "interrupted":
        return f"{chain.message}; the run was not resumed, so its record ends early"
    if chain.status == "tampered":
        return f"TAMPERED: {chain.message}; only the {chain.n_lines} lines before it are shown"
    if verdict.file_problems:
        return "files do not match the record: " + "; ".join(verdict.file_problems)
    if not chain.lines or chain.lines[0].get("type") != "run_started":
        return "the first line is not run_started: this is not a training run's record"
    if not scenario_of(chain.lines):
        return "run_started carries no scenario table: the run cannot be re-created from it"
    return ""


def scenario_of(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The resolved scenario from ``run_started`` (empty dict if absent or not a table)."""
    started = next((ln for ln in lines if ln.get("type") == "run_started"), {})
    scenario = started.get("scenario")
    return scenario if isinstance(scenario, dict) else {}


def _section(scenario: dict[str, Any], name: str) -> dict[str, Any]:
    value = scenario.get(name)
    return value if isinstance(value, dict) else {}


def summarize(detail: RunDetail) -> RunSummary:
    """Reduce a loaded run to its row in the list of runs."""
    lines = detail.lines
    scenario = scenario_of(lines)
    started = next((ln for ln in lines if ln.get("type") == "run_started"), {})
    updates = current_updates(lines)  # rows redone after a resume count once
    last = updates[-1] if updates else {}
    margins = [num(c.get("margin")) for c in _constraints(last)]
    margins = [m for m in margins if m is not None]
    violating = sum(any(c.get("violated") is True for c in _constraints(u)) for u in updates)
    verified = detail.verdict is not None and detail.verdict.ok
    head = lines[-1] if lines else {}
    seed = started.get("seed", _section(scenario, "run").get("seed"))
    status = run_status(lines, detail.integrity)[0]  # the record's own reading, as the verdict's
    states = signoff_states(lines, run_verified=verified)
    verdict = run_verdict(lines, detail.integrity, states) if detail.verdict else None
    if detail.integrity == "tampered":
        # What follows the bad line is unknown, so the last verified update is not "the last".
        status, margins = "unknown", []
    return RunSummary(
        run_id=detail.run_id,
        env_id=str(_section(scenario, "env").get("id", "?")),
        algo=str(_section(scenario, "algo").get("name", "?")),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        status=status, integrity=detail.integrity, verified=verified,
        detail=detail.verdict.summary if detail.verdict else detail.problem,
        updates=len(updates),
        env_steps=last.get("env_steps") if isinstance(last.get("env_steps"), int) else None,
        last_return=num(last.get("return_mean")),
        worst_margin_last=min(margins) if margins else None, updates_violating=violating,
        signoff=overall_state(states),
        head_seq=head.get("seq"), head_hash=head.get("hash"),
        started=str(started.get("time", "")), problem=detail.problem, verdict=verdict)



def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class RunCache:
    """Summaries of run folders, recomputed only when the audit file or a bound file changes.

    Safe to share between the app's sessions (threads): a lock guards the dict, and a summary
    is computed outside it.
    """

    def __init__(self) -> None:
        # run id -> (run folder, stamps, summary)
        self._entries: dict[str, tuple[Path, tuple, RunSummary]] = {}
        self._lock = threading.Lock()

    def _key(self, run_dir: Path, bound: tuple[str, ...]) -> tuple:
        # A bound path that leaves the run folder is not even stat'ed (verify reports it).
        return (_stamp(run_dir / AUDIT_FILE),
                tuple((rel, _stamp(f) if (f := contained_file(run_dir, rel)) else None)
                      for rel in bound))

    def summary(self, run_dir: Path, run_id: str | None = None) -> RunSummary:
        """The summary of ``run_dir``, whose scanned id is ``run_id`` (None: its name)."""
        run_dir = Path(run_dir)
        run_id = run_dir.name if run_id is None else run_id
        with self._lock:
            cached = self._entries.get(run_id)
        if cached is not None:
            cached_dir, key, summary = cached
            if cached_dir == run_dir and self._key(run_dir,
                                                   tuple(rel for rel, _ in key[1])) == key:
                return summary
        # Stamped before the read: if the trainer appends while we read, the stamp after differs
        # and the summary (of a mix of old and new) is shown once but not cached.
        before = _stamp(run_dir / AUDIT_FILE)
        detail = load_run(run_dir, run_id)
        bound = tuple(sorted({str(ln.get("path")) for ln in detail.lines
                              if ln.get("type") == "file"}))
        key = self._key(run_dir, bound)
        summary = summarize(detail)
        if before is not None and key[0] == before:
            with self._lock:
                self._entries[run_id] = (run_dir, key, summary)
        return summary

    def summaries(self, root: Path) -> list[RunSummary]:
        """Every run folder in ``root``, newest start first; drops folders that went away."""
        ids = scan_run_ids(root)
        with self._lock:
            for gone in set(self._entries) - set(ids):
                del self._entries[gone]
        out = [self.summary(root / run_id, run_id) for run_id in ids]
        return sorted(out, key=lambda s: (s.started, s.run_id), reverse=True)
