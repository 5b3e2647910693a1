"""The copies one worker owns (``Chunk``) and the errors it carries back: shared by the
worker-process executor (``parallel``) and the Ray actors (``ray_backend``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

from safe_trpo.errors import UserError

EnvFn = Callable[[], gym.Env]


class WorkerError(RuntimeError):
    """An exception raised by an env inside a worker, carried back with its type and copy."""


class Chunk:
    """The copies one worker owns; every method returns plain picklable data."""

    def __init__(self, env_fns: Sequence[EnvFn], first: int) -> None:
        self.first = first
        self.envs = [fn() for fn in env_fns]

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        return self.envs[0].observation_space, self.envs[0].action_space

    def reset(self, seeds: Sequence[int | None], options: dict | None) -> list[tuple]:
        return [self._guard(i, env.reset, seed=s, options=options)
                for i, (env, s) in enumerate(zip(self.envs, seeds, strict=True))]

    def step(self, actions: Sequence[Any]) -> list[tuple]:
        out = []
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            obs, reward, terminated, truncated, info = self._guard(i, env.step, action)
            final = None
            if terminated or truncated:
                final = (obs, info)
                obs, info = self._guard(i, env.reset)
            out.append((obs, float(reward), bool(terminated), bool(truncated), info, final))
        return out

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
