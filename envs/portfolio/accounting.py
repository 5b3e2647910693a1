"""Pure portfolio accounting over a batch axis: weights, rebalancing, costs, risk and metrics.

Conventions shared by the environment and the backtester (one implementation for both):

- Weight vectors have ``A + 1`` entries: the ``A`` assets, then cash (last). Long-only, summing
  to 1. Cash earns `cash_rate` a year (default 0).
- Day ``t``: the portfolio is valued at the close of ``t`` (holding the *drifted* weights, i.e.
  yesterday's target weights after today's price moves), then rebalanced at that close to the
  target weights. The day's outcome is realised over ``t -> t+1``.
- Turnover = ``sum_i |w_target_i - w_drifted_i|`` over the **assets only**: cash is the
  settlement account, so buying 1.0 of wealth worth of stock from cash is a turnover of 1.0 (not
  2.0). Moving from all-cash to fully invested therefore counts as turnover 1.0.
- Transaction cost = ``cost_rate * turnover`` as a fraction of the wealth before trading, plus
  the half-spread and square-root impact terms of :func:`trade_cost_fraction` when set; it is
  paid out of the whole portfolio, i.e. the target weights apply to the wealth net of costs.
- Wealth after the day: ``W_{t+1} = W_t * (1 - cost_rate * turnover_t) * sum_i w_i R_i`` with
  ``R_i = P_i(t+1) / P_i(t)`` (cash ``R = (1 + cash_rate) ** (1/252)``, 1 by default).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

TRADING_DAYS = 252  # annualisation factor for daily figures
CVAR_LEVEL = 0.95


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (stable: the row maximum is subtracted first)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cap_weights(weights: np.ndarray, cap: float) -> np.ndarray:
    """Cap each asset weight at ``cap`` by iterative capping and proportional redistribution.

    Asset weights above ``cap`` are set to ``cap``; the excess is shared among the entries not yet
    capped (the other assets and cash) in proportion to their weights; repeated until no asset is
    above the cap. Cash is never capped, so this always terminates (at most ``A`` rounds) with a
    long-only vector summing to 1. It is the usual index-capping rule, not a Euclidean projection:
    it keeps the relative sizes of the uncapped positions.

    Parameters:
        weights: (N, A+1) long-only weights summing to 1 per row, cash last.
        cap: maximum weight of one asset, in (0, 1].
    """
    w = np.array(weights, dtype=np.float64, copy=True)
    capped = np.zeros(w.shape, dtype=bool)
    for _ in range(w.shape[-1]):
        over = np.zeros(w.shape, dtype=bool)
        over[:, :-1] = w[:, :-1] > cap * (1 + 1e-12)
        if not over.any():
            break
        excess = np.where(over, w - cap, 0.0).sum(axis=1, keepdims=True)
        capped |= over
        w[over] = cap
        free = np.where(capped, 0.0, w)
        share = free.sum(axis=1, keepdims=True)
        # share > 0 always: cash is never capped and a softmax gives it a positive weight; a
        # zero-cash input with every asset capped would need cap * A < 1, i.e. all cash anyway.
        w = np.where(capped, w, w + excess * np.divide(free, share, out=np.zeros_like(free),
                                                      where=share > 0))
    return w


def logits_to_weights(logits: np.ndarray, cap: float | None = None) -> np.ndarray:
    """Target weights from the agent's logits (N, A+1): softmax, then :func:`cap_weights`."""
    w = softmax(np.asarray(logits, dtype=np.float64))
    return w if cap is None else cap_weights(w, cap)


class Rebalance(NamedTuple):
    """Outcome of one day for each copy (all arrays have a leading batch axis N)."""

    wealth: np.ndarray  # (N,) wealth at the next close, net of costs
    drifted: np.ndarray  # (N, A+1) target weights after the next day's price moves
    turnover: np.ndarray  # (N,) sum |w_target - w_drifted| over assets
    trade_cost: np.ndarray  # (N,) transaction cost paid, in currency (same unit as wealth)
    log_return: np.ndarray  # (N,) log(W_{t+1} / W_t), net of costs


def trade_cost_fraction(delta: np.ndarray, vol: np.ndarray, cost_rate: float,
                        half_spread: float = 0.0, impact_coef: float = 0.0,
                        aum_to_adv: float = 0.0) -> np.ndarray:
    """Cost of a trade as a fraction of the wealth before trading, per copy (N,).

    ``sum_i |dw_i| * (cost_rate + half_spread) + impact_coef * sum_i vol_i * |dw_i| *
    sqrt(|dw_i| * aum_to_adv)``: proportional fees, half the bid-ask spread crossed on every unit
    traded, and the square-root market-impact law (Almgren et al. 2005; Toth et al. 2011), whose
    cost per unit traded is ``impact_coef * daily volatility * sqrt(traded value / ADV)``.

    Parameters:
        delta: (N, A) weight changes of the assets (cash excluded).
        vol: (N, A) or (A,) daily volatility of each asset (std of daily log returns).
        cost_rate: fees per unit traded (0.001 = 10 bps).
        half_spread: half the quoted spread as a fraction of the price (0.0005 = 5 bps).
        impact_coef: the dimensionless square-root-law coefficient (empirically about 0.5-1).
        aum_to_adv: portfolio value over each stock's average daily traded value (0.01 = the
            whole portfolio is 1 % of a day's volume), so ``|dw_i| * aum_to_adv`` is the traded
            fraction of the day's volume.
    """
    traded = np.abs(delta)
    cost = (cost_rate + half_spread) * traded.sum(axis=1)
    if impact_coef > 0 and aum_to_adv > 0:
        cost = cost + impact_coef * (vol * traded * np.sqrt(traded * aum_to_adv)).sum(axis=1)
    return cost


