"""``SafeTRPO/Portfolio-v0``: daily long-only portfolio allocation under risk limits.

One step is one trading day ``t``:

1. Observation at the close of ``t`` (prices up to and including ``t`` only), float32, laid out as
   ``[log returns (window x A, oldest day first, row-major) | drifted weights (A+1, cash last) |
   drawdown (1) | rolling volatility (A)]``: the log returns ``log P(s)/P(s-1)`` of the
   ``window`` days ending at ``t``; the weights held before trading; the drawdown of the wealth
   from its peak since the episode started (fraction, 0..1); each asset's daily log-return
   standard deviation (ddof=1) over the same window.
2. Action: one logit per asset plus one for cash, in ``[-logit_bound, logit_bound]`` (clipped);
   the target weights are their softmax, then capped at ``weight_cap`` per asset if set
   (:func:`~envs.portfolio.accounting.cap_weights`).
3. Rebalance at the close of ``t`` from the drifted to the target weights, paying
   ``cost_rate * turnover`` of wealth (turnover over the assets, cash being the settlement
   account; see :mod:`envs.portfolio.accounting`). Prices then move to ``t+1``.
4. Reward: ``log(W_{t+1} / W_t)``, the log wealth ratio net of costs.

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

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from envs._vector import per_copy_seeds, same_step_info
from envs.portfolio import accounting as acc
from envs.portfolio.prices import load_prices, select_window, validate_panel
from safe_trpo.errors import UserError

ENV_NAME = "SafeTRPO/Portfolio-v0"
COST_NAMES = ("drawdown", "concentration", "turnover", "cvar")


@dataclasses.dataclass(frozen=True)
class PortfolioConfig:
    """Constructor keyword arguments of the portfolio environments (scenario ``[env] kwargs``)."""

    prices: Any = None
    """Price file (CSV/Parquet, wide or long; relative paths against the current directory) or
    a panel DataFrame (dates x tickers, no missing values). Required."""
    tickers: tuple[str, ...] | None = None
    """Assets to trade, in this order; each must have a price on every day used. None = every
    ticker with complete prices in the window (others left out with a warning)."""
    train_start: str | None = None
    """First day an episode may start on (date); None = as early as `window` allows."""
    train_end: str | None = None
    """Last price an episode may read (date); None = the end of the data."""
    test_start: str | None = None
    """Held-out test window start, must be after `train_end`; not used in training, the
    backtester's default window for a trained run."""
    test_end: str | None = None
    """Held-out test window end (date), see `test_start`."""
    backtest: bool = False
    """One deterministic episode over [backtest_start, backtest_end] instead of random starts."""
    backtest_start: str | None = None
    """Backtest mode: first trading day (date); None = as early as `window` allows."""
    backtest_end: str | None = None
    """Backtest mode: last close (date); None = the end of the data."""
    episode_days: int = 252
    """Trading days per training episode (252 ~ one year)."""
    window: int = 20
    """Days of log returns in the observation (and for the rolling volatility), >= 2."""
    cost_rate: float = 0.001
    """Transaction cost per unit of turnover (0.001 = 10 basis points), in [0, 0.5)."""
    weight_cap: float | None = None
    """Hard cap on each asset's weight (excess redistributed), in (0, 1]; None = no cap."""
    logit_bound: float = 5.0
    """Actions (logits) are clipped to [-logit_bound, logit_bound]; 5 allows weight ratios e^10."""
    drawdown_limit: float = 0.15
    """Drawdown (fraction of the episode's peak wealth) above which cost_drawdown is 1."""
    concentration_cap: float = 0.4
    """Largest asset weight above which cost_concentration is 1."""
    turnover_cap: float = 0.2
    """Daily turnover (fraction of wealth traded) above which cost_turnover is 1."""
    cvar_limit: float = 0.03
    """Daily CVaR(95%) loss (fraction) above which cost_cvar is 1."""
    cvar_window: int = 60
    """Days of the episode's returns the CVaR is computed over (>= 20)."""
    strict: bool = False
    """Refuse, rather than leave out with a warning, tickers with missing prices."""
    allow_implausible_prices: bool = False
    """Accept prices outside [1e-9, 1e12] or moving x1000 overnight (refused by default as data
    errors; see envs/portfolio/validation.py)."""

    @property
    def limits(self) -> dict[str, float]:
        """Each cost's threshold, by cost name."""
        return {"drawdown": self.drawdown_limit, "concentration": self.concentration_cap,
                "turnover": self.turnover_cap, "cvar": self.cvar_limit}


