"""Build the vector environment a scenario names, always with SAME_STEP autoreset."""

from __future__ import annotations

import importlib
import inspect

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from safe_trpo.config import EnvConfig
from safe_trpo.errors import UserError
from safe_trpo.run.trust import check_env_id


def env_kwargs(cfg: EnvConfig) -> dict:
    return {**cfg.kwargs, **cfg.data_files}


def make_vector_env(cfg: EnvConfig, num_envs: int | None = None) -> gym.vector.VectorEnv:
    """A registered id uses its native vector env when it has one that autoresets in the same
    step (``vectorization='auto'``), else Gymnasium's SyncVectorEnv. ``module:EnvId-vN``
    (importing the module registers the id) and ``module:Class`` (an env or vector-env class)
    import ``module`` only if the user trusts it (``safe_trpo.run.trust``); that check comes
    before anything is imported or called.
    """
    import envs  # noqa: F401  (registers the SafeTRPO/* environments; shipped, so trusted)

    n = num_envs or cfg.num_envs
    kwargs = env_kwargs(cfg)
    where = f"[env] id = {cfg.id!r}"
    env_id, env_class = cfg.id, None
    module_name = check_env_id(cfg.id, cfg.id in gym.registry)
    if module_name is not None:
        attr = cfg.id.partition(":")[2]
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a trusted module may still fail to import: say so in a line
            raise UserError(f"{where}: cannot import {module_name!r} "
                            f"({type(exc).__name__}: {exc})") from None
        if attr in gym.registry:  # Gymnasium's form: the import registered the id
            env_id = attr
        else:
            env_class = getattr(module, attr, None)
            if not isinstance(env_class, type):
                raise UserError(f"{where}: {module_name!r} neither registers the Gymnasium id "
                                f"{attr!r} nor defines a class {attr!r}")
    try:
        if cfg.backend == "ray":
            venv = _ray_vector_env(env_id if env_class is None else cfg.id, kwargs, n, where)
        else:
            venv = _build(env_id, env_class, n, kwargs, cfg.vectorization)
    except UserError:
        raise
    except Exception as exc:  # the constructor is the env's own code: any failure is one line
        raise UserError(f"{where}: the environment could not be built with these [env] "
                        f"kwargs ({type(exc).__name__}: {exc})") from None
    mode = venv.metadata.get("autoreset_mode")
    if mode != AutoresetMode.SAME_STEP:
        venv.close()
        raise UserError(f"{where}: its vector env uses autoreset mode {mode!r}; safe-trpo needs "
                        f"AutoresetMode.SAME_STEP to bootstrap truncated episodes correctly")
    return venv


def _build(env_id: str, env_class: type | None, n: int, kwargs: dict, vectorization: str
           ) -> gym.vector.VectorEnv:
    if env_class is not None:
        if issubclass(env_class, gym.vector.VectorEnv):
            return env_class(num_envs=n, **kwargs)
        return gym.vector.SyncVectorEnv([lambda: env_class(**kwargs)] * n,
                                        autoreset_mode=AutoresetMode.SAME_STEP)
    native = gym.spec(env_id).vector_entry_point is not None
    if native and vectorization == "auto":
        venv = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point",
                            **kwargs)
        if venv.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP:
            return venv
        # e.g. Gymnasium's own CartPoleVectorEnv (NEXT_STEP only): use Sync instead.
        venv.close()
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs)


def _ray_vector_env(env_id: str, kwargs: dict, n: int, where: str) -> gym.vector.VectorEnv:
    """``[env] backend = "ray"``: the copies as Ray actors. A vector entry point that takes a
    ``backend`` keyword (SafeTRPO/FMU-v0) places its own copies; any other env is built once
    here (so bad kwargs fail in one line, not inside an actor) and then once per copy. Called
    only after ``check_env_id``: a ``module:Class`` id names a trusted module."""
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
