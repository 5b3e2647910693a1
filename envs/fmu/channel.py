"""The driver's side of the worker protocol (``Peers``) and the direct TCP channel to a Ray
actor (``listen_once`` in the actor, ``connect`` in the driver).

``Peers`` sends one request to each of N workers and gathers the N answers, for worker
processes (pipes) and Ray actors (a TCP connection, or Ray actor calls when none can be
opened) alike, so a dead worker gives the same clear error on every backend.

The channel exists for speed: through Ray actor calls a step of 8 copies of a trivial plant on 2
actors took 1.8-2.0 ms (1.1 ms of it the driver's CPU in Ray's machinery), as much as the plant
steps it carries; over a plain socket it took 0.4-0.5 ms, what a pipe costs. It is a
``multiprocessing.connection`` ``Connection`` authenticated both ways with a random per-executor
key (HMAC challenges, before anything is unpickled), and every wait on it has a deadline, so a
closed or firewalled port means a fallback to Ray calls, never a hang.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import (
    Connection,
    answer_challenge,
    deliver_challenge,
)
from typing import Any, Protocol

from safe_trpo.errors import UserError

CONNECT_TIMEOUT_S = 5.0  # TCP connect and each read of the handshake
LISTEN_TIMEOUT_S = 120.0  # an actor waits this long for its driver, then closes the port


class Link(Protocol):
    """One worker as the driver sees it: the subset of ``Connection`` that ``Peers`` uses."""

    def send(self, obj: Any) -> None: ...
    def recv(self) -> Any: ...
    def poll(self, timeout: float = 0.0) -> bool: ...
    def close(self) -> None: ...


class Peers:
    """N workers: one request to each, then every answer gathered in order.

    Args:
        links: one ``Link`` per chunk of copies.
        firsts: the index of each chunk's first copy (for the messages).
        died: chunk index -> the one-line message for a worker that went away (its exit code,
            or what Ray says about the actor).
    """

    def __init__(self, links: Sequence[Link], firsts: Sequence[int],
                 died: Callable[[int], str]) -> None:
        self.links, self.firsts, self._died = list(links), list(firsts), died

    def call(self, method: str, args_per_chunk: Sequence[tuple]) -> list[Any]:
        for i, (link, args) in enumerate(zip(self.links, args_per_chunk, strict=True)):
            try:
                link.send((method, args))
            except (OSError, EOFError):  # the worker is gone; its pipe or socket is closed
                raise UserError(self._died(i)) from None
        return self.gather()

    def gather(self) -> list[Any]:
        """Every worker's answer; a worker's error is raised only after all have answered,
        so the links stay in step for the next request."""
        results, error = [], None
        for i, link in enumerate(self.links):
            try:
                status, value = link.recv()
            except (EOFError, OSError):
                raise UserError(self._died(i)) from None
            if status == "error" and error is None:
                error = value
            results.append(value)
        if error is not None:
            raise error
        return results

    def close(self, timeout: float = 5.0) -> None:
        """Ask every worker to close its envs and wait at most ``timeout`` seconds in all for
        the answers: a worker stuck in native code must not hang the caller."""
        for link in self.links:
            with contextlib.suppress(Exception):
                link.send(("close", ()))
        deadline = time.monotonic() + timeout
        for link in self.links:
            with contextlib.suppress(Exception):
                if link.poll(max(0.0, deadline - time.monotonic())):
                    link.recv()
            with contextlib.suppress(Exception):
                link.close()


def _io_timeout(fd: int, seconds: float) -> None:
    """Bound each blocking read and write on socket ``fd`` (0: no bound). ``Connection`` reads
    its file descriptor directly, so a Python socket timeout would not apply."""
    if sys.platform == "win32":
        value = struct.pack("L", int(seconds * 1000))
    else:
        value = struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))
    sock = socket.socket(fileno=fd)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    finally:
        sock.detach()  # the Connection owns the descriptor


def _handshake(sock: socket.socket, authkey: bytes, server: bool) -> Connection:
    """The connected ``sock`` as an authenticated ``Connection`` (both sides prove the key, as
    ``multiprocessing.connection`` Listener and Client do); raises on a wrong key or silence."""
    sock.setblocking(True)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small messages, no batching
    conn = Connection(sock.detach())
    try:
        _io_timeout(conn.fileno(), CONNECT_TIMEOUT_S)
        if server:
            deliver_challenge(conn, authkey)
            answer_challenge(conn, authkey)
        else:
            answer_challenge(conn, authkey)
            deliver_challenge(conn, authkey)
        _io_timeout(conn.fileno(), 0.0)
    except BaseException:
        conn.close()
        raise
    return conn


def connect(address: tuple[str, int], authkey: bytes,
            timeout: float = CONNECT_TIMEOUT_S) -> Connection:
    """The driver's end of the channel to an actor listening at ``address``. Raises
    ``OSError`` (refused, unreachable, timed out) or ``AuthenticationError`` within about
    ``timeout`` seconds per step."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        return _handshake(sock, authkey, server=False)
    except BaseException:
        sock.close()
        raise


def listen_once(host: str, authkey: bytes, serve: Callable[[Connection], None],
                timeout: float = LISTEN_TIMEOUT_S) -> tuple[str, int]:
    """Listen on ``host`` (a free port) and return the address; a daemon thread accepts
    connections until one proves ``authkey``, closes the port and runs ``serve`` on it. A
    connection with a wrong key (or none within the handshake's deadline) is dropped and the
    port stays open for the driver; after ``timeout`` seconds without one the port closes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.create_server((host, 0), family=family)
    address = server.getsockname()[:2]
    threading.Thread(target=_accept, args=(server, authkey, serve, timeout), daemon=True,
                     name="fmu-channel").start()
    return address


def _accept(server: socket.socket, authkey: bytes, serve: Callable[[Connection], None],
            timeout: float) -> None:
    deadline = time.monotonic() + timeout
    conn = None
    with server:
        while conn is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            server.settimeout(left)
            try:
                sock, _ = server.accept()
            except OSError:  # the deadline passed (socket.timeout) or the port was closed
                return
            try:
                conn = _handshake(sock, authkey, server=True)
            except Exception:  # a wrong key, a stranger, silence: not our driver
                sock.close()
    serve(conn)
