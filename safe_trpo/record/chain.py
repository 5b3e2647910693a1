"""The hash chain of ``audit.jsonl`` and its verification, without writing anything.

The contract (DESIGN.md, "Audit record"): every line is one JSON object with ``seq`` (0, 1, 2,
...), ``type``, ``prev_hash`` and ``hash``. ``hash`` is the SHA-256 hex digest of the object
without ``hash``, serialised with ``canonical_json``; ``prev_hash`` is the previous line's
``hash`` (64 zeros for seq 0). ``verify_chain_bytes`` reports a cut-off last line as an
interruption rather than as tampering; ``verify_run`` checks the chain and every file a ``file``
line binds (never through a symbolic link). Writing is ``audit.AuditLog``'s.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safe_trpo.errors import UserError

AUDIT_FILE = "audit.jsonl"
GENESIS_HASH = "0" * 64
# Fields whose values depend on the wall clock or the machine's speed; reproducibility checks
# compare audit rows with these removed.
WALL_CLOCK_FIELDS = frozenset({"time", "wall_s", "solve_time_ms", "steps_per_s", "elapsed_s"})


def canonical_json(obj: dict[str, Any]) -> str:
    """The exact serialisation the hash is computed over (DESIGN.md)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def line_hash(obj: dict[str, Any]) -> str:
    """SHA-256 hex of ``obj`` without its ``hash`` key."""
    body = {k: v for k, v in obj.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def regular_file_sha256(path: Path) -> str | None:
    """SHA-256 of ``path`` if it is a regular file and not a symbolic link, else None.

    For files of a received run folder: a link could point anywhere (a secret to fingerprint,
    /dev/zero to hang the reader), so it is never followed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        digest = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()


def to_jsonable(value: Any) -> Any:
    """Plain JSON types only; non-finite floats become None (JSON has no NaN).

    Callers that can produce NaN record that fact explicitly (a ``nan_detected`` line), so the
    None here never hides a NaN silently.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return to_jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class ChainVerdict:
    """Outcome of checking a chain. ``status``: intact | interrupted | tampered | empty."""

    status: str
    n_lines: int  # lines that verified
    head_hash: str  # hash of the last verified line
    valid_bytes: int  # byte length of the verified prefix
    first_bad_seq: int | None = None
    message: str = ""
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "intact"


def verify_chain_bytes(data: bytes) -> ChainVerdict:
    """Check seq order, prev_hash and hash of every line; stop at the first bad one."""
    lines: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    offset = 0
    raw_lines = data.split(b"\n")
    complete = raw_lines[:-1]  # everything before the final newline
    tail = raw_lines[-1]

    def verdict(status: str, seq: int | None, msg: str) -> ChainVerdict:
        return ChainVerdict(status, len(lines), prev, offset, seq, msg, lines)

    for i, raw in enumerate(complete):
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return verdict("tampered", i, f"line seq {i}: not valid JSON ({exc})")
        if obj.get("seq") != i:
            return verdict("tampered", i, f"line seq {i}: seq is {obj.get('seq')!r}, expected {i}")
        if obj.get("prev_hash") != prev:
            previous = f"line {i - 1}" if i else "the genesis value (64 zeros)"
            return verdict("tampered", i, f"line seq {i}: prev_hash does not match {previous}")
        if obj.get("hash") != line_hash(obj):
            return verdict("tampered", i, f"line seq {i}: hash does not match its content")
        if raw != canonical_json(obj).encode("utf-8"):
            # Same parsed object, different bytes (spacing, key order, a duplicate key that
            # json.loads drops): still an edit of the line, and other readers may see it.
            return verdict("tampered", i, f"line seq {i}: bytes are not the canonical "
                                          f"serialisation of the hashed object")
        lines.append(obj)
        prev = obj["hash"]
        offset += len(raw) + 1
    if tail:
        # No final newline: the writer died before finishing the line (a crash). The bytes are
        # not trusted as a line even if they parse.
        return verdict("interrupted", len(lines),
                       f"line seq {len(lines)}: cut off (crash while writing); "
                       f"{len(lines)} earlier lines verified")
    if not lines:
        return verdict("empty", None, "audit log is empty")
    return verdict("intact", None, f"{len(lines)} lines verified")


@dataclass
class RunVerdict:
    """Chain verdict plus the state of the files bound into it."""

    chain: ChainVerdict
    file_problems: list[str]
    finished: bool

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.file_problems

    @property
    def summary(self) -> str:
        if not self.chain.ok:
            return f"{self.chain.status.upper()}: {self.chain.message}"
        if self.file_problems:
            return f"FILES DO NOT MATCH: {self.file_problems[0]}"
        state = "finished" if self.finished else "not finished"
        return f"INTACT: {self.chain.message}; all recorded files match; run {state}"


def verify_run(run_dir: Path) -> RunVerdict:
    """Verify a run folder: the chain, then each file's latest recorded hash."""
    run_dir = Path(run_dir)
    path = run_dir / AUDIT_FILE
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no {AUDIT_FILE})")
    chain = verify_chain_bytes(path.read_bytes())
    latest: dict[str, dict[str, Any]] = {}
    problems = []
    root = run_dir.resolve()
    for line in chain.lines:
        if line.get("type") != "file":
            continue
        rel = line.get("path")
        if not isinstance(rel, str) or not isinstance(line.get("sha256"), str) \
                or not (root / rel).resolve().is_relative_to(root):
            problems.append(f"line seq {line['seq']}: file record without a path inside the "
                            f"run folder and a sha256")
            continue
        latest[rel] = line
    for rel, line in latest.items():
        target = run_dir / rel
        digest = regular_file_sha256(target)
        if target.is_symlink():
            problems.append(f"{rel}: is a symbolic link (not followed; recorded at seq "
                            f"{line['seq']} as a file)")
        elif digest is None:
            problems.append(f"{rel}: recorded at seq {line['seq']} but missing")
        elif digest != line["sha256"]:
            problems.append(f"{rel}: changed since recorded at seq {line['seq']}")
    finished = any(line.get("type") == "run_finished" for line in chain.lines)
    return RunVerdict(chain, problems, finished)


def read_lines(run_dir: Path) -> list[dict[str, Any]]:
    """Every parseable line of a run's audit log, tolerant of a cut-off tail (for display)."""
    out = []
    with open(Path(run_dir) / AUDIT_FILE, encoding="utf-8", errors="replace") as f:
        for raw in f:
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):
                break
            if isinstance(obj, dict):
                out.append(obj)
    return out