def make_config(**kwargs: Any) -> PortfolioConfig:
    """Validate keyword arguments into a :class:`PortfolioConfig` (UserError naming the key)."""
    known = {f.name for f in dataclasses.fields(PortfolioConfig)}
    for key in kwargs:
        if key not in known:
            raise UserError(f"{ENV_NAME}: unknown option '{key}' "
                            f"(known: {', '.join(sorted(known))})")
    if kwargs.get("prices") is None:
        raise UserError(f"{ENV_NAME}: prices: expected a price file path or a DataFrame")
    for key in ("train_start", "train_end", "test_start", "test_end", "backtest_start",
                "backtest_end"):
        if isinstance(kwargs.get(key), (dt.date, pd.Timestamp)):  # TOML dates arrive as dates
            kwargs[key] = kwargs[key].isoformat()
    if kwargs.get("tickers") is not None:
        _check(isinstance(kwargs["tickers"], (list, tuple)) and len(kwargs["tickers"]) >= 2,
               "tickers", "a list of at least two ticker names", kwargs["tickers"])
        kwargs["tickers"] = tuple(str(t) for t in kwargs["tickers"])
    cfg = PortfolioConfig(**kwargs)
    _integer(cfg.episode_days, "episode_days", 1)
    _integer(cfg.window, "window", 2)
    _integer(cfg.cvar_window, "cvar_window", 20)
    _number(cfg.cost_rate, "cost_rate", "a number in [0, 0.5)", lambda v: 0 <= v < 0.5)
    if cfg.weight_cap is not None:
        _number(cfg.weight_cap, "weight_cap", "None or a number in (0, 1]", lambda v: 0 < v <= 1)
    _number(cfg.logit_bound, "logit_bound", "a number > 0", lambda v: v > 0)
    _check(isinstance(cfg.allow_implausible_prices, bool), "allow_implausible_prices",
           "true or false", cfg.allow_implausible_prices)
    for key in ("drawdown_limit", "concentration_cap", "turnover_cap", "cvar_limit"):
        _number(getattr(cfg, key), key, "a number >= 0", lambda v: v >= 0)
    bounds = {k: _date(getattr(cfg, k), k) for k in ("train_start", "train_end", "test_start",
                                                    "test_end", "backtest_start", "backtest_end")}
    if bounds["test_start"] is not None:
        # Without train_end, training would read the held-out test window.
        _check(bounds["train_end"] is not None, "train_end", "a date before test_start", None)
        _check(bounds["test_start"] > bounds["train_end"], "test_start",
               f"a date after train_end {cfg.train_end}", cfg.test_start)
    return cfg


def _integer(value: Any, key: str, low: int) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    _check(ok, key, f"an integer >= {low}", value)


def _number(value: Any, key: str, expected: str, ok: Any) -> None:
    is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    _check(is_number and np.isfinite(value) and ok(value), key, expected, value)


def _date(value: Any, key: str) -> pd.Timestamp | None:
    """A date given as text (TOML dates arrive as ``datetime.date`` and were turned into text);
    anything else, e.g. the TOML integer 2014, is refused rather than read as nanoseconds."""
    if value is None:
        return None
    _check(isinstance(value, str), key, "a date such as 2015-01-02 (a TOML date or a string)",
           value)
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        _check(False, key, "a date such as 2015-01-02", value)
        return None


def _check(ok: bool, key: str, expected: str, got: Any) -> None:
    if not ok:
        raise UserError(f"{ENV_NAME}: {key}: expected {expected}, got {got!r}")


