"""Tamper-evident audit record of a run: an append-only, hash-chained JSON-lines file.

The contract (DESIGN.md, "Audit record"): every line of ``audit.jsonl`` is one JSON object with
``seq`` (0, 1, 2, ...), ``type``, ``prev_hash`` and ``hash``. ``hash`` is the SHA-256 hex digest of
the object without ``hash``, serialised with ``canonical_json``; ``prev_hash`` is the previous
line's ``hash`` (64 zeros for seq 0). Lines are flushed and fsync'ed as they are written, so a
crash loses at most the line being written, and ``verify_chain`` reports such a cut-off last line
as an interruption rather than as tampering.

Files that belong to the run (checkpoints, the HTML report) are bound into the chain by ``file``
lines carrying their relative path and SHA-256, so ``verify_run`` can check them too.

Every append is also anchored in the run's ledger (``record.ledger``), outside the run folder:
``AuditLog`` refuses to open a chain that disagrees with its ledger, and ``record.anchor``
compares the two when verifying. ``verify_run`` here checks the folder alone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from safe_trpo.errors import UserError

# The chain format and its verification live in ``chain``; re-exported here, where writers and
# readers of a run have always found them.
from safe_trpo.record.chain import (  # noqa: F401
    AUDIT_FILE,
    GENESIS_HASH,
    WALL_CLOCK_FIELDS,
    ChainVerdict,
    RunVerdict,
    canonical_json,
    file_sha256,
    line_hash,
    read_lines,
    regular_file_sha256,
    to_jsonable,
    verify_chain_bytes,
    verify_run,
)
from safe_trpo.record.ledger import Ledger, default_ledger_url, open_ledger


class AuditLog:
    """Appends hash-chained lines to ``<run_dir>/audit.jsonl``.

    Opening an existing log continues its chain. A last line cut off by a crash is moved aside to
    ``audit.jsonl.cut-<seq>`` (kept, never deleted) and recorded in a ``tail_repaired`` line, so
    the chain stays verifiable and says what was removed from it. Complete lines at the end that
    the ledger never anchored (a crash between writing a line and committing its ledger entry,
    or lines someone appended by hand) are moved aside the same way: they never become anchored.

    run_dir: the run folder; its name is the run id in the ledger.
    ledger: an open ``Ledger``, a ledger URL, or None for the run's own: the ``[run] ledger`` of
        its recorded scenario if set, else ``ledger.sqlite`` beside the run folder (created only
        for a new run). Opening fails (UserError) if the ledger cannot be reached, or if it
        knows more lines than the file holds or different ones.
    """

    def __init__(self, run_dir: Path, ledger: Ledger | str | None = None) -> None:
        self.path = Path(run_dir) / AUDIT_FILE
        self.run_id = Path(run_dir).resolve().name
        self.next_seq = 0
        self.head_hash = GENESIS_HASH
        self.cut_tail: dict[str, Any] | None = None
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._own_ledger = not isinstance(ledger, Ledger)
        self.ledger = ledger if isinstance(ledger, Ledger) else open_ledger(
            ledger or run_ledger_url(Path(run_dir)), create=new)
        try:
            # Unbuffered: a failed write leaves nothing in a buffer to surface later.
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 (held open)
        except OSError:
            self._close_ledger()
            raise
        # Under the writers' lock a partial last line can only be a crash, never a live
        # writer's line in progress.
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        try:
            if os.fstat(self._file.fileno()).st_size:
                self._continue_existing()
            else:  # an empty file the ledger knows lines of was truncated to nothing
                self._match_ledger(verify_chain_bytes(b""))
            self._size = os.fstat(self._file.fileno()).st_size
        except BaseException:
            self._file.close()
            self._close_ledger()
            raise
        finally:
            if not self._file.closed:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        if self.cut_tail is not None:
            self.append("tail_repaired", cut_tail=self.cut_tail)

    def _continue_existing(self) -> None:
        data = self.path.read_bytes()
        verdict = verify_chain_bytes(data)
        if verdict.status == "tampered":
            raise UserError(f"{self.path}: cannot append to a broken chain: {verdict.message}")
        if verdict.status == "interrupted":
            keep = verdict.valid_bytes
            side = self._keep_aside(data[keep:], verdict.n_lines)
            os.ftruncate(self._file.fileno(), keep)
            os.fsync(self._file.fileno())
            self.cut_tail = {"file": side.name, "bytes": len(data) - keep,
                             "sha256": hashlib.sha256(data[keep:]).hexdigest()}
        self.next_seq = verdict.n_lines
        self.head_hash = verdict.head_hash
        self._match_ledger(verdict)

    def _match_ledger(self, verdict: ChainVerdict) -> None:
        """Refuse a chain the ledger contradicts; move aside complete lines it never anchored."""
        anchored = self.ledger.entries(self.run_id)
        where = f"{self.path}: ledger {self.ledger.url}"
        n = verdict.n_lines
        if not anchored and n:
            raise UserError(f"{where} does not know run {self.run_id!r}; it was written "
                            f"without this ledger (pass the one it was anchored in)")
        if len(anchored) > n:
            raise UserError(f"{where} anchors seq 0-{len(anchored) - 1} but the file verifies "
                            f"only to seq {n - 1}: line seq {n} on are missing (truncated)")
        for entry, line in zip(anchored, verdict.lines, strict=False):
            if entry.seq != line["seq"] or entry.line_hash != line["hash"]:
                raise UserError(f"{where}: line seq {line['seq']} differs from the anchored "
                                f"hash; the record was rewritten")
        if len(anchored) < n:
            keep = sum(len(canonical_json(ln)) + 1 for ln in verdict.lines[:len(anchored)])
            data = self.path.read_bytes()
            side = self._keep_aside(data[keep:], len(anchored))
            os.ftruncate(self._file.fileno(), keep)
            os.fsync(self._file.fileno())
            earlier = self.cut_tail
            self.cut_tail = {"file": side.name, "bytes": len(data) - keep,
                             "sha256": hashlib.sha256(data[keep:]).hexdigest(),
                             "unanchored_lines": n - len(anchored)}
            if earlier is not None:
                self.cut_tail["earlier"] = earlier
            self.next_seq = len(anchored)
            self.head_hash = anchored[-1].line_hash if anchored else GENESIS_HASH

    def _keep_aside(self, tail: bytes, seq: int) -> Path:
        """Save a crash-cut tail in a new file (never overwriting an earlier one)."""
        for k in range(1000):
            side = self.path.with_name(f"{AUDIT_FILE}.cut-{seq}" + (f".{k}" if k else ""))
            try:
                with open(side, "xb") as f:
                    f.write(tail)
                    f.flush()
                    os.fsync(f.fileno())
                return side
            except FileExistsError:
                continue
        raise UserError(f"{self.path}: cannot keep the cut-off tail aside")

    def append(self, type_: str, expect_head: tuple[int, str] | None = None,
               **fields: Any) -> dict[str, Any]:
        """Write one line, flushed and fsync'ed and anchored in the ledger before returning;
        returns the written object.

        An exclusive lock serialises writers (training, evaluation and a reviewer's sign-off may
        append to the same run); if another writer appended since our last line, the chain head
        is re-read first so the new line links to the true head.

        expect_head: (seq, hash) the new line must follow, checked under the lock; UserError
            (nothing written) if the chain has moved on, e.g. a second click on a sign-off.
        """
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        try:
            if os.fstat(self._file.fileno()).st_size != self._size:
                self._resync()
            if expect_head is not None and expect_head != (self.next_seq - 1, self.head_hash):
                raise UserError(f"{self.path}: the record now ends at seq {self.next_seq - 1}, "
                                f"not at the seq {expect_head[0]} expected; nothing written")
            obj = to_jsonable(dict(fields))
            obj.update({"seq": self.next_seq, "type": type_, "prev_hash": self.head_hash})
            obj.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            obj["hash"] = line_hash(obj)
            data = (canonical_json(obj) + "\n").encode("utf-8")
            # The ledger entry commits only once the line is on disk; a failed write or commit
            # takes the line back out, so file and ledger never disagree while we live.
            with self.ledger.recording(self.run_id, obj["seq"], obj["hash"], obj["prev_hash"]):
                try:
                    self._write_whole(data)
                except BaseException:
                    os.ftruncate(self._file.fileno(), self._size)  # also when the commit fails
                    raise
            self._size += len(data)
            self.next_seq += 1
            self.head_hash = obj["hash"]
            return obj
        finally:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    def _write_whole(self, data: bytes) -> None:
        """Append ``data`` durably, or leave the file exactly as it was and raise."""
        fd = self._file.fileno()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            # e.g. ENOSPC after part of the line: cut it back (truncation needs no space) so
            # the chain still verifies and the run can be resumed once space is freed.
            os.ftruncate(fd, self._size)
            raise

    def _resync(self) -> None:
        verdict = verify_chain_bytes(self.path.read_bytes())
        if not verdict.ok:
            raise UserError(f"{self.path}: another writer left the chain {verdict.status}: "
                            f"{verdict.message}")
        self.next_seq, self.head_hash, self._size = (verdict.n_lines, verdict.head_hash,
                                                     verdict.valid_bytes)

    def append_file(self, run_dir: Path, path: Path, role: str) -> dict[str, Any]:
        """Bind a file of the run (checkpoint, report) into the chain by its hash."""
        rel = Path(path).resolve().relative_to(Path(run_dir).resolve())
        return self.append("file", path=rel.as_posix(), role=role, sha256=file_sha256(path),
                           bytes=Path(path).stat().st_size)

    def close(self) -> None:
        self._file.close()
        self._close_ledger()

    def _close_ledger(self) -> None:
        if self._own_ledger:
            self.ledger.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_ledger_url(run_dir: Path) -> str:
    """The ledger a run is anchored in: its scenario's ``[run] ledger`` as recorded in the first
    line, else ``ledger.sqlite`` in the folder holding the run folder."""
    try:
        with open(Path(run_dir) / AUDIT_FILE, encoding="utf-8") as f:
            first = json.loads(f.readline() or "{}")
        url = first["scenario"]["run"]["ledger"]
    except (OSError, ValueError, KeyError, TypeError):
        url = ""
    return url if isinstance(url, str) and url else default_ledger_url(Path(run_dir).parent)
