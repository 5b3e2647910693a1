"""A vector env whose copies run in worker processes (or Ray actors), SAME_STEP autoreset.

The N copies are split into W contiguous chunks, one per worker; a step sends each worker its
chunk of actions, every worker steps its copies (resetting a finished copy inside the same
step), and the results are assembled exactly as ``gymnasium.vector.SyncVectorEnv`` with
``AutoresetMode.SAME_STEP`` assembles them (``final_obs`` / ``final_info`` for finished copies,
their reset info at the top level). Unlike ``AsyncVectorEnv`` (one process per copy) a worker
holds many copies, so 64 copies of a slow plant run on as many workers as there are cores.

A step costs the driver a few array joins per worker (``chunk`` answers one batch per chunk,
``batch`` builds the infos in one go), not a tuple and an ``_add_info`` call per copy: the
workers wait while the driver works.

Seeding follows SyncVectorEnv: ``reset(seed=s)`` seeds copy i with ``s + i``. Each copy owns its
generator, so the rollout is the same whatever the backend and the number of workers.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.fmu.batch import vector_infos
from envs.fmu.channel import Peers
from envs.fmu.chunk import Chunk, EnvFn, _portable, serve
from safe_trpo.errors import UserError


def _worker(conn: Any, env_fns: Sequence[EnvFn], first: int, cpu: int | None) -> None:
    if cpu is not None:
        with contextlib.suppress(OSError):  # a CPU taken away meanwhile: run unpinned
            os.sched_setaffinity(0, {cpu})
    try:
        chunk = Chunk(env_fns, first)
    except BaseException as exc:  # the answer to the driver's first request: why it failed
        conn.send(("error", _portable(exc)))
        conn.close()
        return
    serve(conn, chunk)


class ProcessExecutor:
    """Chunks in worker processes started with ``forkserver`` where the platform has it (no
    fork of a threaded parent such as torch), else ``spawn``; a pipe to each."""

    def __init__(self, chunks: list[tuple[list[EnvFn], int]],
                 cpus: list[int] | None = None) -> None:
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        self.procs: list[Any] = []
        conns = []
        for i, (fns, first) in enumerate(chunks):
            parent, child = ctx.Pipe()
            cpu = None if cpus is None else cpus[i]
            proc = ctx.Process(target=_worker, args=(child, fns, first, cpu), daemon=True)
            proc.start()
            child.close()
            conns.append(parent)
            self.procs.append(proc)
        self.peers = Peers(conns, [first for _, first in chunks], self._died)
        try:
            self.spaces = self.peers.call("spaces", [()] * len(chunks))[0]
        except BaseException:
            self.close()  # the workers that did start must not linger
            raise

    def _died(self, i: int) -> str:
        proc = self.procs[i]
        proc.join(timeout=5)
        return (f"the worker process of env copies {self.peers.firsts[i]}+ died (exit code "
                f"{proc.exitcode}); an FMU's native code may have crashed")

    def call(self, method: str, args_per_chunk: list[tuple]) -> list[Any]:
        return self.peers.call(method, args_per_chunk)

    def close(self) -> None:
        self.peers.close()
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


def worker_cpus(workers: int) -> list[int] | None:
    """One CPU for each worker process when there are exactly as many workers as CPUs this
    process may run on (Linux), else None: the workers are not pinned.

    Unpinned, the efficiency at times drops, as when two busy workers share one core while
    another idles: measured with benchmarks/bench_fmu.py (2 cores, 8 copies of a 1 ms plant),
    69-88 % parallel efficiency unpinned against 78-87 % pinned.
    Pinning only when the workers fill the allowed CPUs leaves a run that asked for fewer
    workers (the machine shared with other work) to the scheduler; runs side by side that each
    fill the CPUs get one worker per CPU each, an even share.
    """
    if workers < 2 or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return allowed if workers == len(allowed) else None


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, e.g. under ``taskset``), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class InlineExecutor:
    """All copies in this process (``workers = 0``): the reference the parallel runs match."""

    def __init__(self, chunks: list[tuple[list[EnvFn], int]]) -> None:
        self.chunks = [Chunk(fns, first) for fns, first in chunks]
        self.spaces = self.chunks[0].spaces()

    def call(self, method: str, args_per_chunk: list[tuple]) -> list[Any]:
        return [getattr(c, method)(*args) for c, args in zip(self.chunks, args_per_chunk,
                                                               strict=True)]

    def close(self) -> None:
        for c in self.chunks:
            c.close()


class ParallelVectorEnv(VectorEnv):
    """N env copies spread over ``workers`` workers of a backend, SAME_STEP autoreset.

    Args:
        env_fns: one picklable constructor per copy (e.g. ``functools.partial(FMUEnv, ...)``).
        workers: number of workers; 0 runs every copy in this process. Default: one per CPU
            this process may use (its affinity) or per Ray CPU, at most one per copy. Worker
            processes that fill the allowed CPUs are pinned one per CPU (``worker_cpus``).
        backend: ``"process"`` (worker processes on this machine, a pipe to each) or
            ``"ray"`` (Ray actors on the cluster ``ray.init`` connects to: ``RAY_ADDRESS``,
            else a local instance; a direct TCP channel to each, else Ray actor calls).
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, env_fns: Sequence[EnvFn], workers: int | None = None,
                 backend: str = "process") -> None:
        n = len(env_fns)
        if n < 1:
            raise ValueError("ParallelVectorEnv needs at least one env constructor")
        if backend not in ("process", "ray"):
            raise UserError(f"[env] backend: expected 'local' or 'ray', got {backend!r}")
        if backend == "ray":
            from envs.fmu.ray_backend import RayExecutor, ray_cpus

            default = ray_cpus()
        else:
            default = available_cpus()
        w = default if workers is None else workers
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise UserError(f"workers: expected an integer >= 0, got {workers!r}")
        w = min(w, n)
        blocks = np.array_split(np.arange(n), max(w, 1))
        chunks = [([env_fns[i] for i in block], int(block[0])) for block in blocks]
        if w == 0:
            self._exec: Any = InlineExecutor(chunks)
        elif backend == "ray":
            self._exec = RayExecutor(chunks)
        else:
            self._exec = ProcessExecutor(chunks, worker_cpus(w))
        self._sizes = [len(b) for b in blocks]
        self.workers, self.backend = w, backend
        self.num_envs = n
        self.single_observation_space, self.single_action_space = self._exec.spaces
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self._closed_exec = False

    def _split(self, items: Sequence[Any]) -> list[Sequence[Any]]:
        """Each chunk's part of ``items`` (an array stays an array: one pickle, not k)."""
        out, start = [], 0
        for size in self._sizes:
            part = items[start:start + size]
            out.append(part if isinstance(part, np.ndarray) else list(part))
            start += size
        return out

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"reset: {len(seeds)} seeds given for {n} copies")
        results = self._exec.call("reset", [(s, options) for s in self._split(seeds)])
        obs = np.concatenate([chunk_obs for chunk_obs, _ in results])
        infos = [info for _, chunk_infos in results for info in chunk_infos]
        return obs, vector_infos(infos, [None] * n, self._add_info)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                  dict[str, Any]]:
        if isinstance(actions, np.ndarray) and isinstance(self.single_action_space, Box):
            per_copy: Sequence[Any] = actions  # its rows, as gymnasium's iterate gives them
        else:
            per_copy = list(gym.vector.utils.iterate(self.action_space, actions))
        results = self._exec.call("step", [(a,) for a in self._split(per_copy)])
        obs, rewards, terminated, truncated = (np.concatenate([r[k] for r in results])
                                               for k in range(4))
        infos = vector_infos([info for r in results for info in r[4]],
                             [final for r in results for final in r[5]], self._add_info)
        return obs, rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        if not self._closed_exec:
            self._closed_exec = True
            self._exec.close()


