"""A backtest line's statistics reach the report and the review app readably."""

from __future__ import annotations

from safe_trpo.finance.backtest import run_backtest_command
from safe_trpo.record.audit import AuditLog, read_lines
from safe_trpo.report.sections import _result_block
from safe_trpo.review.frames import backtest_frame
from tests.finance.test_backtest import STOCKS, install_fake_policy_io


def test_backtest_line_statistics_in_report_and_app(tmp_path, monkeypatch):
    install_fake_policy_io(monkeypatch, ["AAPL", "JPM", "XOM"], 4)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with AuditLog(run_dir) as log:
        log.append("run_started", run_id="run")
    assert run_backtest_command(STOCKS, str(run_dir), None, None, None, None,
                                {"execution_lag_days": 0}) == 0
    line = next(ln for ln in read_lines(run_dir) if ln["type"] == "backtest")
    assert line["execution_lag_days"] == 0 and line["tickers"] == ["AAPL", "JPM", "XOM"]
    lo, hi = line["metrics"]["sharpe_ci95"]
    vs = line["metrics"]["vs_equal_weight"]
    assert lo < line["metrics"]["sharpe"] < hi and set(vs) >= {"sharpe_diff", "ci95", "p_value"}
    frame = backtest_frame(line)
    policy = frame[frame["controller"] == str(run_dir)].iloc[0]
    assert policy["sharpe_ci95"] == f"{lo:.2f} .. {hi:.2f}"
    assert policy["vs_equal_weight.p_value"] == vs["p_value"]
    assert policy["vs_equal_weight.ci95"] == f"{vs['ci95'][0]:.2f} .. {vs['ci95'][1]:.2f}"
    html = _result_block(line)
    for text in ("sharpe_ci95", "vs_equal_weight.sharpe_diff", "vs_equal_weight.p_value",
                 "calmar", "information_ratio", "annual_turnover", "execution_lag_days",
                 f"[{lo}, {hi}]"):
        assert text in html, text
