"""The HTML run report: facts on the page, escaping, self-containment, odd logs, size."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from safe_trpo.errors import UserError
from safe_trpo.record.audit import AuditLog, read_lines
from safe_trpo.report.build import (
    REPORT_FILE,
    build_report_html,
    scenario_toml,
    signoff_states,
    write_report,
)
from safe_trpo.report.plots import current_updates, envelope, thin_marks
from tests.report.fixtures import EVIL, LIMITS, make_run, scenario, start_run


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of the standard run (built once: figures take a moment to draw)."""
    return build_report_html(make_run(tmp_path_factory.mktemp("std") / "run1"))


def test_report_states_the_facts(page: str) -> None:
    assert "INTACT" in page and "run1" in page and "cstr_demo" in page
    assert "Updates that violated a limit (2)" in page
    assert "Updates whose line search failed (1)" in page
    assert "NaN, resume and abnormal-end events (1)" in page
    # the two violating updates, with their cost against the limit
    assert page.count("temperature: 6.5 &gt; limit 5") == 2
    # CPO case counts: 2 recovery, the rest feasible/unconstrained (updates 0,3,..,27 minus none)
    assert "<td>recovery</td><td class=\"num\">2</td>" in page
    n_uncon = len([i for i in range(30) if i % 3 == 0 and i not in (5, 17)])
    assert f'<td>unconstrained</td><td class="num">{n_uncon}</td>' in page
    assert "ab" * 32 in page and "cd" * 32 in page and "deadbeef" in page
    assert "equal_weight" in page and "buy_and_hold" in page and "turnover.mean" in page
    assert "<th>limits.drawdown</th><td class=\"num\">0.15</td>" in page
    # columns: the policy, then the baselines in the log's (sorted-key) order
    assert ('<tr><td>sharpe</td><td class="num">1.25</td><td class="num">0.5</td>'
            '<td class="num">0.75</td></tr>') in page
    assert "mean over limit" in page  # the evaluation's temperature row
    assert "Dana Risk" in page and 'class="badge ok">current' in page
    assert "Standing: <strong>approved</strong>" in page


def test_untrusted_text_is_escaped_and_nothing_is_fetched(page: str) -> None:
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold" in page
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    assert refs, "expected images and anchors"
    assert all(r.startswith(("data:", "#")) for r in refs), refs
    assert not re.search(r"https?://|@import|url\(|<link", page, flags=re.I)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # KL, return, two constraints, each constraint's nu and CPO lambda on its own axes,
    # line search
    assert len(images) == 8
    for name in LIMITS:  # one cost-vs-limit figure per constraint
        assert f'alt="Constraint &#x27;{name}&#x27;: episode cost per update' in page
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)


def test_current_updates_keeps_odd_rows_and_the_latest_duplicate() -> None:
    lines = [{"type": "update", "update": 0, "v": "a"}, {"type": "update", "v": "no index"},
             {"type": "update", "update": 0, "v": "b"}, {"type": "resumed", "from_update": None},
             {"type": "update", "update": 1, "v": "c"}, {"type": "resumed", "from_update": 1},
             {"type": "update", "update": 1, "v": "d"}]
    assert [r["v"] for r in current_updates(lines)] == ["no index", "b", "d"]


def test_missing_fields_nulls_and_no_updates(tmp_path: Path) -> None:
    empty = tmp_path / "fresh"
    start_run(empty, planned=5).close()
    page = write_report(empty).read_text()
    assert "No updates yet" in page and "not finished" in page and "No sign-offs" in page
    assert "not bound into the audit chain: the run has no run_finished line" in page
    assert [ln["type"] for ln in read_lines(empty)] == ["run_started"]  # trainer may be writing
    odd = tmp_path / "odd"
    odd.mkdir()
    with AuditLog(odd) as log:  # no run_started; sparse, null and wrong-typed fields
        log.append("update", update=0, kl=None, constraints=[{"name": "t", "ep_cost": None}])
        log.append("update", kl="high", constraints="none", cpo="x", accepted=None)
        log.append("evaluation", constraints=[{"name": "t"}])
        log.append("backtest", policy="ppo", sharpe=0.3)
        log.append("signoff", reviewer=None, reviewed_head_hash="0" * 64)
    page = build_report_html(odd)
    assert "no run_started line" in page and "names no earlier line" in page
    assert "Updates recorded</th><td>2 of" in page
    with pytest.raises(UserError):
        build_report_html(tmp_path / "nope")


