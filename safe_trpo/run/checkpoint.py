"""Full training state on disk: written atomically, loaded with ``weights_only=True``.

A checkpoint holds everything needed to continue a run: the policy, the critics and their
optimiser, the observation normaliser, the Lagrange multipliers, the RNG states, the update and
env-step counters and the horizon estimate. It holds only tensors, numbers, strings, lists and
dicts, so loading never unpickles code.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from safe_trpo.algo.adam import CriticAdam
from safe_trpo.algo.networks import ObsNormalizer, ValueNet, make_policy
from safe_trpo.algo.state import TrainState
from safe_trpo.config import Scenario
from safe_trpo.errors import UserError

CHECKPOINT_DIR = "checkpoints"
FORMAT = 1


def space_spec(obs_space: spaces.Space, action_space: spaces.Space) -> dict[str, Any]:
    """The spaces in plain data, so a policy can be rebuilt without constructing the env."""
    spec: dict[str, Any] = {"obs_shape": list(obs_space.shape), "obs_dtype": str(obs_space.dtype)}
    if isinstance(action_space, spaces.Box):
        spec["action"] = {"type": "box", "low": action_space.low.tolist(),
                          "high": action_space.high.tolist(), "dtype": str(action_space.dtype)}
    else:
        spec["action"] = {"type": "discrete", "n": int(action_space.n)}
    return spec


def spaces_from_spec(spec: dict[str, Any]) -> tuple[spaces.Box, spaces.Space]:
    obs_space = spaces.Box(-np.inf, np.inf, shape=tuple(spec["obs_shape"]), dtype=np.float32)
    act = spec["action"]
    if act["type"] == "box":
        action_space: spaces.Space = spaces.Box(np.array(act["low"], dtype=np.float32),
                                                np.array(act["high"], dtype=np.float32))
    else:
        action_space = spaces.Discrete(act["n"])
    return obs_space, action_space


def new_state(scenario: Scenario, obs_space: spaces.Space, action_space: spaces.Space
              ) -> TrainState:
    a = scenario.algo
    try:
        # make_policy refuses unsupported spaces (UserError) before obs_dim is read.
        policy = make_policy(obs_space, action_space, a.hidden_sizes, a.activation,
                             a.init_log_std)
        obs_dim = obs_space.shape[0]
        critics = nn.ModuleList(ValueNet(obs_dim, a.hidden_sizes, a.activation)
                                for _ in range(1 + len(scenario.constraints)))
    except (RuntimeError, MemoryError) as exc:  # torch's allocator failing on a huge network
        raise UserError(f"[algo] hidden_sizes = {a.hidden_sizes!r} with observations of shape "
                        f"{obs_space.shape}: "
                        f"the networks do not fit in memory "
                        f"({str(exc).splitlines()[0][:120]})") from None
    optim = CriticAdam(list(critics.parameters()), lr=a.critic_lr)
    m = len(scenario.constraints)
    nu = np.full(m, a.lagrange_init if a.name == "trpo-lag" else 0.0)
    return TrainState(policy, critics, optim, ObsNormalizer(obs_dim, a.normalize_obs), nu,
                      np.random.default_rng(scenario.run.seed),
                      space_spec=space_spec(obs_space, action_space))


def save_checkpoint(state: TrainState, run_dir: Path) -> Path:
    """Write ``checkpoints/update_XXXXXX.pt`` atomically (temp file, fsync, rename)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"update_{state.update:06d}.pt"
    payload = {
        "format": FORMAT, "update": state.update, "env_steps": state.env_steps,
        "horizon": state.horizon, "nu": state.nu.tolist(), "space_spec": state.space_spec,
        "policy": state.policy.state_dict(), "critics": state.critics.state_dict(),
        "critic_optim": state.critic_optim.state_dict(),
        "normalizer": state.normalizer.state_dict(),
        "torch_rng": torch.get_rng_state(), "numpy_rng": state.rng.bit_generator.state,
    }
    tmp = path.with_suffix(".pt.tmp")
    # Serialised in memory first: torch's zip writer turns a failed write (a full disk) into a
    # RuntimeError, while a plain write keeps the OSError that says what happened.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not also keep the partial file
        raise
    fsync_dir(folder)  # the rename itself must survive a power cut before the chain names it
    return path


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX: fsync the directory)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stray_temps(run_dir: Path) -> list[Path]:
    """Delete ``checkpoints/*.pt.tmp`` left by a crash mid-write (never bound into the chain,
    so never evidence); returns what was removed. Call only while holding the run lock."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    removed = []
    if folder.is_dir() and not folder.is_symlink():
        for tmp in folder.glob("*.pt.tmp"):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
    return removed


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise UserError(f"{path}: unreadable checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not a safe-trpo checkpoint (format {FORMAT} expected)")
    return payload


def load_state(scenario: Scenario, path: Path) -> TrainState:
    payload = read_checkpoint(path)
    obs_space, action_space = spaces_from_spec(payload["space_spec"])
    state = new_state(scenario, obs_space, action_space)
    try:
        state.policy.load_state_dict(payload["policy"])
        state.critics.load_state_dict(payload["critics"])
        state.critic_optim.load_state_dict(payload["critic_optim"])
        state.normalizer.load_state_dict(payload["normalizer"])
    except (RuntimeError, KeyError) as exc:
        raise UserError(f"{path}: checkpoint does not match the scenario's networks "
                        f"({str(exc).splitlines()[0]})") from None
    state.nu = np.array(payload["nu"], dtype=np.float64)
    state.rng.bit_generator.state = payload["numpy_rng"]
    torch.set_rng_state(payload["torch_rng"])
    state.update, state.env_steps = payload["update"], payload["env_steps"]
    state.horizon = payload["horizon"]
    state.space_spec = payload["space_spec"]
    return state
