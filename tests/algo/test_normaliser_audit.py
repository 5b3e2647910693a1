"""The logged KL is the real change of behaviour, the observation normaliser's move included:
in update 0 (statistics moved at every step of the first rollout) and when observations are
clipped (where no rescaling of the first layer can preserve the policy)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from safe_trpo.config import load_scenario
from safe_trpo.run import trainer
from safe_trpo.run.trainer import start_run

SPIKY = """
[env]
id = "tests.algo.known_cost_env:KnownCostEnv"
num_envs = 4
kwargs = { episode_steps = 5, spike_every = 30 }
[algo]
name = "trpo"
steps_per_update = 280
total_steps = 1400
hidden_sizes = [8]
critic_epochs = 1
target_kl = 0.02
init_log_std = -1.5
[run]
seed = 4
"""


def _behaviour_kl(before: dict, after: dict, rollout) -> tuple[float, int]:
    """KL(policy that drew the actions || policy as it acts next) on the batch's raw
    observations, and how many of them the old or the new statistics clip."""
    raw = rollout.raw_obs.reshape(-1, rollout.raw_obs.shape[-1])
    old_obs = torch.from_numpy(rollout.obs.reshape(raw.shape))  # as the policy saw them
    new_obs = torch.from_numpy(after["normalizer"].frozen()(raw))
    with torch.no_grad():
        old = before["policy"].distribution(old_obs)
        new = after["policy"].distribution(new_obs)
        kl = float(after["policy"].kl(old, new).mean())
    clipped = 0
    for norm in (before["normalizer"], after["normalizer"]):
        z = (raw - norm.mean.numpy()) / np.sqrt(norm.var.numpy() + 1e-8)
        clipped += int(np.count_nonzero(np.abs(z) > norm.clip))
    return kl, clipped


def test_logged_kl_is_the_real_change_of_behaviour(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict] = []
    real_learn = trainer.learn

    def watching(scenario, state, rollout):
        snapshot = {"policy": copy.deepcopy(state.policy),
                    "normalizer": copy.deepcopy(state.normalizer)}
        seen.append({"before": snapshot, "rollout": rollout})
        row = real_learn(scenario, state, rollout)
        seen[-1]["row"] = row
        return row

    monkeypatch.setattr(trainer, "learn", watching)
    path = tmp_path / "spiky.toml"
    path.write_text(SPIKY)
    scenario = load_scenario(path, [f"run.out_dir={str(tmp_path / 'runs')!r}"])
    outcome = start_run(scenario, progress=False)
    assert outcome.status == "completed" and len(seen) == 5
    clipped_updates = 0
    # What acts in rollout k + 1 is the result of update k (the last one has no successor).
    for k in range(4):
        kl, clipped = _behaviour_kl(seen[k]["before"], seen[k + 1]["before"], seen[k]["rollout"])
        row = seen[k]["row"]
        clipped_updates += clipped > 0 and k > 0
        assert row["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-9), (k, clipped)
        assert kl <= row["target_kl"] * (1 + 1e-4)
    assert clipped_updates >= 1  # the scenario does exercise clipped observations
