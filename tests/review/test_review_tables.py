"""The review app's tables and its launch command, without Streamlit."""

from __future__ import annotations

import math
import string
from pathlib import Path

import pandas as pd
import pytest

from safe_trpo.errors import UserError
from safe_trpo.record import audit
from safe_trpo.review import launch, runs
from tests.review.fixtures import (
    BACKTEST_BASELINES,
    make_run,
)

# --- tables ----------------------------------------------------------------------------------

def test_update_and_constraint_tables_keep_missing_values_missing(tmp_path):
    costs = {"temperature": [6.0, None, 4.0]}
    run_dir = make_run(tmp_path, "r", costs=costs, limits={"temperature": 5.0},
                       kls=[0.02, 0.0, 0.005], rejected=(1,), recovery=(2,))
    lines = audit.read_lines(run_dir)
    upd = runs.updates_frame(lines)
    assert list(upd["kl_over_target"]) == [True, False, False]
    assert list(upd["accepted"]) == [True, False, True]
    assert list(upd["case"]) == ["feasible", "feasible", "recovery"]
    cons = runs.constraints_frame(lines)
    assert math.isnan(cons["ep_cost"][1]) and math.isnan(cons["margin"][1])
    assert cons["violated"][1] is None
    assert list(cons["margin"].dropna()) == [-1.0, 1.0]
    odd = [{"type": "update", "update": "zero", "kl": float("nan"), "constraints": "none",
            "cpo": [1], "accepted": "yes"}]
    frame = runs.updates_frame(odd)
    assert frame[["update", "kl"]].isna().all(axis=None) and frame["accepted"][0] is None
    assert runs.constraints_frame(odd).empty


def test_results_tables(tmp_path):
    run_dir = make_run(tmp_path, "r", evaluation=True, backtest=True)
    lines = audit.read_lines(run_dir)
    evals, costs = runs.evaluation_frames(lines)
    assert list(evals["return_mean"]) == [-5.0]
    assert list(costs["mean over limit"]) == [True, True]
    line = next(ln for ln in lines if ln["type"] == "backtest")
    bt = runs.backtest_frame(line)
    # The trained policy's own row first, labelled by the run folder the line names.
    assert bt["controller"][0] == str(run_dir)
    assert sorted(bt["controller"][1:]) == sorted(BACKTEST_BASELINES)
    by_name = bt.set_index("controller")
    assert by_name.loc[str(run_dir), "sharpe"] == line["metrics"]["sharpe"] == 1.2
    for i, name in enumerate(BACKTEST_BASELINES):
        assert by_name.loc[name, "sharpe"] == pytest.approx(0.8 - 0.1 * i)
        assert by_name.loc[name, "breach_days.drawdown"] == i
    assert by_name.loc[str(run_dir), "breach_days.drawdown"] == 3
    flat = runs.backtest_frame({"type": "backtest", "seq": 3, "sharpe": 0.5, "policy": "run-x"})
    assert list(flat["controller"]) == ["run-x"] and list(flat["sharpe"]) == [0.5]
    events = runs.events_frame(lines)
    assert list(events["type"]) == ["run_started", "evaluation", "backtest", "run_finished"]


def test_backtest_fixture_matches_the_real_writer():
    """The fixture's line has the keys ``safe_trpo.finance.backtest`` records (else the test above
    would check a shape no run has)."""
    from envs.portfolio.baselines import BASELINE_NAMES
    from safe_trpo.finance import backtest
    from tests.review.fixtures import backtest_fields

    assert BACKTEST_BASELINES == BASELINE_NAMES
    source = Path(backtest.__file__).read_text()
    for key in backtest_fields(Path("r")):
        assert f'"{key}"' in source or f"{key}=" in source, key


def test_md_makes_log_text_literal():
    evil = "[x](http://evil) **b** $x$ :red[y] <b> `c` # h\n- item \\"
    escaped = runs.md(evil)
    assert escaped.startswith(r"\[x\]\(http\:\/\/evil\)")
    # Read back as CommonMark does: every punctuation character comes escaped, and dropping
    # the escapes gives the text (newline flattened to a space).
    plain, i = [], 0
    while i < len(escaped):
        if escaped[i] == "\\":
            assert escaped[i + 1] in string.punctuation, escaped[i:]
            plain.append(escaped[i + 1])
            i += 2
        else:
            assert escaped[i] not in string.punctuation, escaped[i:]
            plain.append(escaped[i])
            i += 1
    assert "".join(plain) == evil.replace("\n", " ")
    assert runs.md("a\nb\r\nc") == "a b c"


def test_thin_keeps_every_flagged_row():
    frame = pd.DataFrame({"x": range(10_000)})
    flagged = frame["x"].isin([3, 4, 5, 9_999])
    view = runs.thin(frame, flagged, max_points=100)
    assert len(view) <= 104 and set(view["x"]) >= {3, 4, 5, 9_999}
    assert runs.thin(frame.head(50), flagged.head(50), max_points=100).equals(frame.head(50))


# --- launching -------------------------------------------------------------------------------

def test_launch_command(tmp_path):
    reviewers = tmp_path / "reviewers.txt"
    reviewers.write_text("Ada\n")
    cmd = launch.build_command(tmp_path, 8600, reviewers_file=reviewers)
    assert cmd[1:3] == ["-m", "safe_trpo.review.serve"]
    run = cmd.index("run")
    assert cmd[3:run] == ["--allow-host", "127.0.0.1:8600", "--allow-host", "[::1]:8600",
                          "--allow-host", "localhost:8600"]
    assert Path(cmd[run + 1]) == launch.APP
    flags = dict(zip(cmd[run + 2:cmd.index("--"):2], cmd[run + 3:cmd.index("--"):2],
                     strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8600"
    assert flags["--server.headless"] == "true"
    assert cmd[cmd.index("--"):] == ["--", "--reports", str(tmp_path.resolve()),
                                     "--reviewers", str(reviewers.resolve())]
    with pytest.raises(UserError, match="reports folder not found"):
        launch.build_command(tmp_path / "nope", 8600)
    with pytest.raises(UserError, match="--port"):
        launch.build_command(tmp_path, 70000)
    with pytest.raises(UserError, match="cannot read the reviewer list"):
        launch.build_command(tmp_path, 8600, reviewers_file=tmp_path / "missing.txt")
