"""The copies one worker owns (``Chunk``), the request loop a worker serves (``serve``) and the
errors it carries back: shared by the worker processes (``parallel``) and the Ray actors
(``ray_backend``), so both backends speak the identical protocol.

The protocol: the driver sends ``(method, args)``, the worker answers ``("ok", value)`` or
``("error", exception)``; ``("close", ())`` closes the envs and ends the loop. A step answers
one batch per chunk (stacked observations, arrays of rewards and flags, the copies' info dicts)
so the driver joins a few arrays instead of unpacking a tuple per copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from safe_trpo.errors import UserError

EnvFn = Callable[[], gym.Env]
# obs (k, ...), rewards (k,) float64, terminated (k,), truncated (k,), infos, finals: per copy
# None or (final obs, final info) when the copy finished (and was reset) in this step
StepBatch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict],
                  list[tuple[Any, dict] | None]]


class WorkerError(RuntimeError):
    """An exception raised by an env inside a worker, carried back with its type and copy."""


class Chunk:
    """The copies one worker owns; every method returns plain picklable data."""

    def __init__(self, env_fns: Sequence[EnvFn], first: int) -> None:
        self.first = first
        self.envs = [fn() for fn in env_fns]

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        return self.envs[0].observation_space, self.envs[0].action_space

    def reset(self, seeds: Sequence[int | None], options: dict | None
              ) -> tuple[np.ndarray, list[dict]]:
        pairs = [self._guard(i, env.reset, seed=s, options=options)
                 for i, (env, s) in enumerate(zip(self.envs, seeds, strict=True))]
        return np.stack([obs for obs, _ in pairs]), [info for _, info in pairs]

    def step(self, actions: Sequence[Any]) -> StepBatch:
        """Step every copy; a finished copy is reset in the same step (SAME_STEP)."""
        obs, rewards, terminated, truncated, infos, finals = [], [], [], [], [], []
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            o, reward, term, trunc, info = self._guard(i, env.step, action)
            final = None
            if term or trunc:
                final = (o, info)
                o, info = self._guard(i, env.reset)
            obs.append(o)
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
            infos.append(info)
            finals.append(final)
        return (np.stack(obs), np.array(rewards, dtype=np.float64),
                np.array(terminated, dtype=bool), np.array(truncated, dtype=bool), infos, finals)

    def _guard(self, i: int, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise UserError(f"env copy {self.first + i}: {exc}") from None
        except Exception as exc:
            raise WorkerError(f"env copy {self.first + i}: {type(exc).__name__}: {exc}"
                              ) from None

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _portable(exc: BaseException) -> BaseException:
    """The exception as something that pickles (a UserError stays a UserError)."""
    if isinstance(exc, (UserError, WorkerError)):
        return type(exc)(str(exc))
    return WorkerError(f"{type(exc).__name__}: {exc}")


def handle(chunk: Chunk, method: str, args: tuple) -> tuple[str, Any]:
    """One request: ``("ok", result)`` or ``("error", picklable exception)``."""
    try:
        return "ok", getattr(chunk, method)(*args)
    except BaseException as exc:
        return "error", _portable(exc)


def serve(conn: Any, chunk: Chunk) -> None:
    """Answer the driver's requests on ``conn`` (a ``multiprocessing.connection.Connection``)
    until ``close`` or until the driver goes away. The connection is closed on the way out
    whatever happens, so the driver sees EOF rather than waiting for an answer that will never
    come (this loop also runs in a thread of a Ray actor, whose process outlives it)."""
    with contextlib.closing(conn):
        while True:
            try:
                method, args = conn.recv()
            except (EOFError, OSError, KeyboardInterrupt):
                return
            if method == "close":
                reply = handle(chunk, "close", ())
                with contextlib.suppress(OSError):
                    conn.send(reply)
                return
            reply = handle(chunk, method, args)
            try:
                conn.send(reply)
            except OSError:
                return
            except Exception as exc:  # the answer does not pickle (an odd info value)
                conn.send(("error", _portable(exc)))