class PortfolioCore:
    """Batched simulator state and dynamics (no Gymnasium API): ``n`` copies over one panel."""

    def __init__(self, cfg: PortfolioConfig, n: int) -> None:
        self.cfg, self.n = cfg, n
        start, end = ((cfg.backtest_start, cfg.backtest_end) if cfg.backtest
                      else (cfg.train_start, cfg.train_end))
        self.panel = _load_panel(cfg, start, end)
        self.prices = self.panel.to_numpy(dtype=np.float64)
        self.n_assets = self.prices.shape[1]
        self.logret = np.log(self.prices[1:] / self.prices[:-1])
        windows = np.lib.stride_tricks.sliding_window_view(self.logret, cfg.window, axis=0)
        self.vol = np.full(self.prices.shape, np.nan)
        self.vol[cfg.window:] = windows.std(axis=-1, ddof=1)  # vol[t] uses returns up to t
        days = len(self.prices)
        self.first_day = (cfg.window if start is None
                          else int(self.panel.index.searchsorted(pd.Timestamp(start))))
        self.last_start = days - 1 if cfg.backtest else days - 1 - cfg.episode_days
        where = f"{self.panel.index[0].date()}..{self.panel.index[-1].date()}"
        if self.first_day < cfg.window:
            raise UserError(f"{ENV_NAME}: needs {cfg.window} trading days of prices before the "
                            f"first trading day (data {where})")
        if self.first_day >= days - 1 or self.last_start < self.first_day:
            need = "two trading days" if cfg.backtest else f"episode_days={cfg.episode_days} + 1"
            raise UserError(f"{ENV_NAME}: fewer than {need} from the first trading day "
                            f"{_day(self.panel.index, self.first_day)} (data {where})")
        self.obs_dim = cfg.window * self.n_assets + 2 * self.n_assets + 2
        self.day = np.zeros(n, dtype=np.int64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.wealth, self.peak = np.ones(n), np.ones(n)
        self.weights = np.zeros((n, self.n_assets + 1))
        self.returns = np.zeros((n, cfg.cvar_window))  # ring buffer of daily portfolio returns
        self.n_returns = np.zeros(n, dtype=np.int64)
        self.done = np.ones(n, dtype=bool)

    def draw_start(self, rng: np.random.Generator) -> int:
        """A start day for one copy: seeded uniform in training, fixed in backtest mode."""
        if self.cfg.backtest:
            return self.first_day
        return int(rng.integers(self.first_day, self.last_start + 1))

    def reset(self, mask: np.ndarray, starts: np.ndarray) -> None:
        """Restart the copies in ``mask`` at days ``starts`` (one per masked copy), all in cash."""
        self.day[mask], self.steps[mask] = starts, 0
        self.wealth[mask], self.peak[mask] = 1.0, 1.0
        self.weights[mask] = 0.0
        self.weights[mask, -1] = 1.0
        self.returns[mask], self.n_returns[mask] = 0.0, 0
        self.done[mask] = False

    def observe(self) -> np.ndarray:
        """(n, obs_dim) float32 observations at the current close (prices up to ``day``)."""
        w = self.cfg.window
        rows = self.day[:, None] + np.arange(-w, 0)  # logret[s] = log P(s+1)/P(s), s+1 <= day
        window = self.logret[rows].reshape(self.n, w * self.n_assets)
        dd = acc.drawdown(self.wealth, self.peak)[:, None]
        obs = np.concatenate([window, np.clip(self.weights, 0.0, 1.0), dd, self.vol[self.day]],
                             axis=1)
        return obs.astype(np.float32)

    def step(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Rebalance every copy to ``target`` (n, A+1), move one day: (reward, truncated, info)."""
        if self.done.any():
            raise RuntimeError("step() on a finished episode: call reset() first")
        if not (np.all(np.isfinite(target)) and np.all(target >= -1e-12)
                and np.allclose(target.sum(axis=1), 1.0, rtol=0, atol=1e-9)):
            raise ValueError(f"{ENV_NAME}: target weights must be finite, >= 0 and sum to 1 "
                             f"(cash last), got {target}")
        gross = self.prices[self.day + 1] / self.prices[self.day]
        out = acc.rebalance(self.wealth, self.weights, target, gross, self.cfg.cost_rate)
        ret = out.wealth / self.wealth - 1.0
        self.returns[np.arange(self.n), self.n_returns % self.cfg.cvar_window] = ret
        self.n_returns += 1
        full = self.n_returns >= self.cfg.cvar_window
        cvar = np.where(full, acc.cvar(self.returns), 0.0)
        self.wealth, self.weights = out.wealth, out.drifted
        self.peak = np.maximum(self.peak, self.wealth)
        dd = acc.drawdown(self.wealth, self.peak)
        max_weight = target[:, :-1].max(axis=1)
        costs = {
            "drawdown": dd > self.cfg.drawdown_limit,
            "concentration": max_weight > self.cfg.concentration_cap,
            "turnover": out.turnover > self.cfg.turnover_cap,
            "cvar": full & (cvar > self.cfg.cvar_limit),
        }
        info = {f"cost_{k}": v.astype(np.float64) for k, v in costs.items()}
        info["cost"] = sum(info[f"cost_{k}"] for k in COST_NAMES)
        info.update(wealth=self.wealth.copy(), drawdown=dd, turnover=out.turnover,
                    trade_cost=out.trade_cost, max_weight=max_weight, day=self.day.copy())
        self.day += 1
        self.steps += 1
        ends = (self.day >= len(self.prices) - 1) if self.cfg.backtest else (
            self.steps >= self.cfg.episode_days)
        self.done = ends
        return out.log_return, ends.copy(), info

    def action_to_weights(self, actions: np.ndarray) -> np.ndarray:
        """Target weights (n, A+1) from logits: clip to the bounds, softmax, cap."""
        actions = np.asarray(actions, dtype=np.float64)
        if not np.all(np.isfinite(actions)):
            raise ValueError(f"{ENV_NAME}: non-finite action {actions}")
        b = self.cfg.logit_bound
        return acc.logits_to_weights(np.clip(actions, -b, b), self.cfg.weight_cap)

    def spaces(self) -> tuple[gym.spaces.Box, gym.spaces.Box]:
        """(observation space, action space) of one copy."""
        a, w = self.n_assets, self.cfg.window
        low = np.concatenate([np.full(w * a, -np.inf), np.zeros(a + 1), [0.0], np.zeros(a)])
        high = np.concatenate([np.full(w * a, np.inf), np.ones(a + 1), [1.0], np.full(a, np.inf)])
        obs = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        b = np.float32(self.cfg.logit_bound)
        act = gym.spaces.Box(-b, b, shape=(a + 1,), dtype=np.float32)
        return obs, act


def _day(index: pd.DatetimeIndex, i: int) -> str:
    return str(index[i].date()) if i < len(index) else "(after the data)"


def _load_panel(cfg: PortfolioConfig, start: str | None, end: str | None) -> pd.DataFrame:
    """The price rows the env may read: ``window`` days of history before ``start`` up to ``end``.

    Tickers named in the config must all be complete (strict); otherwise incomplete ones are left
    out with a warning unless ``strict``.
    """
    strict = cfg.strict or cfg.tickers is not None
    if isinstance(cfg.prices, pd.DataFrame):
        panel = validate_panel(cfg.prices, check_plausible=not cfg.allow_implausible_prices)
        # A caller-built panel keeps any extra history before `start` (the backtester's baselines
        # need more than `window` days); only rows after `end` are cut.
        return select_window(panel, None, end, strict=strict, tickers=cfg.tickers,
                             source="prices DataFrame")
    return load_prices(Path(cfg.prices), start, end, strict=strict, tickers=cfg.tickers,
                       lookback=cfg.window, check_plausible=not cfg.allow_implausible_prices)


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
        """The price rows this env reads (history before the first trading day included)."""
        return self.core.panel

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