def test_stale_signoffs_are_shown(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run1")
    with AuditLog(run) as log:
        head = log.head_hash
        log.append("signoff", reviewer="B", role="qa", decision="reject", comment="",
                   reviewed_seq=log.next_seq - 1, reviewed_head_hash=head)  # head is a sign-off
        log.append("evaluation", episodes=1, constraints=[])
        log.append("signoff", reviewer="C", role="qa", decision="approve", comment="",
                   reviewed_seq=3, reviewed_head_hash=head)  # seq does not match the hash
    states = signoff_states(read_lines(run))
    assert [s.stale for s in states] == [True, True, True]
    page = build_report_html(run)
    assert page.count('class="badge warn">stale') == 3
    assert "evaluation line at seq" in page and "does not match line seq 3" in page
    assert "Standing: <strong>stale</strong>" in page


def test_envelope_keeps_extremes_exactly() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=10_001)
    y[[17, 4000]] = np.nan
    y[7777] = 50.0  # one spike must survive aggregation
    env = envelope(np.arange(len(y)), y, max_points=1000)
    size = env.size
    assert len(env.hi) <= 1000 and size == 11
    for b in range(len(env.hi)):
        chunk = y[b * size:(b + 1) * size]
        assert env.hi[b] == np.nanmax(chunk) and env.lo[b] == np.nanmin(chunk)
        assert env.mean[b] == pytest.approx(np.nanmean(chunk))
    assert np.nanmax(env.hi) == 50.0
    assert np.all(np.isnan(envelope(np.arange(4), np.full(4, np.nan), 2).hi))
    x, m = thin_marks(np.arange(5000), np.arange(5000.0) % 7, max_points=100)
    assert len(x) == 100 and np.all(m == 6)


def test_scenario_toml_is_readable() -> None:
    toml = scenario_toml(scenario())
    assert '[env]\nid = "SafeTRPO/CSTR-v0"' in toml
    assert "kwargs = { episode_minutes = 60.0 }" in toml
    assert toml.count("[[constraints]]") == 2


def test_ten_thousand_updates_stay_under_5_mb(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Size, not speed: skip the 10,000 per-line fsyncs, which only cost time on a busy disk.
    monkeypatch.setattr("safe_trpo.record.audit.os.fsync", lambda fd: None)
    run = make_run(tmp_path / "big", n_updates=10_000, violate=tuple(range(0, 10_000, 7)),
                   fail=tuple(range(3, 10_000, 11)))
    size = write_report(run).stat().st_size
    assert size < 5 * 1024 * 1024, size
    page = (run / REPORT_FILE).read_text()
    assert "Updates that violated a limit (1428)" in page  # 0,7,..,9996 minus update 0 (null)
    assert "... and 1328 more updates that violated a limit" in page
    assert "Each plotted point aggregates 10 updates" in page


def test_random_odd_logs_render_escaped(tmp_path: Path) -> None:
    """Well-chained logs with fields of any type in any place: the page renders, escaped."""
    rng = np.random.default_rng(7)
    values = [None, 3, -2.5, 1e300, True, [], {}, [1, "a"], EVIL, {EVIL: 1.0, "k": {"n": EVIL}},
              [{"name": EVIL, "ep_cost": "hi", "limit": None, "violated": "yes"}],
              [{"name": "t", "ep_cost": 7.0, "limit": 5.0, "nu": EVIL}]]
    kinds = ["run_started", "update", "evaluation", "backtest", "signoff", "resumed",
             "run_finished", "nan_detected", EVIL]
    keys = ["scenario", "constraints", "cpo", "kl", "target_kl", "accepted", "backtracks",
            "return_mean", "update", "policy", "baselines", "metrics", "reviewed_head_hash",
            "reviewed_seq", "from_update", "status", "data_files", "versions", "run_id",
            "comment", "reviewer", EVIL]
    for trial in range(12):
        run = tmp_path / f"odd{trial}"
        run.mkdir()
        with AuditLog(run) as log:
            for _ in range(int(rng.integers(1, 15))):
                fields = {str(k): values[int(rng.integers(len(values)))]
                          for k in rng.choice(keys, int(rng.integers(0, 10)), replace=False)}
                log.append(str(kinds[int(rng.integers(len(kinds)))]), **fields)
        page = build_report_html(run)
        assert page.rstrip().endswith("</html>")
        assert "<script" not in page.lower(), trial


def test_largest_kl_ratio_is_over_all_updates_not_only_violations() -> None:
    from safe_trpo.report.plots import line_search_summary, update_table

    lines = [{"type": "update", "seq": i, "update": i, "kl": kl, "target_kl": 0.01,
              "accepted": True, "backtracks": 0, "constraints": []}
             for i, kl in enumerate([0.004, 0.0099, 0.002])]
    facts = dict(line_search_summary(update_table(lines, [])))
    assert facts["Updates with KL above target_kl"] == 0
    assert facts["Largest KL / target_kl"] == pytest.approx(0.99)


def test_resolved_scenario_block_is_valid_toml_that_round_trips() -> None:
    import tomllib

    from safe_trpo.config import load_scenario, scenario_from_dict, scenario_to_dict
    from safe_trpo.report.build import scenario_toml

    path = Path(__file__).resolve().parents[2] / "scenarios" / "cstr_runaway.toml"
    resolved = scenario_to_dict(load_scenario(path))
    parsed = tomllib.loads(scenario_toml(resolved))
    assert scenario_from_dict(parsed) == scenario_from_dict(resolved)
