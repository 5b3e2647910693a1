"""Load and validate a daily price panel from a user's CSV or Parquet file.

Two layouts are accepted, whatever the tickers and dates:

- wide: a date column (named ``date``/``Date``, otherwise the first column) and one column of
  closing prices per ticker; a blank cell means "no price that day" (e.g. not yet listed);
- long: exactly the three columns ``date``, ``ticker``, ``price`` (any letter case), one row per
  (date, ticker), pivoted to the wide layout.

Anything malformed is refused with a :class:`~safe_trpo.errors.UserError` naming the file, the
row (the CSV line number, or the Parquet row number) or the column, and what was expected:
unparseable or duplicate dates, dates out of order, non-positive prices, non-numeric cells, and
fewer than two tickers with data. A ticker with missing prices inside the requested window is
left out with a warning, or refused when ``strict`` is set.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from envs.portfolio import validation
from safe_trpo.errors import UserError

# Cells read as "no price that day" (compared lower-cased, after stripping blanks).
MISSING_MARKERS = frozenset({"", "na", "nan", "n/a", "#n/a", "null", "none"})
LONG_COLUMNS = ("date", "ticker", "price")


def load_prices(path: str | Path, start: str | None = None, end: str | None = None,
                strict: bool = False, tickers: Sequence[str] | None = None,
                lookback: int = 0, check_plausible: bool = True) -> pd.DataFrame:
    """Read a price file and return a validated panel: index = dates, one column per ticker.

    Parameters:
        path: a ``.csv`` or ``.parquet``/``.pq`` file, wide or long layout (module docstring).
        start, end: inclusive window bounds (any date pandas parses, e.g. ``"2015-01-02"``);
            None = from the file's first / to its last date.
        strict: refuse (instead of leaving out with a warning) a ticker with missing prices in
            the returned rows.
        tickers: keep only these tickers, in this order; one not in the file is refused.
        lookback: trading days of history to return before ``start`` (e.g. the observation
            window); they must be complete too. With ``start`` None the first ``lookback`` rows
            of the file are the history.
        check_plausible: refuse absurd magnitudes and x1000 overnight jumps
            (:mod:`envs.portfolio.validation`); False accepts them.

    Returns a float64 DataFrame (index named ``date``, strictly increasing) with no missing
    values and at least two tickers and two rows after the lookback.
    """
    path = Path(path)
    panel = read_panel(path, check_plausible)
    return select_window(panel, start, end, strict=strict, tickers=tickers, lookback=lookback,
                         source=str(path))


def read_panel(path: str | Path, check_plausible: bool = True) -> pd.DataFrame:
    """Read and validate a whole price file (wide or long) into dates x tickers, NaN where a
    ticker has no price that day. Every check of the file's contents runs here, once, so the
    point-in-time universe (:mod:`envs.portfolio.universe`) and the complete-panel loader
    :func:`load_prices` apply the same validation."""
    path = Path(path)
    table, rows = _read_table(path)
    panel = _parse_table(table, rows, str(path))
    if check_plausible:
        lower = {str(c).lower() for c in table.columns}
        wide = not (len(table.columns) == 3 and lower == set(LONG_COLUMNS))
        validation.check_plausible(panel, str(path), rows if wide else None)
    return panel


def select_window(panel: pd.DataFrame, start: str | None = None, end: str | None = None,
                  strict: bool = False, tickers: Sequence[str] | None = None, lookback: int = 0,
                  source: str = "prices") -> pd.DataFrame:
    """Cut a parsed panel (may hold NaN for missing prices) to a window; drop incomplete tickers.

    Parameters as in :func:`load_prices`; ``source`` names the data in messages.
    """
    if tickers is not None:
        unknown = [t for t in tickers if t not in panel.columns]
        if unknown:
            raise UserError(f"{source}: ticker(s) {', '.join(map(str, unknown))} not in the file "
                            f"(it has: {', '.join(map(str, panel.columns))})")
        panel = panel[list(tickers)]
    t_start, t_end = parse_bound(start, "start"), parse_bound(end, "end")
    if t_start is not None and t_end is not None and t_start > t_end:
        raise UserError(f"{source}: start {t_start.date()} is after end {t_end.date()}")
    dates = panel.index
    first = 0 if t_start is None else int(dates.searchsorted(t_start, side="left")) - lookback
    last = len(dates) - 1 if t_end is None else int(dates.searchsorted(t_end, side="right")) - 1
    if first < 0:
        raise UserError(f"{source}: needs {lookback} trading days of history before "
                        f"{t_start.date()}, the file has {first + lookback}")
    if last - (first + lookback) < 1:
        raise UserError(f"{source}: fewer than two trading days in the window "
                        f"{day_text(t_start)}..{day_text(t_end)} after {lookback} days of history "
                        f"(the file covers {dates[0].date()}..{dates[-1].date()})")
    window = panel.iloc[first:last + 1]
    keep = _drop_incomplete(window, strict, source)
    if len(keep) < 2:
        raise UserError(f"{source}: fewer than two tickers with complete prices between "
                        f"{window.index[0].date()} and {window.index[-1].date()} "
                        f"(usable: {', '.join(keep) or 'none'})")
    return window[keep].astype(np.float64)


def validate_panel(panel: pd.DataFrame, source: str = "prices DataFrame",
                   check_plausible: bool = True) -> pd.DataFrame:
    """Check a panel built in code (not read from a file): dates and prices as a file would be.

    The index must be a strictly increasing DatetimeIndex and the cells numbers, positive where
    present; NaN marks a missing price, handled later by :func:`select_window`.
    """
    if not isinstance(panel, pd.DataFrame) or not isinstance(panel.index, pd.DatetimeIndex):
        raise UserError(f"{source}: expected a DataFrame indexed by dates (a DatetimeIndex)")
    rows = [f"date {d}" for d in panel.index.astype(str)]
    _check_order(panel.index.to_numpy(), rows, source)
    data = {str(c): _parse_prices(panel[c], rows, source, str(c)) for c in panel.columns}
    if len(data) < 2:
        raise UserError(f"{source}: fewer than two tickers (columns)")
    out = pd.DataFrame(data, index=pd.DatetimeIndex(panel.index, name="date"))
    if check_plausible:
        validation.check_plausible(out, source)
    return out


def _drop_incomplete(window: pd.DataFrame, strict: bool, source: str) -> list[str]:
    """Tickers with a price on every row; warn about (or, strict, refuse) the others."""
    keep, left_out = [], []
    for col in window.columns:
        values = window[col].to_numpy()
        missing = np.isnan(values)
        if not missing.any():
            keep.append(col)
            continue
        valid = np.flatnonzero(~missing)
        if valid.size == 0:
            why = "no prices in the window"
        elif not missing[valid[0]:].any():  # blanks only before its first price: listed late
            why = (f"no price until {window.index[valid[0]].date()} "
                   f"(window starts {window.index[0].date()})")
        else:
            hole = valid[0] + int(np.flatnonzero(missing[valid[0]:])[0])
            why = (f"{int(missing[valid[0]:].sum())} missing price(s) after its first price, "
                   f"first on {window.index[hole].date()}")
        if strict:
            raise UserError(f"{source}: column '{col}': {why} (strict: every ticker must have a "
                            f"price on every day of the window)")
        left_out.append(f"{col} ({why})")
    if left_out:
        warnings.warn(f"{source}: leaving out {len(left_out)} ticker(s) with missing prices in "
                      f"the window: {'; '.join(left_out)}", UserWarning, stacklevel=3)
    return keep


def parse_bound(value: str | None, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{name}: cannot parse date '{value}' (expected e.g. 2015-01-02)") from exc


def day_text(ts: pd.Timestamp | None) -> str:
    return "…" if ts is None else str(ts.date())


# --- reading the file into a table of raw cells --------------------------------------------------

def _read_table(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The file's cells (object dtype, header as column names) and a label for each data row."""
    if not path.is_file():
        raise UserError(f"{path}: price file not found (relative paths are resolved against "
                        f"the current directory, {Path.cwd()})")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return _read_csv(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    raise UserError(f"{path}: expected a .csv or .parquet price file, got '{path.suffix}'")


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[str]]:
    # The csv module rather than pandas: it keeps each row's line number for error messages and
    # does not rename duplicate column names.
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header: list[str] | None = None
            cells, rows = [], []
            for record in reader:
                if not any(c.strip() for c in record):
                    continue  # blank line
                if header is None:
                    header = [c.strip() for c in record]
                    continue
                if len(record) != len(header):
                    raise UserError(f"{path}: line {reader.line_num}: expected {len(header)} "
                                    f"fields like the header, got {len(record)}")
                cells.append(record)
                rows.append(f"line {reader.line_num}")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc
    except csv.Error as exc:
        raise UserError(f"{path}: malformed CSV: {exc}") from exc
    if header is None:
        raise UserError(f"{path}: empty file, expected a header row")
    _check_header(header, path)
    return pd.DataFrame(cells, columns=header, dtype=object), rows


