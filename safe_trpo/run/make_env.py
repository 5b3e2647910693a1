"""Build the vector environment a scenario names, always with SAME_STEP autoreset."""

from __future__ import annotations

import importlib
import inspect

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from safe_trpo.config import EnvConfig
from safe_trpo.errors import UserError


def env_kwargs(cfg: EnvConfig) -> dict:
    return {**cfg.kwargs, **cfg.data_files}


def make_vector_env(cfg: EnvConfig, num_envs: int | None = None) -> gym.vector.VectorEnv:
    """A registered id uses its native vector env when it has one that autoresets in the same
    step (``vectorization='auto'``), else Gymnasium's SyncVectorEnv; ``package.module:Class``
    names an env (or vector env) class.
    """
    import envs  # noqa: F401  (registers the SafeTRPO/* environments)

    n = num_envs or cfg.num_envs
    kwargs = env_kwargs(cfg)
    where = f"[env] id = {cfg.id!r}"
    try:
        if cfg.backend == "ray":
            venv = _ray_vector_env(cfg.id, kwargs, n, where)
        elif ":" in cfg.id and cfg.id not in gym.registry:
            module_name, _, class_name = cfg.id.partition(":")
            try:
                env_class = getattr(importlib.import_module(module_name), class_name)
            except (ImportError, AttributeError) as exc:
                raise UserError(f"{where}: cannot import it ({exc})") from None
            if isinstance(env_class, type) and issubclass(env_class, gym.vector.VectorEnv):
                venv = env_class(num_envs=n, **kwargs)
            else:
                venv = gym.vector.SyncVectorEnv([lambda: env_class(**kwargs)] * n,
                                                autoreset_mode=AutoresetMode.SAME_STEP)
        else:
            if cfg.id not in gym.registry:
                raise UserError(f"{where}: not a registered Gymnasium id (and not "
                                f"'package.module:Class')")
            native = gym.spec(cfg.id).vector_entry_point is not None
            venv = None
            if native and cfg.vectorization == "auto":
                venv = gym.make_vec(cfg.id, num_envs=n, vectorization_mode="vector_entry_point",
                                    **kwargs)
                if venv.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
                    # e.g. Gymnasium's own CartPoleVectorEnv (NEXT_STEP only): use Sync instead.
                    venv.close()
                    venv = None
            if venv is None:
                venv = gym.make_vec(cfg.id, num_envs=n, vectorization_mode="sync",
                                    vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                                    **kwargs)
    except (TypeError, ValueError, gym.error.Error) as exc:
        raise UserError(f"{where}: the environment could not be built with these [env] "
                        f"kwargs ({type(exc).__name__}: {exc})") from None
    mode = venv.metadata.get("autoreset_mode")
    if mode != AutoresetMode.SAME_STEP:
        raise UserError(f"{where}: its vector env uses autoreset mode {mode!r}; safe-trpo needs "
                        f"AutoresetMode.SAME_STEP to bootstrap truncated episodes correctly")
    return venv


def _ray_vector_env(env_id: str, kwargs: dict, n: int, where: str) -> gym.vector.VectorEnv:
    """``[env] backend = "ray"``: the copies as Ray actors. A vector entry point that takes a
    ``backend`` keyword (SafeTRPO/FMU-v0) places its own copies; any other env is built once
    here (so bad kwargs fail in one line, not inside an actor) and then once per copy."""
    from gymnasium.envs.registration import load_env_creator

    from envs.fmu.parallel import ParallelVectorEnv, make_env_fns, make_one

    if env_id in gym.registry and gym.spec(env_id).vector_entry_point is not None:
        entry = gym.spec(env_id).vector_entry_point
        creator = load_env_creator(entry) if isinstance(entry, str) else entry
        if "backend" in inspect.signature(creator).parameters:
            return creator(num_envs=n, backend="ray", **kwargs)
    try:
        make_one(env_id, kwargs).close()
    except (ImportError, AttributeError) as exc:
        raise UserError(f"{where}: cannot import it ({exc})") from None
    return ParallelVectorEnv(make_env_fns(env_id, kwargs, n), backend="ray")
