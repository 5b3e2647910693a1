"""Plausibility checks on a parsed price panel, and dates with mixed timezone offsets.

A price file that parses can still be wrong in ways that silently wreck a backtest: a cell of
1e308 (overflows every return computed from it), a column that jumps a million-fold overnight (a
unit change or a missing decimal point). Each is refused with one line naming the row (date and
ticker, and the file line where known) and how to accept the data if it is real
(``allow_implausible_prices``). Kept apart from the loader so either can change alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from safe_trpo.errors import UserError

# Far outside any traded instrument's price in any currency unit (Berkshire A: ~7e5 USD; tokens
# trade near 1e-8), and far inside float64's range, so returns never overflow.
MIN_PRICE, MAX_PRICE = 1e-9, 1e12
# A close that moves more than this factor from the previous close of the same ticker. Real
# one-day moves stay far below (the largest stock moves are ~10x; an unadjusted 1:100 reverse
# split is 100x); a x1e6 jump is a unit or decimal-point error.
MAX_DAILY_FACTOR = 1e3
OPT_OUT = ("if these prices are real, set allow_implausible_prices = true in [env.kwargs] "
           "(backtest: --allow-implausible-prices)")


def check_plausible(panel: pd.DataFrame, source: str,
                    rows: Sequence[str] | None = None) -> None:
    """Refuse absurd magnitudes and overnight jumps; ``panel`` may hold NaN (missing) cells.

    panel: dates (index) x tickers, float prices > 0 (already checked by the loader).
    source: the file, named in the message. rows: for a wide file, the file line of each panel
    row (``rows[i]`` labels ``panel.iloc[i]``); None when rows do not map one to one.
    """
    values = panel.to_numpy(dtype=np.float64)
    present = ~np.isnan(values)
    absurd = present & ((values > MAX_PRICE) | (values < MIN_PRICE))
    if absurd.any():
        i, j = map(int, np.argwhere(absurd)[0])
        raise UserError(f"{_where(panel, source, rows, i, j)}: price {values[i, j]:.6g} is "
                        f"outside the plausible range [{MIN_PRICE:g}, {MAX_PRICE:g}]; {OPT_OUT}")
    for j in range(values.shape[1]):
        idx = np.flatnonzero(present[:, j])
        if idx.size < 2:
            continue
        ratio = values[idx[1:], j] / values[idx[:-1], j]
        jumps = np.flatnonzero((ratio > MAX_DAILY_FACTOR) | (ratio < 1 / MAX_DAILY_FACTOR))
        if jumps.size:
            k = int(jumps[0])
            i, prev = int(idx[k + 1]), int(idx[k])
            raise UserError(f"{_where(panel, source, rows, i, j)}: price {values[i, j]:.6g} is "
                            f"{ratio[k]:.3g} times the previous close {values[prev, j]:.6g} "
                            f"({panel.index[prev].date()}); {OPT_OUT}")


def _where(panel: pd.DataFrame, source: str, rows: Sequence[str] | None, i: int, j: int) -> str:
    line = f"{rows[i]}: " if rows is not None and i < len(rows) else ""
    return f"{source}: {line}date {panel.index[i].date()}, ticker '{panel.columns[j]}'"


def mixed_offsets_error(text: pd.Series, rows: Sequence[str], source: str,
                        name: str) -> UserError:
    """The error for a date column whose cells carry different UTC offsets: names the first
    row whose offset differs from the first dated row's (a daily close has one time zone)."""
    first: object = None
    for i, cell in enumerate(text):
        if not cell:
            continue
        try:
            offset = pd.Timestamp(cell).utcoffset()
        except (ValueError, TypeError):
            continue
        if first is None:
            first = offset
        elif offset != first:
            return UserError(f"{source}: {rows[i]}: column '{name}': date '{cell}' has UTC offset "
                             f"{offset}, earlier dates {first}; expected one time zone (or "
                             f"plain dates such as 2015-01-02)")
    return UserError(f"{source}: column '{name}': dates mix time zones; expected one time zone "
                     f"(or plain dates such as 2015-01-02)")
