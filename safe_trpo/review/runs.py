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

import math
import os
import string
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from safe_trpo.audit import AUDIT_FILE, RunVerdict
from safe_trpo.errors import UserError
from safe_trpo.report_plots import current_updates
from safe_trpo.review.signoff import overall_state, signoff_states, verify_contained

# How the list colours each integrity verdict; only "intact" means the record can be trusted.
INTEGRITY_LEVELS = {
    "intact": "good", "files changed": "bad", "tampered": "bad", "unreadable": "bad",
    "interrupted": "warn", "empty": "warn", "no audit": "warn",
}
SIGNOFF_LEVELS = {"approved": "good", "rejected": "bad", "needs changes": "warn",
                  "stale": "warn", "none": ""}


def num(value: Any) -> float | None:
    """A finite float from a log value, else None (missing, null, bool, text, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# Every ASCII punctuation character may be backslash-escaped in CommonMark, and escaping all of
# them also defuses Streamlit's extensions ($ math, :color[...] directives, bare-URL autolinks).
_MD_SPECIAL = frozenset(string.punctuation)


def md(text: Any) -> str:
    """``text`` (from the audit log, a path, the address) made literal for Streamlit markdown.

    Newlines become spaces: every use is a one-line message, and a line break would let the text
    start a heading, list or code block of its own.
    """
    flat = " ".join(str(text).splitlines())
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in flat)


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


def run_status(lines: list[dict[str, Any]]) -> str:
    """``run_finished``'s status if the run ended (after its last start/resume), else why not."""
    status = "unknown"
    for line in lines:
        kind = line.get("type")
        if kind in ("run_started", "resumed"):
            status = "not finished"
        elif kind == "run_finished":
            status = str(line.get("status", "finished"))
    return status


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
    status = run_status(lines)
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
        signoff=overall_state(signoff_states(lines, run_verified=verified)),
        head_seq=head.get("seq"), head_hash=head.get("hash"),
        started=str(started.get("time", "")), problem=detail.problem)


def _constraints(line: dict[str, Any]) -> list[dict[str, Any]]:
    value = line.get("constraints")
    return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []


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


def summaries_frame(summaries: list[RunSummary]) -> pd.DataFrame:
    """The list of runs as a table, one row per run, columns as the app shows them."""
    rows = [{
        "run": s.run_id, "scenario": s.env_id, "algorithm": s.algo, "status": s.status,
        "integrity": s.integrity,
        "worst margin, last update": s.worst_margin_last,
        "updates violating": s.updates_violating, "updates": s.updates,
        "sign-off": s.signoff, "started": s.started, "problem": s.problem,
    } for s in summaries]
    columns = ["run", "scenario", "algorithm", "status", "integrity",
               "worst margin, last update", "updates violating", "updates", "sign-off",
               "started", "problem"]
    return pd.DataFrame(rows, columns=columns)


def filter_frame(frame: pd.DataFrame, query: str) -> pd.DataFrame:
    """Rows where every word of ``query`` appears (any case) in one of the text columns."""
    words = query.casefold().split()
    if not words or frame.empty:
        return frame
    text = frame.astype(str).agg(" ".join, axis=1).str.casefold()
    mask = pd.Series(True, index=frame.index)
    for word in words:
        mask &= text.str.contains(word, regex=False)
    return frame[mask]


# --- tables for the review and comparison pages -------------------------------------------

UPDATE_NUMBERS = ["update", "env_steps", "kl", "target_kl", "backtracks", "return_mean",
                  "episodes", "lambda", "solve_time_ms", "value_loss"]


