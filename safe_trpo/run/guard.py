"""What keeps a run folder whole: one writer at a time, signals that wait for a consistent state,
and write failures (a full disk) turned into one line that says how to continue.

``run_lock`` holds an exclusive ``flock`` on ``<run_dir>/run.lock`` for the life of a trainer.
The OS drops it when the process dies however it dies, so a crashed run never stays locked, and
a second ``resume`` of a live run is refused instead of interleaving its updates into the chain.

``Interrupts`` turns SIGINT and SIGTERM into ``KeyboardInterrupt``, except inside ``critical()``
(a policy update being applied and recorded), where the signal is held until the block ends: the
state the trainer then checkpoints is always one a whole number of updates produced.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safe_trpo.errors import UserError

LOCK_FILE = "run.lock"
# Errors that mean "the disk cannot take more", as opposed to a bug or a missing file.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s writer lock, or raise UserError if another process holds it."""
    path = Path(run_dir) / LOCK_FILE
    try:
        # O_NOFOLLOW: a received run folder could hold a symlink named run.lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise UserError(f"{path}: cannot open the run's lock file ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise UserError(f"{run_dir}: another safe-trpo process (pid {holder}) is training this "
                        f"run; wait for it to end or stop it, then resume") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is only for the message; a full disk must not stop the lock
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


class Interrupts:
    """SIGINT/SIGTERM as KeyboardInterrupt, held back while ``critical()`` runs."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._depth:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def hold(self) -> None:
        """Hold every further signal until the handlers are restored (final writes)."""
        self._depth += 1

    @contextmanager
    def critical(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending:
            self._pending = False
            raise KeyboardInterrupt


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def disk_full_error(run_dir: Path, exc: OSError, updates: int) -> UserError:
    """The one line a full disk ends in."""
    saved = (f"its last checkpoint holds {updates} updates" if updates
             else "no checkpoint yet, so resume restarts from update 0")
    return UserError(f"{run_dir}: cannot write to the run folder ({exc.strerror}); the record "
                     f"still verifies ({saved}); free space, then `safe-trpo resume {run_dir}`")
