"""Ray actors as the workers of ``ParallelVectorEnv`` (``[env] backend = "ray"``).

Each actor owns one chunk of env copies (a ``Chunk``, exactly as a worker process does), so a
rollout is the same as with local processes. Ray places the actors and owns their lifecycle; the
steps themselves travel over a direct TCP connection to each actor (``channel``), which serves
the same request loop as a worker process. Through Ray actor calls a step of 8 copies of a
trivial plant on 2 actors took 1.8-2.0 ms, over the channel 0.4-0.5 ms (``channel``): at 8
copies of a 1 ms plant that is 52-57 % against 78-85 % parallel efficiency on 2 cores
(``benchmarks/bench_fmu.py``). Where no connection can be opened (a cluster whose ports between
nodes are closed) the actor is stepped through Ray actor calls instead, with one warning.

``ray.init`` connects to the cluster named by ``RAY_ADDRESS`` when set, else starts a local
instance. Every node must be able to read the FMU at the path the scenario resolved (a shared
file system, or a single machine), and to import this package (the driver's ``PYTHONPATH`` is
passed on to the actors).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from multiprocessing import AuthenticationError
from typing import Any

from envs.fmu.channel import Peers, connect, listen_once
from envs.fmu.chunk import Chunk, EnvFn, _portable, handle, serve
from safe_trpo.errors import UserError


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("[env] backend = 'ray' needs the ray package (pip install ray)"
                        ) from None
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        # A local instance's workers inherit this process's environment; a cluster's do not,
        # so they get the PYTHONPATH that finds this package.
        runtime_env = ({"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}
                       if address and "PYTHONPATH" in os.environ else None)
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env=runtime_env)
    return ray


def ray_cpus() -> int:
    """CPUs of the Ray cluster: the default number of actors."""
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))


class ChunkActor:
    """A chunk of copies inside a Ray actor. A failing constructor is kept and answered to
    every request (as a worker process answers its first one), so a bad plant reaches the
    driver as its own error rather than as Ray's "actor died in its creation task"."""

    def __init__(self, env_fns: list[EnvFn], first: int) -> None:
        self._chunk: Chunk | None = None
        self._error: BaseException | None = None
        try:
            self._chunk = Chunk(env_fns, first)
        except BaseException as exc:
            self._error = _portable(exc)

    def call(self, method: str, args: tuple) -> tuple[str, Any]:
        """One request through Ray (the fallback path, and ``close``)."""
        if self._chunk is None:
            return "error", self._error
        return handle(self._chunk, method, args)

    def open_channel(self, authkey: bytes) -> tuple[str, Any]:
        """Listen on this node's address for the driver; the address, or the constructor's
        error. After the driver connects, the requests go over the channel only."""
        if self._chunk is None:
            return "error", self._error
        import ray

        chunk = self._chunk
        return "ok", listen_once(ray.util.get_node_ip_address(), authkey,
                                 lambda conn: serve(conn, chunk))

    def pid(self) -> int:
        """The actor's process id: a liveness probe, and for measuring its CPU time."""
        return os.getpid()


class ActorLink:
    """A Ray actor stepped through actor calls, shaped like a ``Connection`` for ``Peers``."""

    def __init__(self, ray: Any, actor: Any) -> None:
        self._ray, self._actor, self._ref = ray, actor, None
        self.lost: str | None = None  # what Ray said when the actor went away

    def send(self, request: tuple[str, tuple]) -> None:
        self._ref = self._actor.call.remote(*request)

    def recv(self) -> Any:
        try:
            return self._ray.get(self._ref)
        except self._ray.exceptions.RayActorError as exc:
            self.lost = type(exc).__name__
            raise EOFError(self.lost) from None

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self._ray.wait([self._ref], timeout=timeout)[0])

    def close(self) -> None:
        self._ref = None


