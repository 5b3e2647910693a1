"""The ledger: an append-only table outside the run folder that anchors every chain line.

A hash chain alone cannot show that its last lines were deleted, nor that it was re-hashed from
some seq on: both leave a chain that verifies. The ledger records, for every line appended to a
run's ``audit.jsonl``, ``(run_id, seq, line_hash, prev_hash, recorded_at)`` plus its own
``ledger_seq``; ``verify`` compares the file with it. It is only as strong as the access control
around it: in production use PostgreSQL, where ``safe-trpo ledger init`` creates a role that may
only INSERT and SELECT (no UPDATE, DELETE or TRUNCATE), and give training that role.

URLs (``[run] ledger`` / ``--ledger``):
    ``""``                      the default: ``<out_dir>/ledger.sqlite`` beside the run folders
    ``path`` / ``sqlite:///p``  an SQLite file (created on first use by a new run)
    ``postgresql://u@host/db``  PostgreSQL (schema made by ``safe-trpo ledger init URL``). Keep
                                passwords out of URLs that go into a scenario (it is recorded):
                                use ``PGPASSWORD`` or ``~/.pgpass`` (libpq reads both).

Appends happen inside a transaction that commits only after the line is on disk (see
``AuditLog.append``), so a crash can leave at most one complete line in the file that the ledger
lacks, never a ledger entry without its line.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from safe_trpo.errors import UserError

DEFAULT_LEDGER_FILE = "ledger.sqlite"
GENESIS_HASH = "0" * 64
WRITER_ROLE = "safe_trpo_writer"

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_entries (
    ledger_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    line_hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (run_id, seq)
);
-- SQLite has no roles: these triggers stop accidents, not someone who can write the file.
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
"""

_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_entries (
    ledger_seq BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL CHECK (seq >= 0),
    line_hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (run_id, seq)
)
"""


@dataclass(frozen=True)
class LedgerEntry:
    """One anchored line: ``seq``/``line_hash``/``prev_hash`` as in the chain; ``recorded_at``
    is the ledger's own clock (not the writer's); ``ledger_seq`` the ledger's global order."""

    seq: int
    line_hash: str
    prev_hash: str
    recorded_at: str
    ledger_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "line_hash": self.line_hash, "prev_hash": self.prev_hash,
                "recorded_at": self.recorded_at, "ledger_seq": self.ledger_seq}


def display_url(url: str) -> str:
    """``url`` without a password (for messages and the record)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}" if user else netloc))


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def default_ledger_url(out_dir: Path) -> str:
    return str(Path(out_dir) / DEFAULT_LEDGER_FILE)


def check_ledger_setting(url: str, where: str) -> None:
    """Refuse a password inside a URL that would be written into the run record."""
    if is_postgres(url) and urlsplit(url).password is not None:
        raise UserError(f"{where}: the ledger URL contains a password, and the scenario is "
                        f"recorded in every run; use PGPASSWORD or ~/.pgpass instead")


def ledger_for_new_run(setting: str, out_dir: Path) -> str:
    """The URL a new run under ``out_dir`` anchors in, after checking it can be reached (and
    creating a missing SQLite file): training must not start without its ledger."""
    check_ledger_setting(setting, "[run] ledger")
    url = setting or default_ledger_url(out_dir)
    open_ledger(url, create=True).close()
    return url


class Ledger:
    """One interface over SQLite and PostgreSQL (see the module docstring)."""

    url: str

    def recording(self, run_id: str, seq: int, line_hash: str,
                  prev_hash: str) -> contextlib.AbstractContextManager[None]:
        """Insert an entry in a transaction that commits when the block exits normally.

        Refused (UserError) when (run_id, seq) is already anchored or ``prev_hash`` is not the
        anchored hash of seq - 1: the ledger is itself a chain per run.
        """
        raise NotImplementedError

    def entries(self, run_id: str) -> list[LedgerEntry]:
        """Every entry of ``run_id`` in seq order (empty if the run is unknown)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refuse(self, run_id: str, seq: int, why: str) -> UserError:
        return UserError(f"ledger {display_url(self.url)}: refused run {run_id!r} seq {seq}: "
                         f"{why}")


