"""A trained run's policy as a deterministic controller, for evaluation and backtests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from safe_trpo.algo.networks import ObsNormalizer, clip_action, make_policy
from safe_trpo.config import Scenario
from safe_trpo.errors import UserError
from safe_trpo.record.run_record import read_run_record
from safe_trpo.run.checkpoint import read_checkpoint, spaces_from_spec


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

    The record must hold up first (``read_run_record``: chain, recorded files, data files): a
    policy that cannot be tied to its record is refused.
    """
    record = read_run_record(Path(run_dir))
    if record.checkpoint is None:
        raise UserError(f"{run_dir}: no recorded checkpoint")
    return TrainedPolicy(record.run_dir, record.scenario, record.checkpoint)
