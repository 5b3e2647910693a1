"""Price files that parse but cannot be right get one line naming the row (with an opt-out);
dates with mixed UTC offsets get one line naming the row, through the backtest CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envs.portfolio.prices import load_prices, validate_panel
from safe_trpo.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "stock_prices.csv"


def frame(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, 3)), axis=0))
    return pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=n).strftime("%Y-%m-%d"),
                         "A": prices[:, 0], "B": prices[:, 1], "C": prices[:, 2]})


def cli_backtest(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "safe_trpo.cli", "backtest", "--prices",
                           str(path), "--policy", "equal-weight", *extra], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=180)


def test_mixed_timezone_offsets_name_the_row(tmp_path: Path) -> None:
    table = frame()
    table["date"] = [f"{d}T16:00:00{'-05:00' if i < 50 else '-04:00'}"
                     for i, d in enumerate(table["date"])]
    table.to_csv(path := tmp_path / "tz.csv", index=False)
    result = cli_backtest(path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "line 52: column 'date'" in result.stderr and "UTC offset" in result.stderr


def test_one_time_zone_throughout_is_read_as_local_days(tmp_path: Path) -> None:
    table = frame()
    table["date"] = [f"{d}T16:00:00-05:00" for d in table["date"]]
    table.to_csv(path := tmp_path / "tz.csv", index=False)
    panel = load_prices(path)
    assert panel.index.tz is None and str(panel.index[0].date()) == "2020-01-01"


@pytest.mark.parametrize(("cell", "col", "message"), [
    ((40, "B"), "B", "outside the plausible range"),  # 1e308
    ((60, "C"), "C", "times the previous close"),  # x1e6 from that day on
])
def test_implausible_prices_name_the_row_and_can_be_allowed(tmp_path: Path, cell, col: str,
                                                            message: str) -> None:
    table = frame()
    row, column = cell
    if "range" in message:
        table.loc[row, column] = 1e308
    else:
        table.loc[row:, column] *= 1e6
    table.to_csv(path := tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError, match=rf"line {row + 2}: date \S+, ticker '{col}': .*"
                                        rf"{message}.*allow_implausible_prices"):
        load_prices(path)
    result = cli_backtest(path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"line {row + 2}" in result.stderr
    if "previous" in message:  # a real (if extreme) series: the user may vouch for it
        assert load_prices(path, check_plausible=False).shape == (120, 3)
        assert cli_backtest(path, "--allow-implausible-prices").returncode == 0


def test_long_files_and_panels_are_checked_too(tmp_path: Path) -> None:
    table = frame()
    table.loc[30, "A"] = 1e-12
    long = table.melt(id_vars="date", var_name="ticker", value_name="price")
    long.to_csv(path := tmp_path / "long.csv", index=False)
    with pytest.raises(UserError, match="ticker 'A': price 1e-12 is outside"):
        load_prices(path)
    panel = table.set_index(pd.DatetimeIndex(table.pop("date")))
    with pytest.raises(UserError, match="ticker 'A'"):
        validate_panel(panel)


def test_the_shipped_prices_are_plausible() -> None:
    with pytest.warns(UserWarning, match="leaving out"):  # late listings, not implausible
        assert load_prices(DATA).shape[0] > 1000
