"""Loading price files: both layouts, both formats, and every malformed case refused clearly."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envs.portfolio.prices import load_prices, select_window, validate_panel
from envs.portfolio.synthetic import generate, synthetic_prices
from safe_trpo.errors import UserError

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
STOCKS = DATA_DIR / "stock_prices.csv"

GOOD = """date,AAA,BBB,CCC
2020-01-02,10,20,30
2020-01-03,11,19,31
2020-01-06,12,18,29
2020-01-07,13,21,30
"""


def write(tmp_path: Path, text: str, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_wide_csv_loads_with_dates_index_and_float_columns(tmp_path):
    panel = load_prices(write(tmp_path, GOOD))
    assert list(panel.columns) == ["AAA", "BBB", "CCC"]
    assert panel.index.name == "date" and panel.index.is_monotonic_increasing
    assert panel.loc["2020-01-06", "BBB"] == 18.0 and panel.dtypes.eq(np.float64).all()


def test_date_column_found_by_name_anywhere(tmp_path):
    text = "AAA,Date,BBB\n1,2020-01-02,2\n1.5,2020-01-03,2.5\n"
    panel = load_prices(write(tmp_path, text))
    assert list(panel.columns) == ["AAA", "BBB"]
    assert panel.index[1] == pd.Timestamp("2020-01-03") and panel.iloc[1, 0] == 1.5


def test_long_format_pivots_to_the_same_panel(tmp_path):
    wide = load_prices(write(tmp_path, GOOD))
    long = wide.reset_index().melt(id_vars="date", var_name="Ticker", value_name="PRICE")
    long = long.sample(frac=1.0, random_state=0).sort_values(["Ticker", "date"])  # by ticker
    long["date"] = long["date"].dt.strftime("%Y-%m-%d")
    panel = load_prices(write(tmp_path, long.to_csv(index=False), "long.csv"))
    pd.testing.assert_frame_equal(panel, wide)


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_parquet_round_trip(tmp_path, layout):
    wide = load_prices(write(tmp_path, GOOD))
    frame = wide if layout == "wide" else wide.reset_index().melt(
        id_vars="date", var_name="ticker", value_name="price")
    path = tmp_path / f"{layout}.parquet"
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(load_prices(path), wide)


MALFORMED = {  # case: (file text, pattern the message must match after the file name)
    "unparseable date": ("date,A,B\n2020-01-02,1,2\n2020-13-45,1,2\n",
                         r"line 3: column 'date': cannot parse date '2020-13-45'"),
    "blank date": ("date,A,B\n2020-01-02,1,2\n,1,2\n", r"line 3: .*cannot parse date"),
    "duplicate date": ("date,A,B\n2020-01-02,1,2\n2020-01-03,1,2\n2020-01-02,1,2\n",
                       r"line 4: duplicate date 2020-01-02 \(also on line 2\)"),
    "out of order": ("date,A,B\n2020-01-02,1,2\n2020-01-06,1,2\n2020-01-03,1,2\n",
                     r"line 4: date 2020-01-03 comes after 2020-01-06 on line 3"),
    "zero price": ("date,A,B\n2020-01-02,1,2\n2020-01-03,1,0\n",
                   r"line 3: column 'B': expected a price > 0, got '0'"),
    "negative price": ("date,A,B\n2020-01-02,1,2\n2020-01-03,-1.5,2\n",
                       r"line 3: column 'A': expected a price > 0, got '-1.5'"),
    "non-numeric cell": ("date,A,B\n2020-01-02,1,2\n2020-01-03,1,abc\n",
                         r"line 3: column 'B': expected a number, got 'abc'"),
    "infinite price": ("date,A,B\n2020-01-02,1,inf\n", r"line 2: column 'B': expected a number"),
    "one ticker": ("date,A\n2020-01-02,1\n2020-01-03,2\n", r"fewer than two ticker columns"),
    "one ticker with data": ("date,A,B\n2020-01-02,1,\n2020-01-03,2,\n",
                             r"fewer than two tickers with data \(with prices: A\)"),
    "ragged row": ("date,A,B\n2020-01-02,1,2\n2020-01-03,1\n",
                   r"line 3: expected 3 fields like the header, got 2"),
    "duplicate column": ("date,A,A\n2020-01-02,1,2\n", r"column 'A' appears twice"),
    "header only": ("date,A,B\n", r"no data rows"),
    "long duplicate": ("date,ticker,price\n2020-01-02,A,1\n2020-01-02,B,2\n2020-01-02,A,3\n",
                       r"line 4: duplicate date 2020-01-02 for ticker 'A' \(also on line 2\)"),
    "long out of order": ("date,ticker,price\n2020-01-03,A,1\n2020-01-02,A,2\n2020-01-02,B,2\n",
                          r"line 3: date 2020-01-02 for ticker 'A' comes after a later date"),
    "long bad price": ("date,ticker,price\n2020-01-02,A,1\n2020-01-02,B,x\n",
                       r"line 3: column 'price': expected a number, got 'x'"),
    "long extra column": ("date,ticker,price,volume\n2020-01-02,A,1,100\n",
                          r"long-format file must have exactly the columns date, ticker, price"),
    "long one ticker": ("date,ticker,price\n2020-01-02,A,1\n2020-01-03,A,2\n",
                        r"fewer than two tickers with data"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_is_refused_naming_file_and_row_or_column(tmp_path, case):
    text, pattern = MALFORMED[case]
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_prices(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert re.search(pattern, message), message
    assert "\n" not in message


def test_parquet_errors_name_the_row(tmp_path):
    frame = pd.DataFrame({"date": pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"]),
                          "A": [1.0, 2.0, 3.0], "B": [1.0, -2.0, 3.0]})
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(UserError, match=r"bad.parquet: row 2: column 'B': expected a price > 0"):
        load_prices(path)


def test_missing_file_and_unknown_suffix_are_refused(tmp_path):
    with pytest.raises(UserError, match="price file not found"):
        load_prices(tmp_path / "nope.csv")
    with pytest.raises(UserError, match=r"expected a .csv or .parquet price file, got '.xlsx'"):
        load_prices(write(tmp_path, GOOD, "p.xlsx"))


GAPPY = """date,AAA,BBB,LATE,HOLE
2020-01-02,10,20,,5
2020-01-03,11,19,,5
2020-01-06,12,18,7,
2020-01-07,13,21,8,6
2020-01-08,14,22,9,6
"""


def test_gappy_tickers_are_left_out_with_a_warning_naming_them(tmp_path):
    with pytest.warns(UserWarning) as record:
        panel = load_prices(write(tmp_path, GAPPY))
    assert list(panel.columns) == ["AAA", "BBB"]
    text = " ".join(str(w.message) for w in record)
    assert "LATE (no price until 2020-01-06" in text
    assert "HOLE (1 missing price(s) after its first price, first on 2020-01-06)" in text


def test_strict_refuses_a_gap_naming_the_column(tmp_path):
    with pytest.raises(UserError, match=r"column 'LATE': no price until 2020-01-06.*strict"):
        load_prices(write(tmp_path, GAPPY), strict=True)


def test_late_listing_before_the_window_is_not_a_gap(tmp_path):
    path = write(tmp_path, GAPPY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all
        panel = load_prices(path, start="2020-01-07", tickers=["AAA", "LATE", "HOLE"])
    assert list(panel.columns) == ["AAA", "LATE", "HOLE"]
    assert list(panel.index.strftime("%m-%d")) == ["01-07", "01-08"]


def test_lookback_returns_history_before_start_and_must_be_complete(tmp_path):
    path = write(tmp_path, GAPPY)
    panel = load_prices(path, start="2020-01-07", tickers=["AAA", "BBB"], lookback=3)
    assert panel.index[0] == pd.Timestamp("2020-01-02") and len(panel) == 5
    with pytest.raises(UserError, match=r"needs 5 trading days of history before 2020-01-07, "
                                        r"the file has 3"):
        load_prices(path, start="2020-01-07", tickers=["AAA", "BBB"], lookback=5)
    with pytest.raises(UserError, match="column 'LATE'"):  # history inside the gap: refused
        load_prices(path, start="2020-01-07", tickers=["AAA", "LATE"], lookback=2, strict=True)


def test_window_and_ticker_selection_errors(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(UserError, match=r"ticker\(s\) ZZZ not in the file \(it has: AAA, BBB"):
        load_prices(path, tickers=["AAA", "ZZZ"])
    with pytest.raises(UserError, match="start 2020-01-07 is after end 2020-01-03"):
        load_prices(path, start="2020-01-07", end="2020-01-03")
    with pytest.raises(UserError, match="fewer than two trading days"):
        load_prices(path, start="2020-01-07")
    with pytest.raises(UserError, match="start: cannot parse date 'soon'"):
        load_prices(path, start="soon")


def test_validate_panel_refuses_bad_dataframes():
    panel = synthetic_prices(10, 3, seed=0)
    assert validate_panel(panel).equals(panel)
    with pytest.raises(UserError, match="duplicate date"):
        validate_panel(pd.concat([panel, panel.iloc[[3]]]))
    bad = panel.copy()
    bad.iloc[4, 1] = -1.0
    with pytest.raises(UserError, match=r"column 'S1': expected a price > 0"):
        validate_panel(bad)
    with pytest.raises(UserError, match="DatetimeIndex"):
        validate_panel(panel.reset_index(drop=True))


def test_shipped_data_full_history_keeps_only_complete_tickers():
    with pytest.warns(UserWarning, match=r"FB \(no price until 2012-05-18"):
        panel = load_prices(STOCKS)
    raw = pd.read_csv(STOCKS, index_col=0)
    complete = [c for c in raw.columns if raw[c].notna().all()]
    assert list(panel.columns) == complete and len(panel) == len(raw)
    assert np.allclose(panel.to_numpy(), raw[complete].to_numpy(), rtol=0, atol=0)


def test_shipped_data_window_with_all_tickers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        panel = load_prices(STOCKS, start="2015-01-01", end="2018-04-11", lookback=60)
    assert panel.shape[1] == 20 and not panel.isna().any().any()
    first = panel.index.searchsorted(pd.Timestamp("2015-01-01"))
    assert first == 60 and panel.index[first] == pd.Timestamp("2015-01-02")


def test_synthetic_generator_is_seeded_and_regimes_matter():
    a, reg_a = generate(3000, 5, seed=11)
    b, _ = generate(3000, 5, seed=11)
    c, _ = generate(3000, 5, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.to_numpy(), c.to_numpy())
    assert (a.to_numpy() > 0).all() and a.index.is_monotonic_increasing
    logret = np.diff(np.log(a.to_numpy()), axis=0)
    stressed = reg_a[1:] == 1
    assert 0.05 < stressed.mean() < 0.35  # stationary share 0.01 / (0.01 + 0.05) = 1/6
    # Defaults: 45% vs 15% annual volatility; the realised ratio must show the regimes.
    ratio = logret[stressed].std() / logret[~stressed].std()
    assert 2.0 < ratio < 4.0, ratio
    validate_panel(a)  # the generator's panels pass the same checks as files
    assert select_window(a, start=str(a.index[10].date()), lookback=10).shape == a.shape