def rebalance(wealth: np.ndarray, drifted: np.ndarray, target: np.ndarray, gross: np.ndarray,
              cost_rate: float, cost_frac: np.ndarray | None = None,
              cash_gross: float = 1.0) -> Rebalance:
    """Trade from ``drifted`` to ``target`` at today's close, then let prices move to tomorrow.

    Parameters:
        wealth: (N,) wealth at today's close before trading.
        drifted: (N, A+1) weights held before trading (yesterday's targets after today's moves).
        target: (N, A+1) weights to hold from today's close.
        gross: (N, A) price ratios ``P(t+1) / P(t)`` of the assets.
        cost_rate: proportional cost per unit of turnover (0.001 = 10 basis points), used when
            ``cost_frac`` is None.
        cost_frac: (N,) the trade's full cost as a fraction of wealth
            (:func:`trade_cost_fraction`); None = ``cost_rate * turnover``.
        cash_gross: one day's growth of cash, ``(1 + annual rate) ** (1 / 252)``.
    """
    turnover = np.abs(target[:, :-1] - drifted[:, :-1]).sum(axis=1)
    if cost_frac is None:
        cost_frac = cost_rate * turnover
    held = target[:, :-1] * gross
    cash = target[:, -1] * cash_gross
    growth = held.sum(axis=1) + cash
    new_wealth = wealth * (1.0 - cost_frac) * growth
    new_drifted = np.concatenate([held, cash[:, None]], axis=1) / growth[:, None]
    return Rebalance(wealth=new_wealth, drifted=new_drifted, turnover=turnover,
                     trade_cost=wealth * cost_frac,
                     log_return=np.log1p(-cost_frac) + np.log(growth))


def drawdown(wealth: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Fractional drop from the running peak: ``1 - W / max W`` (0 at a new high)."""
    return 1.0 - wealth / peak


def cvar(returns: np.ndarray, level: float = CVAR_LEVEL) -> np.ndarray:
    """CVaR of daily returns at ``level``, as a positive loss, per row of (N, m) ``returns``.

    The mean of the worst ``ceil((1 - level) * m)`` returns (at least one), negated: a CVaR(95%)
    of 0.03 means the worst 5% of days lost 3% on average.
    """
    r = np.atleast_2d(returns)
    k = max(1, math.ceil(round((1.0 - level) * r.shape[1], 9)))
    worst = np.partition(r, k - 1, axis=1)[:, :k]
    return -worst.mean(axis=1)


def max_drawdown(wealth: np.ndarray) -> float:
    """Largest fractional drop from a running peak of a wealth curve (starting value included)."""
    w = np.asarray(wealth, dtype=np.float64)
    return float(np.max(1.0 - w / np.maximum.accumulate(w)))


def performance_metrics(wealth: np.ndarray, turnover: np.ndarray,
                        trade_cost: np.ndarray) -> dict[str, float | int]:
    """Standard backtest figures from one wealth curve.

    Parameters:
        wealth: (n+1,) wealth at each close, starting at the initial wealth (1.0) before the
            first trade; daily returns are the simple returns ``W_i / W_{i-1} - 1``, net of costs.
        turnover: (n,) daily turnover, the first day's initial allocation from cash included.
        trade_cost: (n,) transaction costs paid each day, in currency (initial wealth 1.0).

    Definitions (annualised with 252 trading days, zero risk-free rate):
        annual_return: geometric, ``(W_n / W_0) ** (252 / n) - 1``.
        annual_volatility: sample std (ddof=1) of daily simple returns times sqrt(252).
        sharpe: mean / std (ddof=1) of daily simple returns, times sqrt(252).
        sortino: mean daily simple return / downside deviation ``sqrt(mean(min(r, 0)^2))``
            (target 0, over all days), times sqrt(252).
        max_drawdown: largest ``1 - W / running max W`` on the curve.
        cvar_95: mean of the worst 5% daily simple returns, as a positive loss.
        avg_daily_turnover: mean daily turnover; total_costs: sum of the costs paid.
    NaN where undefined (e.g. zero volatility), never silently replaced.
    """
    w = np.asarray(wealth, dtype=np.float64)
    r = w[1:] / w[:-1] - 1.0
    n = r.size
    sd = r.std(ddof=1) if n > 1 else math.nan
    down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) if n else math.nan
    ann = math.sqrt(TRADING_DAYS)
    return {
        "days": n,
        "final_wealth": float(w[-1]),
        "annual_return": float((w[-1] / w[0]) ** (TRADING_DAYS / n) - 1.0) if n else math.nan,
        "annual_volatility": float(sd * ann),
        "sharpe": float(r.mean() / sd * ann) if sd > 0 else math.nan,
        "sortino": float(r.mean() / down * ann) if down > 0 else math.nan,
        "max_drawdown": max_drawdown(w),
        "cvar_95": float(cvar(r)[0]) if n else math.nan,
        "avg_daily_turnover": float(np.mean(turnover)) if n else math.nan,
        "total_costs": float(np.sum(trade_cost)),
    }
