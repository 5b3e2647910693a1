"""The running observation normaliser, and the fixed transform it hands to a rollout.

Re-exported by ``safe_trpo.algo.networks``, where it used to live.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ObsNormalizer(nn.Module):
    """Running mean/variance of observations (parallel Welford update), saved with the model.

    Normalised observations are clipped to +-``clip`` so one outlier cannot saturate the network.
    Buffers are float64 so millions of updates do not drift. During the first rollout of a run
    (a fresh, untrained policy) the statistics follow every step; afterwards they change once
    per rollout, through ``update_preserving``, inside the policy step
    (``safe_trpo.algo.learn.renormalise``), so the audited KL includes what it cannot preserve.
    """

    def __init__(self, obs_dim: int, enabled: bool = True, clip: float = 10.0) -> None:
        super().__init__()
        self.enabled = enabled
        self.clip = clip
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def update(self, batch: np.ndarray) -> None:
        if not self.enabled:
            return
        x = torch.as_tensor(batch, dtype=torch.float64)
        b_mean, b_var, b_count = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean += delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def update_preserving(self, batch: np.ndarray, first_layers: list[nn.Linear]) -> None:
        """Update the statistics and rescale each network's first layer so that its output as
        a function of the RAW observation is unchanged (up to the +-clip bound).

        Without this, drifting statistics would change the policy between updates. With
        z = (x - m) / s and a first layer W z + b, the new statistics (m', s') keep W z + b if
        W' = W * s' / s (per input column) and b' = b + W (m' - m) / s. No rescaling can keep
        an observation whose clipping changes; the caller measures that in the step's KL.
        """
        if not self.enabled:
            return
        old_mean, old_std = self.mean.clone(), (self.var + 1e-8).sqrt()
        self.update(batch)
        new_std = (self.var + 1e-8).sqrt()
        with torch.no_grad():
            for layer in first_layers:
                w = layer.weight.double()
                layer.bias += (w @ ((self.mean - old_mean) / old_std)).to(layer.bias.dtype)
                layer.weight.copy_((w * (new_std / old_std)).to(layer.weight.dtype))

    def frozen(self) -> FrozenNormalizer:
        """The transform with the current statistics, for applying many times cheaply."""
        if not self.enabled:
            return FrozenNormalizer(None, None, self.clip)
        return FrozenNormalizer(self.mean.numpy().copy(), np.sqrt(self.var.numpy() + 1e-8),
                                self.clip)

    def __call__(self, obs: np.ndarray) -> np.ndarray:  # type: ignore[override]
        return self.frozen()(obs)


class FrozenNormalizer:
    """z = clip((x - mean) / std, +-clip) as float32, with statistics fixed at creation."""

    def __init__(self, mean: np.ndarray | None, std: np.ndarray | None, clip: float) -> None:
        self.mean, self.std, self.clip = mean, std, clip  # mean None: normalisation disabled

    def __call__(self, obs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Normalise ``obs`` (any leading shape), into the float32 array ``out`` if given."""
        obs = np.asarray(obs, dtype=np.float64)
        if out is None:
            out = np.empty(obs.shape, dtype=np.float32)
        if self.mean is None:
            out[...] = obs
            return out
        z = obs - self.mean
        z /= self.std
        # Clip in float64, then round once to float32 on the way into ``out``.
        return np.minimum(np.maximum(z, -self.clip, out=z), self.clip, out=out)