class RayExecutor:
    """One Ray actor per chunk; a step sends to every actor and waits for all.

    ``direct`` says, per actor, whether it is reached over its own TCP channel (True) or
    through Ray actor calls (False, the fallback).
    """

    def __init__(self, chunks: list[tuple[list[EnvFn], int]]) -> None:
        ray = _ray()
        self._ray = ray
        # One CPU per actor, or a fair share when asked for more actors than the cluster has
        # CPUs (whole CPUs would leave the extra actors waiting for ever).
        share = min(1.0, ray_cpus() / len(chunks))
        actor_class = ray.remote(num_cpus=share)(ChunkActor)
        self.firsts = [first for _, first in chunks]
        self.actors: list[Any] = []
        self.peers: Peers | None = None
        try:
            self.actors = [actor_class.remote(fns, first) for fns, first in chunks]
            authkey = os.urandom(32)
            opened = self._get([a.open_channel.remote(authkey) for a in self.actors])
            self.peers = Peers(self._links(opened, authkey), self.firsts, self._died)
            self.spaces = self.peers.call("spaces", [()] * len(self.actors))[0]
        except BaseException:
            self.close()
            raise

    def _get(self, refs: list[Any]) -> list[Any]:
        """Answers of Ray calls (``("ok", value)`` / ``("error", exc)``); raises the first
        error after all have answered."""
        results = []
        for i, ref in enumerate(refs):
            try:
                results.append(self._ray.get(ref))
            except self._ray.exceptions.RayActorError as exc:
                raise UserError(self._died(i, type(exc).__name__)) from None
        for status, value in results:
            if status == "error":
                raise value
        return [value for _, value in results]

    def _links(self, addresses: list[tuple[str, int]], authkey: bytes) -> list[Any]:
        """A channel to each actor; Ray calls to those that cannot be reached, said once. A
        host that timed out is not tried again (each try would cost the whole timeout)."""
        links: list[Any] = []
        silent: set[str] = set()  # hosts whose connection timed out
        reasons = []
        for actor, (host, port) in zip(self.actors, addresses, strict=True):
            if host not in silent:
                try:
                    links.append(connect((host, port), authkey))
                    continue
                except (OSError, EOFError, AuthenticationError) as exc:
                    reasons.append(f"{host}:{port}: {type(exc).__name__}: {exc}")
                    if isinstance(exc, TimeoutError):
                        silent.add(host)
            links.append(ActorLink(self._ray, actor))
        self.direct = [not isinstance(link, ActorLink) for link in links]
        if reasons:
            more = f" and {len(reasons) - 2} more" if len(reasons) > 2 else ""
            warnings.warn(f"Ray backend: no direct connection to {self.direct.count(False)} of "
                          f"{len(links)} actors ({'; '.join(reasons[:2])}{more}); they are "
                          f"stepped through Ray actor calls, about 1-2 ms slower per step",
                          RuntimeWarning, stacklevel=2)
        return links

    def _died(self, i: int, detail: str | None = None) -> str:
        if detail is None:
            link = self.peers.links[i] if self.peers else None
            detail = getattr(link, "lost", None) or self._fate(i)
        return (f"the Ray actor of env copies {self.firsts[i]}+ died ({detail}); an FMU's "
                f"native code may have crashed")

    def _fate(self, i: int) -> str:
        """What Ray knows about actor ``i`` whose channel closed (it notices a dead process
        within moments)."""
        try:
            self._ray.get(self.actors[i].pid.remote(), timeout=10)
        except Exception as exc:
            return type(exc).__name__
        return "its connection closed"

    def call(self, method: str, args_per_chunk: list[tuple]) -> list[Any]:
        assert self.peers is not None
        return self.peers.call(method, args_per_chunk)

    def close(self) -> None:
        if self.peers is not None:
            self.peers.close()
        for actor in self.actors:
            with contextlib.suppress(Exception):  # an actor that died has nothing to kill
                self._ray.kill(actor)