def _read_parquet(path: Path) -> tuple[pd.DataFrame, list[str]]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types; all mean "not a readable parquet"
        raise UserError(f"{path}: cannot read Parquet file: {exc}") from exc
    if isinstance(frame.index, pd.DatetimeIndex) or frame.index.name is not None:
        frame = frame.reset_index()  # a panel saved with its date index
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_header(list(frame.columns), path)
    return frame, [f"row {i + 1}" for i in range(len(frame))]


def _check_header(header: list[str], path: Path) -> None:
    seen: set[str] = set()
    for j, name in enumerate(header):
        if name == "" and j > 0:
            raise UserError(f"{path}: column {j + 1} has no name in the header")
        if name in seen:
            raise UserError(f"{path}: column '{name}' appears twice in the header")
        seen.add(name)


# --- parsing cells into a float panel ------------------------------------------------------------

def _parse_table(table: pd.DataFrame, rows: list[str], source: str) -> pd.DataFrame:
    if len(table) == 0:
        raise UserError(f"{source}: no data rows after the header")
    lower = [c.lower() for c in table.columns]
    if len(lower) == 3 and set(lower) == set(LONG_COLUMNS):
        return _parse_long(table.set_axis(lower, axis=1), rows, source)
    if {"ticker", "price"} <= set(lower):
        raise UserError(f"{source}: a long-format file must have exactly the columns date, "
                        f"ticker, price; got {', '.join(table.columns)}")
    return _parse_wide(table, rows, source)


