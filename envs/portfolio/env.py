"""``SafeTRPO/Portfolio-v0``: daily long-only portfolio allocation under risk limits.

One step is one trading day ``t``:

1. Observation at the close of ``t`` (prices up to and including ``t`` only), float32, laid out as
   ``[log returns (window x A, oldest day first, row-major) | drifted weights (A+1, cash last) |
   drawdown (1) | rolling volatility (A) | holdable mask (A)]``: the log returns
   ``log P(s)/P(s-1)`` of the ``window`` days ending at ``t`` (0 while a ticker is not listed);
   the weights held before trading; the drawdown of the wealth from its peak since the episode
   started (fraction, 0..1); each asset's daily log-return standard deviation (ddof=1) over the
   same window; 1.0 for each ticker that may be held from close ``t`` (listed, not delisting).
2. Action: one logit per asset plus one for cash, in ``[-logit_bound, logit_bound]`` (clipped);
   tickers that cannot be held today are masked out; the target weights are the softmax of the
   rest, then capped at ``weight_cap`` per asset if set
   (:func:`~envs.portfolio.accounting.cap_weights`).
3. The order fills ``execution_lag_days`` closes later (default 1: decided on close ``t``,
   traded at close ``t+1``), after delisted names are sold and the optional hard-cap projection
   (:mod:`envs.portfolio.core`, :mod:`envs.portfolio.safety`); the trade pays fees, half-spread
   and square-root impact (turnover over the assets, cash being the settlement account; see
   :mod:`envs.portfolio.accounting`). Prices then move one day; cash earns ``cash_rate``.
4. Reward: ``log(W_{t+1} / W_t)``, the log wealth ratio net of costs.

The action space covers a fixed ticker list; a ticker is investable from its first price in the
file to its last (point-in-time universe, :mod:`envs.portfolio.universe`).

Costs (``info["cost_<name>"]``, each 1.0 on a day its limit is breached, else 0.0, so the episode
sum is the number of breach days and a scenario budget ``limit = 10`` means "at most 10 breach
days per episode"; ``info["cost"]`` is their sum):

- ``drawdown``: drawdown at the close of ``t+1`` above ``drawdown_limit``;
- ``concentration``: largest target asset weight (cash excluded) above ``concentration_cap``;
- ``turnover``: the day's turnover above ``turnover_cap``;
- ``cvar``: CVaR(95%) of the episode's last ``cvar_window`` daily portfolio returns (net of
  costs) above ``cvar_limit``; zero until ``cvar_window`` returns exist.

Episodes start fully in cash (the initial allocation is turnover and pays costs) at a seeded
random day inside ``[train_start, train_end]`` and last ``episode_days`` days, never reading a
price after ``train_end`` (a time limit: truncation, never termination). With ``backtest=True``
there is one deterministic episode from ``backtest_start`` to ``backtest_end``: the backtester
runs trained policies and baselines through this same accounting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from envs._vector import per_copy_seeds, same_step_info
from envs.portfolio.config import COST_NAMES, ENV_NAME, PortfolioConfig, make_config
from envs.portfolio.core import PortfolioCore

__all__ = ["COST_NAMES", "ENV_NAME", "PortfolioConfig", "PortfolioCore", "PortfolioEnv",
           "PortfolioVectorEnv", "make_config"]


class PortfolioVectorEnv(gym.vector.VectorEnv):
    """Native batched ``Portfolio-v0``: ``num_envs`` copies stepped together with numpy.

    SAME_STEP autoreset: a copy that finishes is reset inside the same ``step``; its last
    observation is in ``info["final_obs"][i]`` and its last step's info (costs included) in
    ``info["final_info"]``, with the same costs also left in ``info["cost_<name>"][i]``.
    ``reset(seed=s)`` seeds copy ``i`` with ``s + i``, exactly like ``num_envs`` single
    :class:`PortfolioEnv` copies in a ``SyncVectorEnv`` seeded with ``s``.
    Keyword arguments: see :class:`PortfolioConfig`.
    """

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        self.config = make_config(**kwargs)
        self.core = PortfolioCore(self.config, num_envs)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = self.core.spaces()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP, "render_modes": []}
        self._rngs = [np.random.default_rng() for _ in range(num_envs)]

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        seeds = per_copy_seeds(seed, self.num_envs)
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
        for i in np.flatnonzero(mask):
            if seeds[i] is not None:  # unseeded: the copy's generator continues, as a single env
                self._rngs[i] = seeding.np_random(seeds[i])[0]
        self._reset_copies(mask)
        return self.core.observe(), {}

    def _reset_copies(self, mask: np.ndarray) -> None:
        starts = [self.core.draw_start(self._rngs[i]) for i in np.flatnonzero(mask)]
        self.core.reset(mask, np.array(starts, dtype=np.int64))

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        """Batched step from logits (num_envs, A+1)."""
        return self.step_weights(self.core.action_to_weights(actions))

    def step_weights(self, target: np.ndarray) -> tuple[Any, ...]:
        """Batched step from target weights (num_envs, A+1), long-only, summing to 1."""
        reward, truncated, info = self.core.step(np.asarray(target, dtype=np.float64))
        obs = self.core.observe()
        out = same_step_info(info, truncated, obs)  # final_obs/final_info as SyncVectorEnv
        if truncated.any():
            self._reset_copies(truncated)
            obs = self.core.observe()
        terminated = np.zeros(self.num_envs, dtype=bool)
        return obs, reward, terminated, truncated, out


class PortfolioEnv(gym.Env):
    """Single-copy ``Portfolio-v0`` (the batched core with one copy). Keyword arguments: see
    :class:`PortfolioConfig`; the module docstring gives observations, actions, reward, costs."""

    metadata = {"render_modes": []}

    def __init__(self, **kwargs: Any) -> None:
        self.config = make_config(**kwargs)
        self.core = PortfolioCore(self.config, 1)
        self.observation_space, self.action_space = self.core.spaces()

    @property
    def panel(self) -> pd.DataFrame:
        """The price rows this env reads (history before the first trading day included), NaN
        where a ticker is not listed."""
        return self.core.universe.panel

    @property
    def day(self) -> int:
        """Index in :attr:`panel` of the current close (the next trade's day)."""
        return int(self.core.day[0])

    @property
    def drifted_weights(self) -> np.ndarray:
        """(A+1,) weights held now, before today's trade (cash last)."""
        return self.core.weights[0].copy()

    def history(self, days: int) -> np.ndarray:
        """The last ``days`` closes up to and including today, (<= days, A): no look-ahead."""
        t = self.day
        return self.core.prices[max(0, t + 1 - days):t + 1].copy()

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        start = self.core.draw_start(self.np_random)
        self.core.reset(np.ones(1, dtype=bool), np.array([start]))
        return self.core.observe()[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self.step_weights(self.core.action_to_weights(np.asarray(action)[None])[0])

    def step_weights(self, target: np.ndarray) -> tuple[np.ndarray, float, bool, bool,
                                                        dict[str, Any]]:
        """Step with target weights (A+1,) directly (baselines in the backtester)."""
        reward, truncated, info = self.core.step(np.asarray(target, dtype=np.float64)[None])
        scalars = {k: v[0].item() for k, v in info.items()}
        return self.core.observe()[0], float(reward[0]), False, bool(truncated[0]), scalars
