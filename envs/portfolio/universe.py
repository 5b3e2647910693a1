"""Point-in-time universe: which tickers can be held on which day, from the price file alone.

A ticker is investable from its first price to its last. Blank cells before its first price (not
yet listed) or after its last (delisted) are not "missing data": the ticker simply cannot be held
on those days. Only a blank *between* its first and last price is a gap; it is filled with the
previous close (the position is valued at its last traded price and its return that day is 0),
counted, and refused when ``strict`` is set. The same rules apply to the trained policy and to
every baseline, because both read the panel through this module.

Delisting: a ticker whose last price comes before the file's last date is delisted at that
close. On that day it must be sold (at its last price, costs charged: see
:mod:`envs.portfolio.core`), so it is *holdable* from close ``t`` to ``t+1`` only for
``first <= t < last``. A ticker that still trades on the file's last date is never delisted, even
when a window ends before that date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from envs.portfolio.prices import day_text, parse_bound
from safe_trpo.errors import UserError


@dataclass(frozen=True)
class Universe:
    """A window of a price panel with its point-in-time masks (``T`` rows, ``A`` tickers)."""

    dates: pd.DatetimeIndex  # (T,) the rows, history before the first trading day included
    tickers: list[str]  # (A,) the fixed ticker list (the env's action space follows it)
    prices: np.ndarray  # (T, A) closes; gaps filled forward, before listing = the first price,
    # after delisting = the last price, so every price ratio outside a listing is exactly 1
    listed: np.ndarray  # (T, A) bool: the ticker has a (possibly gap-filled) price that day
    holdable: np.ndarray  # (T, A) bool: may be held from close t to close t+1 (not delisted at t)
    filled_gaps: dict[str, int] = field(default_factory=dict)  # ticker -> cells filled forward
    delisted: dict[str, str] = field(default_factory=dict)  # ticker -> its last date, if in window
    listed_late: dict[str, str] = field(default_factory=dict)  # ticker -> first date, if in window
    dropped: dict[str, str] = field(default_factory=dict)  # ticker -> why it is not in `tickers`

    @property
    def panel(self) -> pd.DataFrame:
        """The closes as a DataFrame, NaN where the ticker is not listed."""
        return pd.DataFrame(np.where(self.listed, self.prices, np.nan), index=self.dates,
                            columns=self.tickers)

    def summary(self) -> str:
        """One line: how many tickers, which listed or delisted inside the window, which dropped
        and why, how many gaps were filled."""
        parts = [f"universe: {len(self.tickers)} tickers"]
        if self.listed_late:
            parts.append("listed inside the window: " + ", ".join(
                f"{t} {d}" for t, d in self.listed_late.items()))
        if self.delisted:
            parts.append("delisted (sold at last price): " + ", ".join(
                f"{t} {d}" for t, d in self.delisted.items()))
        if self.filled_gaps:
            parts.append("gaps filled with the previous close: " + ", ".join(
                f"{t} {n}" for t, n in self.filled_gaps.items()))
        if self.dropped:
            reasons: dict[str, list[str]] = {}
            for t, why in self.dropped.items():
                reasons.setdefault(why, []).append(t)
            parts.append("dropped: " + "; ".join(f"{', '.join(ts)} ({why})"
                                                 for why, ts in reasons.items()))
        return "; ".join(parts)


def build_universe(panel: pd.DataFrame, start: str | None = None, end: str | None = None,
                   tickers: Sequence[str] | None = None, lookback: int = 0,
                   strict: bool = False, source: str = "prices") -> Universe:
    """Cut a parsed panel (NaN = no price) to a window and derive its point-in-time masks.

    Parameters:
        panel: dates x tickers, strictly increasing dates, positive prices or NaN (from
            :func:`~envs.portfolio.prices.read_panel` or
            :func:`~envs.portfolio.prices.validate_panel`).
        start, end: first trading day and last close (inclusive); None = after the lookback /
            the file's last date.
        tickers: the fixed ticker list, in this order (each must exist in the file and have a
            price inside the window); None = every ticker with a price inside the window.
        lookback: rows of history kept before ``start`` (observation or estimation window); the
            file must have that many dates, though a ticker need not be listed on them.
        strict: refuse a gap (a blank between a ticker's first and last price) instead of
            filling it with the previous close.
        source: names the data in messages.
    """
    if tickers is not None:
        unknown = [t for t in tickers if t not in panel.columns]
        if unknown:
            raise UserError(f"{source}: ticker(s) {', '.join(map(str, unknown))} not in the file "
                            f"(it has: {', '.join(map(str, panel.columns))})")
    t_start, t_end = parse_bound(start, "start"), parse_bound(end, "end")
    if t_start is not None and t_end is not None and t_start > t_end:
        raise UserError(f"{source}: start {t_start.date()} is after end {t_end.date()}")
    dates = panel.index
    first = lookback if t_start is None else int(dates.searchsorted(t_start, side="left"))
    last = len(dates) - 1 if t_end is None else int(dates.searchsorted(t_end, side="right")) - 1
    if first - lookback < 0:
        raise UserError(f"{source}: needs {lookback} trading days of history before "
                        f"{dates[min(first, len(dates) - 1)].date()}, the file has {first}")
    if last - first < 1:
        raise UserError(f"{source}: fewer than two trading days in the window "
                        f"{day_text(t_start)}..{day_text(t_end)} after {lookback} days of history "
                        f"(the file covers {dates[0].date()}..{dates[-1].date()})")
    values = panel.to_numpy(dtype=np.float64)
    have = ~np.isnan(values)
    # Each ticker's first and last price over the whole file: delisting is a fact of the file,
    # not of the window.
    any_price = have.any(axis=0)
    first_price = np.where(any_price, have.argmax(axis=0), len(dates))
    last_price = np.where(any_price, len(dates) - 1 - have[::-1].argmax(axis=0), -1)
    names = [str(c) for c in panel.columns]
    wanted = names if tickers is None else [str(t) for t in tickers]
    keep, dropped = [], {}
    for name in wanted:
        j = names.index(name)
        if last_price[j] < first or first_price[j] > last:
            why = "no price inside the window"
            if tickers is not None:
                raise UserError(f"{source}: ticker '{name}': {why} {dates[first].date()}.."
                                f"{dates[last].date()}")
            dropped[name] = why
            continue
        keep.append(j)
    if len(keep) < 2:
        raise UserError(f"{source}: fewer than two tickers with a price between "
                        f"{dates[first].date()} and {dates[last].date()}")
    rows = slice(first - lookback, last + 1)
    window_dates = dates[rows]
    cols = [names[j] for j in keep]
    fp, lp = first_price[keep] - (first - lookback), last_price[keep] - (first - lookback)
    t_idx = np.arange(len(window_dates))[:, None]
    listed = (t_idx >= fp) & (t_idx <= lp)
    raw = values[rows][:, keep]
    gaps = listed & np.isnan(raw)
    filled: dict[str, int] = {}
    for k, name in enumerate(cols):
        n_gaps = int(gaps[:, k].sum())
        if n_gaps:
            if strict:
                day = window_dates[int(np.flatnonzero(gaps[:, k])[0])].date()
                raise UserError(f"{source}: column '{name}': {n_gaps} missing price(s) between "
                                f"its first and last price, first on {day} (strict: gaps are "
                                f"refused instead of filled with the previous close)")
            filled[name] = n_gaps
    # Forward fill inside each listing, then fill before listing backwards (first price) and
    # after delisting forwards (last price): flat prices, so no return outside a listing.
    frame = pd.DataFrame(raw).ffill().bfill()
    prices = frame.to_numpy(dtype=np.float64)
    file_last = len(dates) - 1 - (first - lookback)
    holdable = listed & ((t_idx < lp) | (lp == file_last))
    delisted = {n: str(window_dates[lp[k]].date()) for k, n in enumerate(cols)
                if lp[k] < file_last and lp[k] < len(window_dates)}
    late = {n: str(window_dates[fp[k]].date()) for k, n in enumerate(cols)
            if fp[k] > lookback}
    return Universe(dates=window_dates, tickers=cols, prices=prices, listed=listed,
                    holdable=holdable, filled_gaps=filled, delisted=delisted, listed_late=late,
                    dropped=dropped)


def survivorship_note(panel: pd.DataFrame, tickers: Sequence[str] | None = None) -> str | None:
    """One line when every ticker used (all with data if None) has a price on the file's last
    date: a list of today's survivors makes any backtest over the past look better than it was.
    None when some ticker was delisted inside the file."""
    cols = [t for t in (tickers if tickers is not None else panel.columns)
            if panel[t].notna().any()]
    if cols and panel[cols].iloc[-1].notna().all():
        return (f"survivorship: every ticker used trades on the file's last date "
                f"{panel.index[-1].date()}, none was delisted; a universe picked from today's "
                f"survivors overstates past returns")
    return None