def _parse_wide(table: pd.DataFrame, rows: list[str], source: str) -> pd.DataFrame:
    lower = [c.lower() for c in table.columns]
    date_col = table.columns[lower.index("date")] if "date" in lower else table.columns[0]
    tickers = [c for c in table.columns if c != date_col]
    if len(tickers) < 2:
        raise UserError(f"{source}: fewer than two ticker columns besides the date column "
                        f"'{date_col}' (expected a wide file: date, TICKER1, TICKER2, ... or a "
                        f"long file: date, ticker, price)")
    dates = _parse_dates(table[date_col], rows, source, date_col)
    _check_order(dates, rows, source)
    data = {t: _parse_prices(table[t], rows, source, t) for t in tickers}
    panel = pd.DataFrame(data, index=pd.DatetimeIndex(dates, name="date"))
    with_data = [t for t in tickers if panel[t].notna().any()]
    if len(with_data) < 2:
        raise UserError(f"{source}: fewer than two tickers with data "
                        f"(with prices: {', '.join(with_data) or 'none'})")
    return panel


def _parse_long(table: pd.DataFrame, rows: list[str], source: str) -> pd.DataFrame:
    dates = _parse_dates(table["date"], rows, source, "date")
    tickers = table["ticker"].map(lambda v: "" if v is None or v != v else str(v).strip())
    if (tickers == "").any():
        i = int(np.flatnonzero((tickers == "").to_numpy())[0])
        raise UserError(f"{source}: {rows[i]}: column 'ticker': expected a ticker, got a blank")
    prices = _parse_prices(table["price"], rows, source, "price")
    frame = pd.DataFrame({"date": dates, "ticker": tickers.to_numpy(), "price": prices,
                          "row": np.arange(len(table))})
    dup = frame.duplicated(["date", "ticker"], keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        same = (frame["date"] == frame["date"][i]) & (frame["ticker"] == frame["ticker"][i])
        first = int(frame.loc[same, "row"].iloc[0])
        raise UserError(f"{source}: {rows[i]}: duplicate date {frame['date'][i].date()} for "
                        f"ticker '{frame['ticker'][i]}' (also on {rows[first]})")
    for ticker, group in frame.groupby("ticker", sort=False):
        back = np.flatnonzero(np.diff(group["date"].to_numpy()) < np.timedelta64(0))
        if back.size:
            i = int(group["row"].iloc[back[0] + 1])
            raise UserError(f"{source}: {rows[i]}: date {frame['date'][i].date()} for ticker "
                            f"'{ticker}' comes after a later date; dates must increase per ticker")
    order = list(dict.fromkeys(frame["ticker"]))
    panel = frame.pivot(index="date", columns="ticker", values="price")[order]
    panel.index.name, panel.columns.name = "date", None
    with_data = [t for t in order if panel[t].notna().any()]
    if len(with_data) < 2:
        raise UserError(f"{source}: fewer than two tickers with data "
                        f"(with prices: {', '.join(with_data) or 'none'})")
    return panel.sort_index()


def _parse_dates(col: pd.Series, rows: list[str], source: str, name: str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = pd.to_datetime(col)
    else:
        text = col.map(lambda v: "" if v is None or v != v else str(v).strip())
        with warnings.catch_warnings():
            # pandas warns when it cannot infer one format; unparseable cells come back as NaT
            # and are reported below with their row.
            warnings.simplefilter("ignore", UserWarning)
            try:
                parsed = pd.to_datetime(text.where(text != "", None), errors="coerce")
            except ValueError:  # pandas refuses cells with different UTC offsets
                raise validation.mixed_offsets_error(text, rows, source, name) from None
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)  # one zone throughout: keep each close's local day
    bad = np.flatnonzero(pd.isna(parsed).to_numpy())
    if bad.size:
        i = int(bad[0])
        raise UserError(f"{source}: {rows[i]}: column '{name}': cannot parse date "
                        f"'{col.iloc[i]}' (expected e.g. 2015-01-02)")
    return parsed.to_numpy()


def _check_order(dates: np.ndarray, rows: list[str], source: str) -> None:
    seen: dict[np.datetime64, int] = {}
    for i, d in enumerate(dates):
        if d in seen:
            raise UserError(f"{source}: {rows[i]}: duplicate date {pd.Timestamp(d).date()} "
                            f"(also on {rows[seen[d]]})")
        seen[d] = i
    back = np.flatnonzero(np.diff(dates) < np.timedelta64(0))
    if back.size:
        i = int(back[0]) + 1
        raise UserError(f"{source}: {rows[i]}: date {pd.Timestamp(dates[i]).date()} comes after "
                        f"{pd.Timestamp(dates[i - 1]).date()} on {rows[i - 1]}; dates must "
                        f"increase down the file")


def _parse_prices(col: pd.Series, rows: list[str], source: str, name: str) -> np.ndarray:
    """Floats with NaN for missing cells; refuse non-numeric, non-finite and non-positive cells."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
    else:
        text = col.map(lambda v: "" if v is None or v != v else str(v).strip())
        missing = text.str.lower().isin(MISSING_MARKERS).to_numpy()
        values = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(np.float64)
    bad = ~missing & ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(f"{source}: {rows[i]}: column '{name}': expected a number, "
                        f"got '{col.iloc[i]}'")
    nonpos = ~missing & (values <= 0)
    if nonpos.any():
        i = int(np.flatnonzero(nonpos)[0])
        raise UserError(f"{source}: {rows[i]}: column '{name}': expected a price > 0, "
                        f"got '{col.iloc[i]}'")
    return values
