"""Batched portfolio simulator (no Gymnasium API): ``n`` copies over one point-in-time universe.

The dynamics of one day ``t`` for every copy (see :mod:`envs.portfolio.env` for the spaces):

1. The strategy decides target weights on data up to close ``t`` (:meth:`PortfolioCore.step`).
2. The order joins a queue and fills ``execution_lag_days`` closes later (0 = at close ``t``).
   Until an order fills, the copy keeps its drifted weights. A day with no order due re-uses the
   drifted weights as the order (so a delisting still forces its sale).
3. At the fill, tickers that cannot be held from this close (not listed, or delisted today:
   :class:`~envs.portfolio.universe.Universe`) get weight 0: a delisted position is sold at its
   last price, with costs; the freed weight is spread over the remaining positions and cash in
   proportion to their weights (the strategy re-allocates). Then the optional safety projection
   (:mod:`envs.portfolio.safety`) enforces hard concentration / turnover caps.
4. The trade pays fees, half-spread and square-root impact
   (:func:`~envs.portfolio.accounting.trade_cost_fraction`); prices move to ``t+1``; cash earns
   ``cash_rate``.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd

from envs.portfolio import accounting as acc
from envs.portfolio.config import COST_NAMES, ENV_NAME, PortfolioConfig
from envs.portfolio.prices import read_panel, validate_panel
from envs.portfolio.safety import Projection
from envs.portfolio.universe import Universe, build_universe
from safe_trpo.errors import UserError


class PortfolioCore:
    """Batched simulator state and dynamics: ``n`` copies over one universe."""

    def __init__(self, cfg: PortfolioConfig, n: int, universe: Universe | None = None) -> None:
        """``universe``: an already built universe (the backtester shares one); None = load it
        from ``cfg.prices`` and the config's window."""
        self.cfg, self.n = cfg, n
        start, end = ((cfg.backtest_start, cfg.backtest_end) if cfg.backtest
                      else (cfg.train_start, cfg.train_end))
        self.universe = universe if universe is not None else load_universe(cfg, start, end)
        u = self.universe
        self.prices = u.prices
        self.holdable = u.holdable
        self.n_assets = self.prices.shape[1]
        self.logret = np.log(self.prices[1:] / self.prices[:-1])  # 0 outside a listing
        windows = np.lib.stride_tricks.sliding_window_view(self.logret, cfg.window, axis=0)
        self.vol = np.full(self.prices.shape, np.nan)
        self.vol[cfg.window:] = windows.std(axis=-1, ddof=1)  # vol[t] uses returns up to t
        # The impact term needs a volatility for every asset: before an estimate exists, 0.
        self.vol_or_zero = np.nan_to_num(self.vol, nan=0.0)
        days = len(self.prices)
        self.first_day = (cfg.window if start is None
                          else int(u.dates.searchsorted(pd.Timestamp(start))))
        self.last_start = days - 1 if cfg.backtest else days - 1 - cfg.episode_days
        where = f"{u.dates[0].date()}..{u.dates[-1].date()}"
        if self.first_day < cfg.window:
            raise UserError(f"{ENV_NAME}: needs {cfg.window} trading days of prices before the "
                            f"first trading day (data {where})")
        if self.first_day >= days - 1 or self.last_start < self.first_day:
            need = "two trading days" if cfg.backtest else f"episode_days={cfg.episode_days} + 1"
            raise UserError(f"{ENV_NAME}: fewer than {need} from the first trading day "
                            f"{_day(u.dates, self.first_day)} (data {where})")
        self.obs_dim = cfg.window * self.n_assets + 3 * self.n_assets + 2
        self.cash_gross = (1.0 + cfg.cash_rate) ** (1.0 / acc.TRADING_DAYS)
        self.safety = (Projection(self.n_assets, cfg.hard_concentration_cap,
                                  cfg.hard_turnover_cap)
                       if cfg.hard_concentration_cap is not None
                       or cfg.hard_turnover_cap is not None else None)
        lag = cfg.execution_lag_days
        self.day = np.zeros(n, dtype=np.int64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.wealth, self.peak = np.ones(n), np.ones(n)
        self.weights = np.zeros((n, self.n_assets + 1))
        self.pending = np.zeros((n, lag, self.n_assets + 1))  # orders not yet filled, oldest 1st
        self.has_pending = np.zeros((n, lag), dtype=bool)
        self.returns = np.zeros((n, cfg.cvar_window))  # ring buffer of daily portfolio returns
        self.n_returns = np.zeros(n, dtype=np.int64)
        self.done = np.ones(n, dtype=bool)

    @property
    def panel(self) -> pd.DataFrame:
        """The closes this core reads, NaN where a ticker is not listed."""
        return self.universe.panel

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
        self.pending[mask], self.has_pending[mask] = 0.0, False
        self.returns[mask], self.n_returns[mask] = 0.0, 0
        self.done[mask] = False

    def observe(self) -> np.ndarray:
        """(n, obs_dim) float32 observations at the current close (prices up to ``day``)."""
        w = self.cfg.window
        rows = self.day[:, None] + np.arange(-w, 0)  # logret[s] = log P(s+1)/P(s), s+1 <= day
        window = self.logret[rows].reshape(self.n, w * self.n_assets)
        dd = acc.drawdown(self.wealth, self.peak)[:, None]
        obs = np.concatenate([window, np.clip(self.weights, 0.0, 1.0), dd,
                              self.vol_or_zero[self.day],
                              self.holdable[self.day].astype(np.float64)], axis=1)
        return obs.astype(np.float32)

    def step(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Queue ``target`` (n, A+1) decided today, fill the order due, move one day.

        A row of NaN is "no order today" (hold; an order already queued still fills).
        Returns (reward = log wealth ratio net of costs, truncated, info)."""
        if self.done.any():
            raise RuntimeError("step() on a finished episode: call reset() first")
        no_order = np.isnan(target).all(axis=1)
        check = target[~no_order]
        # Plain reductions rather than np.allclose: this runs every simulated day.
        if not (np.isfinite(check).all() and check.min(initial=0.0) >= -1e-12
                and np.abs(check.sum(axis=1) - 1.0).max(initial=0.0) <= 1e-9):
            raise ValueError(f"{ENV_NAME}: target weights must be finite, >= 0 and sum to 1 "
                             f"(cash last), got {target}")
        fill = self._due(target, no_order)
        hold = self.holdable[self.day]
        fill = restrict(fill, hold)
        interventions = np.zeros(self.n)
        infeasible = np.zeros(self.n)
        if self.safety is not None:
            for i in range(self.n):
                if self.safety.violates(fill[i], self.weights[i], hold[i]):
                    projected, bad = self.safety.project(fill[i], self.weights[i], hold[i])
                    interventions[i] = float(np.abs(projected - fill[i]).max() > 1e-9)
                    infeasible[i] = float(bad)
                    fill[i] = projected
        cfg = self.cfg
        gross = self.prices[self.day + 1] / self.prices[self.day]
        cost_frac = acc.trade_cost_fraction(fill[:, :-1] - self.weights[:, :-1],
                                            self.vol_or_zero[self.day], cfg.cost_rate,
                                            cfg.half_spread, cfg.impact_coef, cfg.aum_to_adv)
        out = acc.rebalance(self.wealth, self.weights, fill, gross, cfg.cost_rate,
                            cost_frac=cost_frac, cash_gross=self.cash_gross)
        ret = out.wealth / self.wealth - 1.0
        self.returns[np.arange(self.n), self.n_returns % cfg.cvar_window] = ret
        self.n_returns += 1
        full = self.n_returns >= cfg.cvar_window
        cvar = np.where(full, acc.cvar(self.returns), 0.0)
        self.wealth, self.weights = out.wealth, out.drifted
        self.peak = np.maximum(self.peak, self.wealth)
        dd = acc.drawdown(self.wealth, self.peak)
        max_weight = fill[:, :-1].max(axis=1)
        costs = {
            "drawdown": dd > cfg.drawdown_limit,
            "concentration": max_weight > cfg.concentration_cap,
            "turnover": out.turnover > cfg.turnover_cap,
            "cvar": full & (cvar > cfg.cvar_limit),
        }
        info = {f"cost_{k}": v.astype(np.float64) for k, v in costs.items()}
        info["cost"] = sum(info[f"cost_{k}"] for k in COST_NAMES)
        info.update(wealth=self.wealth.copy(), drawdown=dd, turnover=out.turnover,
                    trade_cost=out.trade_cost, max_weight=max_weight, day=self.day.copy(),
                    daily_return=ret, safety_interventions=interventions,
                    safety_infeasible=infeasible)
        self.day += 1
        self.steps += 1
        ends = (self.day >= len(self.prices) - 1) if cfg.backtest else (
            self.steps >= cfg.episode_days)
        self.done = ends
        return out.log_return, ends.copy(), info

    def _due(self, target: np.ndarray, no_order: np.ndarray) -> np.ndarray:
        """Queue today's order; return the order that fills at today's close (n, A+1): the
        drifted weights where none is due."""
        if self.cfg.execution_lag_days == 0:
            return np.where(no_order[:, None], self.weights, target)
        fill = np.where(self.has_pending[:, :1], self.pending[:, 0], self.weights)
        self.pending = np.concatenate([self.pending[:, 1:], target[:, None]], axis=1)
        self.has_pending = np.concatenate([self.has_pending[:, 1:], ~no_order[:, None]], axis=1)
        return fill

    def action_to_weights(self, actions: np.ndarray) -> np.ndarray:
        """Target weights (n, A+1) from logits: clip to the bounds, mask tickers that cannot be
        held today, softmax over the rest and cash, cap."""
        actions = np.asarray(actions, dtype=np.float64)
        if not np.all(np.isfinite(actions)):
            raise ValueError(f"{ENV_NAME}: non-finite action {actions}")
        b = self.cfg.logit_bound
        logits = np.clip(actions, -b, b)
        hold = self.holdable[self.day[:len(logits)]]
        logits[:, :-1] = np.where(hold, logits[:, :-1], -np.inf)
        return acc.logits_to_weights(logits, self.cfg.weight_cap)

    def spaces(self) -> tuple[gym.spaces.Box, gym.spaces.Box]:
        """(observation space, action space) of one copy."""
        a, w = self.n_assets, self.cfg.window
        low = np.concatenate([np.full(w * a, -np.inf), np.zeros(a + 1), [0.0], np.zeros(2 * a)])
        high = np.concatenate([np.full(w * a, np.inf), np.ones(a + 1), [1.0],
                               np.full(a, np.inf), np.ones(a)])
        obs = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        b = np.float32(self.cfg.logit_bound)
        act = gym.spaces.Box(-b, b, shape=(a + 1,), dtype=np.float32)
        return obs, act


def restrict(weights: np.ndarray, holdable: np.ndarray) -> np.ndarray:
    """Zero the assets that cannot be held (n, A) and spread their weight over the remaining
    positions and cash in proportion to their weights (all cash if nothing else is held)."""
    w = weights.copy()
    w[:, :-1] = np.where(holdable, w[:, :-1], 0.0)
    total = w.sum(axis=1, keepdims=True)
    empty = total[:, 0] <= 0
    w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    w[empty, -1] = 1.0
    return w


def load_universe(cfg: PortfolioConfig, start: str | None, end: str | None) -> Universe:
    """The rows the env may read: ``window`` days of history before ``start`` up to ``end``."""
    if isinstance(cfg.prices, pd.DataFrame):
        panel = validate_panel(cfg.prices, check_plausible=not cfg.allow_implausible_prices)
        # A caller-built panel keeps any extra history before `start` (the backtester's
        # baselines need more than `window` days); only rows after `end` are cut.
        lookback = cfg.window if start is None else int(
            panel.index.searchsorted(pd.Timestamp(start)))
        return build_universe(panel, start, end, tickers=cfg.tickers, lookback=lookback,
                              strict=cfg.strict, source="prices DataFrame")
    path = Path(cfg.prices)
    return build_universe(read_panel(path, not cfg.allow_implausible_prices), start, end,
                          tickers=cfg.tickers, lookback=cfg.window, strict=cfg.strict,
                          source=str(path))


def _day(index: pd.DatetimeIndex, i: int) -> str:
    return str(index[i].date()) if i < len(index) else "(after the data)"
