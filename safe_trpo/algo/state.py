"""What the learner changes from update to update, as one typed value.

The run layer creates it (``safe_trpo.run.checkpoint.new_state``), saves and restores it; the
algorithm only reads and updates it, so nothing here knows about files or the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from safe_trpo.algo.adam import CriticAdam
from safe_trpo.algo.networks import ObsNormalizer, Policy


@dataclass
class TrainState:
    """Everything that changes while a run trains."""

    policy: Policy
    critics: nn.ModuleList  # [reward critic, cost critic per constraint]
    critic_optim: CriticAdam  # one Adam over every critic's parameters
    normalizer: ObsNormalizer
    nu: np.ndarray  # one multiplier per constraint (trpo-lag) / last CPO dual (cpo)
    rng: np.random.Generator  # critic minibatch shuffling
    update: int = 0  # index of the next update
    env_steps: int = 0
    horizon: float | None = None  # mean episode length seen most recently
    space_spec: dict[str, Any] = field(default_factory=dict)
