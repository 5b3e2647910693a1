"""Ray actors as the workers of ``ParallelVectorEnv`` (``[env] backend = "ray"``).

Each actor owns one chunk of env copies (a ``Chunk``, exactly as a worker process does), so a
rollout is the same as with local processes. ``ray.init`` connects to the cluster named by
``RAY_ADDRESS`` when set, else starts a local instance. Every node must be able to read the
FMU at the path the scenario resolved (a shared file system, or a single machine), and to
import this package (the driver's ``PYTHONPATH`` is passed on to the actors).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from envs.fmu.chunk import Chunk, EnvFn, WorkerError, _portable
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


class _ChunkActor(Chunk):
    """A Chunk whose errors come back as picklable UserError / WorkerError."""

    def call(self, method: str, args: tuple) -> tuple[str, Any]:
        try:
            return "ok", getattr(self, method)(*args)
        except BaseException as exc:
            return "error", _portable(exc)


class RayExecutor:
    """One Ray actor (1 CPU) per chunk; a step calls every actor and waits for all."""

    def __init__(self, chunks: list[tuple[list[EnvFn], int]]) -> None:
        ray = _ray()
        self._ray = ray
        # One CPU per actor, or a fair share when asked for more actors than the cluster has
        # CPUs (whole CPUs would leave the extra actors waiting for ever).
        share = min(1.0, ray_cpus() / len(chunks))
        actor_class = ray.remote(num_cpus=share)(_ChunkActor)
        self.firsts = [first for _, first in chunks]
        try:
            self.actors = [actor_class.remote(fns, first) for fns, first in chunks]
            self.spaces = self._gather([a.call.remote("spaces", ()) for a in self.actors])[0]
        except BaseException:
            self.close()
            raise

    def call(self, method: str, args_per_chunk: list[tuple]) -> list[Any]:
        return self._gather([a.call.remote(method, args) for a, args in
                             zip(self.actors, args_per_chunk, strict=True)])

    def _gather(self, refs: list[Any]) -> list[Any]:
        ray = self._ray
        results = []
        for ref, first in zip(refs, self.firsts, strict=True):
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayActorError as exc:
                raise UserError(f"the Ray actor of env copies {first}+ died "
                                f"({type(exc).__name__}); an FMU's native code may have "
                                f"crashed") from None
            except ray.exceptions.RayTaskError as exc:  # the constructor raised
                cause = getattr(exc, "cause", None)
                if isinstance(cause, UserError):
                    raise UserError(str(cause)) from None
                raise WorkerError(f"env copies {first}+: {cause or exc}") from None
        for status, value in results:
            if status == "error":
                raise value
        return [value for _, value in results]

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            # an actor that already died has nothing left to close
            with contextlib.suppress(Exception):
                self._ray.get(actor.call.remote("close", ()))
            self._ray.kill(actor)