class SqliteLedger(Ledger):
    def __init__(self, path: Path, create: bool) -> None:
        self.url = str(path)
        if not create and not Path(path).is_file():
            raise UserError(f"ledger {path}: no such file; pass --ledger URL to name the "
                            f"ledger this run was anchored in")
        try:
            if create:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode, explicit BEGIN IMMEDIATE per append: one writer at a time, and
            # other processes (sweep workers) wait up to 30 s for the lock instead of failing.
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            if create:
                self._db.executescript(_SQLITE_SCHEMA)
            self._db.execute("SELECT 1 FROM ledger_entries LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise UserError(f"ledger {path}: cannot open it as a ledger ({exc})") from None

    @contextlib.contextmanager
    def recording(self, run_id: str, seq: int, line_hash: str, prev_hash: str) -> Iterator[None]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._refuse(run_id, seq, f"cannot lock the ledger ({exc})") from None
        try:
            _check_link(self, run_id, seq, prev_hash, self._hash_at(run_id, seq - 1),
                        self._hash_at(run_id, seq))
            db.execute("INSERT INTO ledger_entries (run_id, seq, line_hash, prev_hash) "
                       "VALUES (?, ?, ?, ?)", (run_id, seq, line_hash, prev_hash))
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._refuse(run_id, seq, f"commit failed ({exc})") from None

    def _hash_at(self, run_id: str, seq: int) -> str | None:
        row = self._db.execute("SELECT line_hash FROM ledger_entries WHERE run_id = ? AND "
                               "seq = ?", (run_id, seq)).fetchone()
        return row[0] if row else None

    def entries(self, run_id: str) -> list[LedgerEntry]:
        rows = self._db.execute("SELECT seq, line_hash, prev_hash, recorded_at, ledger_seq "
                                "FROM ledger_entries WHERE run_id = ? ORDER BY seq",
                                (run_id,)).fetchall()
        return [LedgerEntry(*row) for row in rows]

    def close(self) -> None:
        self._db.close()


class PostgresLedger(Ledger):
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            import psycopg
        except ImportError:  # pragma: no cover - psycopg is a dependency
            raise UserError("a PostgreSQL ledger needs psycopg: pip install "
                            "'psycopg[binary]'") from None
        self._errors = psycopg.Error
        try:
            self._db = psycopg.connect(url, connect_timeout=10, autocommit=True)
            self._db.execute("SELECT 1 FROM ledger_entries LIMIT 1").fetchall()
        except psycopg.errors.UndefinedTable:
            raise UserError(f"ledger {display_url(url)}: no ledger_entries table; create it "
                            f"with: safe-trpo ledger init URL") from None
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"ledger {display_url(url)}: cannot reach it ({first})") from None

    @contextlib.contextmanager
    def recording(self, run_id: str, seq: int, line_hash: str, prev_hash: str) -> Iterator[None]:
        try:
            tx = self._db.transaction()
            tx.__enter__()
        except self._errors as exc:
            raise self._refuse(run_id, seq, str(exc).strip()) from None
        try:
            _check_link(self, run_id, seq, prev_hash, self._hash_at(run_id, seq - 1),
                        self._hash_at(run_id, seq))
            self._db.execute("INSERT INTO ledger_entries (run_id, seq, line_hash, prev_hash) "
                             "VALUES (%s, %s, %s, %s)", (run_id, seq, line_hash, prev_hash))
            yield
        except BaseException as exc:
            tx.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, self._errors):
                raise self._refuse(run_id, seq, str(exc).strip()) from None
            raise
        try:
            tx.__exit__(None, None, None)
        except self._errors as exc:  # e.g. a concurrent insert of the same seq
            raise self._refuse(run_id, seq, str(exc).strip()) from None

    def _hash_at(self, run_id: str, seq: int) -> str | None:
        row = self._db.execute("SELECT line_hash FROM ledger_entries WHERE run_id = %s AND "
                               "seq = %s", (run_id, seq)).fetchone()
        return row[0] if row else None

    def entries(self, run_id: str) -> list[LedgerEntry]:
        rows = self._db.execute(
            "SELECT seq, line_hash, prev_hash, "
            "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
            "ledger_seq FROM ledger_entries WHERE run_id = %s ORDER BY seq", (run_id,)).fetchall()
        return [LedgerEntry(*row) for row in rows]

    def close(self) -> None:
        self._db.close()


def _check_link(ledger: Ledger, run_id: str, seq: int, prev_hash: str, previous: str | None,
                existing: str | None) -> None:
    if existing is not None:
        raise ledger._refuse(run_id, seq, "that seq is already anchored (a second writer, or a "
                                          "run folder of the same name)")
    expected = GENESIS_HASH if seq == 0 else previous
    if expected is None:
        raise ledger._refuse(run_id, seq, f"seq {seq - 1} is not anchored")
    if prev_hash != expected:
        raise ledger._refuse(run_id, seq, f"prev_hash does not match the anchored seq "
                                          f"{seq - 1}")


def open_ledger(url: str, create: bool = False) -> Ledger:
    """Open the ledger at ``url``; ``create`` makes a missing SQLite file (never PostgreSQL's
    schema: that is ``init_ledger``'s, run by an administrator)."""
    if is_postgres(url):
        return PostgresLedger(url)
    # sqlite:///rel/path and sqlite:////abs/path as SQLAlchemy spells them, or a plain path.
    return SqliteLedger(Path(url.removeprefix("sqlite:///")), create)


def init_ledger(url: str, role: str = WRITER_ROLE) -> list[str]:
    """Create the schema (and, for PostgreSQL, an insert-and-read-only role); returns what was
    done, one line each. Run as the database owner; idempotent."""
    if not is_postgres(url):
        open_ledger(url, create=True).close()
        return [f"SQLite ledger ready at {url} (no roles: protect it with file permissions)"]
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as db:
            db.execute(_PG_SCHEMA)
            exists = db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if not exists:
                db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            db.execute("REVOKE ALL ON ledger_entries FROM PUBLIC")
            db.execute(sql.SQL("REVOKE ALL ON ledger_entries FROM {}").format(
                sql.Identifier(role)))
            db.execute(sql.SQL("GRANT SELECT, INSERT ON ledger_entries TO {}").format(
                sql.Identifier(role)))
            db.execute(sql.SQL("GRANT USAGE ON SEQUENCE ledger_entries_ledger_seq_seq TO {}")
                       .format(sql.Identifier(role)))
    except psycopg.Error as exc:
        raise UserError(f"ledger init {display_url(url)}: {str(exc).strip()}") from None
    return [f"table ledger_entries ready at {display_url(url)}",
            f"role {role}: SELECT, INSERT on ledger_entries, USAGE on its sequence; no UPDATE, "
            f"DELETE or TRUNCATE (give it a password or certificate: ALTER ROLE {role} ...)"]
