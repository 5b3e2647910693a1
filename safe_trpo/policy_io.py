"""A trained run's policy as a deterministic controller, for evaluation and backtests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from safe_trpo.audit import read_lines, verify_run
from safe_trpo.checkpoint import read_checkpoint, spaces_from_spec
from safe_trpo.config import Scenario, scenario_from_dict
from safe_trpo.errors import UserError
from safe_trpo.networks import ObsNormalizer, clip_action, make_policy


class TrainedPolicy:
    """Controller protocol: ``act(obs batch) -> action batch``, ``reset(mask)``.

    Deterministic: the Gaussian mean clipped to the action bounds, or the most likely discrete
    action. Observations are normalised with the statistics saved in the checkpoint.
    """

    def __init__(self, run_dir: Path, scenario: Scenario, checkpoint: Path) -> None:
        self.run_dir = run_dir
        self.scenario = scenario
        self.checkpoint = checkpoint
        payload = read_checkpoint(checkpoint)
        self.obs_space, self.action_space = spaces_from_spec(payload["space_spec"])
        obs_space = self.obs_space
        a = scenario.algo
        self.policy = make_policy(obs_space, self.action_space, a.hidden_sizes, a.activation,
                                  a.init_log_std)
        self.policy.load_state_dict(payload["policy"])
        self.policy.eval()
        self.normalizer = ObsNormalizer(obs_space.shape[0], a.normalize_obs)
        self.normalizer.load_state_dict(payload["normalizer"])
        self.update = payload["update"]

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(self.normalizer(np.atleast_2d(obs)))
        return clip_action(self.policy.deterministic(z).numpy(), self.action_space)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless policy: nothing to clear."""


def load_policy(run_dir: str | Path) -> TrainedPolicy:
    """The policy of the newest checkpoint recorded in ``run_dir``'s audit chain.

    The chain is verified first and the checkpoint must match its recorded hash: a policy that
    cannot be tied to its record is refused.
    """
    from safe_trpo.trainer import latest_checkpoint

    run_dir = Path(run_dir)
    verdict = verify_run(run_dir)
    if verdict.chain.status == "tampered":
        raise UserError(f"{run_dir}: audit chain fails verification ({verdict.chain.message})")
    lines = read_lines(run_dir)[:verdict.chain.n_lines]
    started = next((ln for ln in lines if ln.get("type") == "run_started"), None)
    if started is None:
        raise UserError(f"{run_dir}: no run_started line in the audit log")
    checkpoint = latest_checkpoint(run_dir, lines)
    if checkpoint is None:
        raise UserError(f"{run_dir}: no checkpoint that matches its recorded hash")
    scenario = scenario_from_dict(started["scenario"], source=f"{run_dir}/audit.jsonl")
    return TrainedPolicy(run_dir, scenario, checkpoint)