def updates_frame(lines: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per ``update`` line; missing or malformed values are NaN/None, never 0."""
    rows = []
    for ln in lines:
        if ln.get("type") != "update":
            continue
        cpo = ln.get("cpo") if isinstance(ln.get("cpo"), dict) else {}
        row = {k: num(ln.get(k)) for k in UPDATE_NUMBERS}
        row.update({"seq": ln.get("seq"), "lambda": num(cpo.get("lambda")),
                    "solve_time_ms": num(cpo.get("solve_time_ms")),
                    "accepted": ln.get("accepted") if isinstance(ln.get("accepted"), bool)
                    else None,
                    "case": cpo.get("case"), "solver_status": cpo.get("solver_status")})
        rows.append(row)
    columns = ["seq", *UPDATE_NUMBERS, "accepted", "case", "solver_status"]
    frame = pd.DataFrame(rows, columns=columns)
    for col in UPDATE_NUMBERS:
        frame[col] = pd.to_numeric(frame[col])
    frame["kl_over_target"] = frame["kl"] > frame["target_kl"]
    return frame


def constraints_frame(lines: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (update, constraint): limit, ep_cost, violated, margin, nu."""
    rows = []
    for ln in lines:
        if ln.get("type") != "update":
            continue
        for c in _constraints(ln):
            violated = c.get("violated")
            rows.append({"update": num(ln.get("update")), "constraint": str(c.get("name", "?")),
                         "limit": num(c.get("limit")), "ep_cost": num(c.get("ep_cost")),
                         "violated": violated if isinstance(violated, bool) else None,
                         "margin": num(c.get("margin")), "nu": num(c.get("nu"))})
    frame = pd.DataFrame(rows, columns=["update", "constraint", "limit", "ep_cost", "violated",
                                        "margin", "nu"])
    for col in ("update", "limit", "ep_cost", "margin", "nu"):
        frame[col] = pd.to_numeric(frame[col])
    return frame


def _label(line: dict[str, Any], default: str) -> str:
    for key in ("policy", "controller", "label", "name"):
        if isinstance(line.get(key), str):
            return line[key]
    return default


def evaluation_frames(lines: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per ``evaluation`` line, one row per evaluated constraint)."""
    evals, costs = [], []
    for ln in lines:
        if ln.get("type") != "evaluation":
            continue
        label = _label(ln, "trained policy")
        evals.append({"seq": ln.get("seq"), "controller": label, "episodes": ln.get("episodes"),
                      "seed": ln.get("seed"), "deterministic": ln.get("deterministic"),
                      "return_mean": num(ln.get("return_mean")),
                      "return_std": num(ln.get("return_std"))})
        for c in _constraints(ln):
            mean, limit = num(c.get("ep_cost_mean")), num(c.get("limit"))
            costs.append({"seq": ln.get("seq"), "controller": label,
                          "constraint": str(c.get("name", "?")), "limit": limit,
                          "ep_cost_mean": mean, "ep_cost_max": num(c.get("ep_cost_max")),
                          "frac_over_limit": num(c.get("frac_over_limit")),
                          "mean over limit": None if mean is None or limit is None
                          else mean > limit})
    return pd.DataFrame(evals), pd.DataFrame(costs)


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics, with one level of tables spread out (``breach_days.<limit>``)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in _scalars(v).items() if "." not in kk})
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
    return out


def backtest_frame(line: dict[str, Any]) -> pd.DataFrame:
    """A ``backtest`` line as one row per controller (the policy, then each baseline).

    ``safe-trpo backtest`` writes ``policy`` (the run folder as given), ``metrics`` (its
    figures) and ``baselines`` ({name: figures}); a ``policy`` table of figures is read too.
    """
    rows = []
    policy = line.get("policy")
    own = policy if isinstance(policy, dict) else line.get("metrics")
    if isinstance(own, dict):
        label = policy if isinstance(policy, str) else "trained policy"
        rows.append({"controller": label, **_scalars(own)})
    baselines = line.get("baselines")
    if isinstance(baselines, dict):
        items = list(baselines.items())
    elif isinstance(baselines, list):
        items = [(_label(b, f"baseline {i}"), b) for i, b in enumerate(baselines)]
    else:
        items = []
    rows += [{"controller": str(name), **_scalars(m)} for name, m in items if isinstance(m, dict)]
    if not rows:  # metrics at the top level of the line
        chain_fields = {"seq", "type", "prev_hash", "hash", "time"}
        rows.append({"controller": _label(line, "trained policy"),
                     **_scalars({k: v for k, v in line.items() if k not in chain_fields})})
    return pd.DataFrame(rows)


def events_frame(lines: list[dict[str, Any]]) -> pd.DataFrame:
    """Every line that is not an ``update``: starts, resumes, NaNs, files, results, sign-offs."""
    rows = []
    for ln in lines:
        kind = ln.get("type")
        if kind == "update":
            continue
        details = {k: v for k, v in ln.items()
                   if k not in ("seq", "type", "prev_hash", "hash", "time", "scenario",
                                "versions")}
        rows.append({"seq": ln.get("seq"), "type": kind, "time": ln.get("time"),
                     "details": ", ".join(f"{k}={v}" for k, v in details.items())[:300]})
    return pd.DataFrame(rows, columns=["seq", "type", "time", "details"])


def thin(frame: pd.DataFrame, keep: pd.Series, max_points: int = 2000) -> pd.DataFrame:
    """Every k-th row so that at most ~max_points remain, plus every row where ``keep`` is True.

    For charts of long runs: the browser stays fast and no flagged point (a violation, a KL
    over target) is ever dropped.
    """
    step = max(1, math.ceil(len(frame) / max_points))
    if step == 1:
        return frame
    regular = pd.Series(range(len(frame)), index=frame.index) % step == 0
    return frame[regular | keep.fillna(False).astype(bool)]