def make_env_fns(env_id: str, kwargs: dict[str, Any], n: int) -> list[EnvFn]:
    """n picklable constructors of ``env_id`` (a registered id or ``package.module:Class``)."""
    return [functools.partial(make_one, env_id, dict(kwargs))] * n


def make_one(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    import importlib

    import envs  # noqa: F401  (registers the SafeTRPO/* ids in this worker)

    if ":" in env_id and env_id not in gym.registry:
        module_name, _, class_name = env_id.partition(":")
        return getattr(importlib.import_module(module_name), class_name)(**kwargs)
    return gym.make(env_id, **kwargs)


def FMUVectorEnv(num_envs: int, workers: int | None = None, backend: str = "process",
                 **kwargs: Any) -> ParallelVectorEnv:  # noqa: N802 (an entry point, like a class)
    """The vector entry point of ``SafeTRPO/FMU-v0``: ``num_envs`` FMU copies in worker
    processes (or Ray actors). The interface is checked here, before any worker starts, so a
    bad scenario fails at once with one line. An FMU that may be instantiated only once per
    process gets one worker per copy."""
    import inspect

    from envs.fmu.env import FMUEnv

    known = list(inspect.signature(FMUEnv).parameters)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise UserError(f"SafeTRPO/FMU-v0: unknown [env.kwargs] key {unknown[0]!r} (expected "
                        f"{', '.join(known)}, workers)")
    probe = FMUEnv(**kwargs)  # parses and checks the interface; loads no native code
    spec = probe.fmu_spec
    if spec.once_per_process and workers is not None and workers < num_envs and num_envs > 1:
        raise UserError(f"{spec.label}: the FMU can be instantiated only once per process "
                        f"(canBeInstantiatedOnlyOncePerProcess), so it needs one worker per "
                        f"copy; got workers = {workers} for {num_envs} copies")
    if spec.once_per_process:
        workers = num_envs
    return ParallelVectorEnv([functools.partial(FMUEnv, **kwargs)] * num_envs, workers, backend)
