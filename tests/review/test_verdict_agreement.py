"""Every reader of a run (report, review app, sweep summary, verify) gives the same verdict.

The run below is the case that split them before: every update's *mean* episode cost is within
the limit, but episodes inside the last updates went over it. A mean-based sweep said "within
all limits" while the app showed violations for the same run.
"""

from __future__ import annotations

from pathlib import Path

from safe_trpo.cli import main
from safe_trpo.record.audit import AuditLog
from safe_trpo.report.build import build_report_html
from safe_trpo.review import runs
from safe_trpo.sweep.summary import config_summary, run_result
from tests.review.fixtures import open_app, texts

LIMIT = 10.0


def write_run(run_dir: Path, last_over: int, evaluation_over: int | None = None) -> Path:
    """Six updates of 4 episodes, mean cost 6; the last row has ``last_over`` episodes over."""
    run_dir.mkdir(parents=True)
    scenario = {"env": {"id": "SafeTRPO/SpeedLimit-v0"}, "algo": {"name": "cpo"},
                "constraints": [{"name": "speed", "limit": LIMIT}], "run": {"seed": 0}}
    with AuditLog(run_dir) as log:
        log.append("run_started", scenario=scenario, seed=0, planned_updates=6)
        for u in range(6):
            over = last_over if u == 5 else 0
            log.append("update", update=u, env_steps=100 * (u + 1), kl=0.005, target_kl=0.01,
                       accepted=True, backtracks=0, return_mean=1.0, episodes=4,
                       constraints=[{"name": "speed", "limit": LIMIT, "ep_cost": 6.0,
                                     "violated": False, "margin": LIMIT - 6.0, "nu": 0.0,
                                     "episodes_over": over,
                                     "ep_cost_max": 14.0 if over else 8.0,
                                     "ep_cost_cvar90": 14.0 if over else 8.0}])
        log.append("run_finished", status="completed", updates=6, env_steps=600, reason="",
                   constraint_totals=[{"name": "speed", "limit": LIMIT, "episodes": 24,
                                       "episodes_over": last_over,
                                       "ep_cost_max": 14.0 if last_over else 8.0}])
        if evaluation_over is not None:
            log.append("evaluation", episodes=10, return_mean=1.0, return_std=0.0, constraints=[
                {"name": "speed", "limit": LIMIT, "ep_cost_mean": 5.0,
                 "ep_cost_max": 12.0 if evaluation_over else 9.0,
                 "frac_over_limit": evaluation_over / 10, "episodes_over": evaluation_over}])
    return run_dir


def test_report_app_sweep_and_verify_agree(tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "reports"
    over = write_run(root / "over", last_over=1)
    clean = write_run(root / "clean", last_over=0)
    evaluated = write_run(root / "evaluated", last_over=1, evaluation_over=0)

    results = {d.name: run_result(d) for d in (over, clean, evaluated)}
    assert {k: r["within_limits"] for k, r in results.items()} == \
        {"over": False, "clean": True, "evaluated": True}
    assert results["over"]["episodes_over"] == {"speed": 1}
    summary = config_summary("x", "x", [], [dict(r, state="completed", seed=0)
                                            for r in results.values()])
    assert summary["frac_within_all_limits"] == 2 / 3
    assert summary["constraints"][0]["training_episodes_over"] == 2

    listed = {s.run_id: s for s in runs.RunCache().summaries(root)}
    assert listed["over"].limits_at_end == "OVER (end of training); training: 1 episodes over"
    assert listed["clean"].limits_at_end == "within (end of training)"
    # Within on evaluation, but the list does not say "within" without the training count.
    assert listed["evaluated"].limits_at_end == \
        "within (evaluation); training: 1 episodes over"
    assert listed["evaluated"].episodes_over == "speed 1/24"

    page = build_report_html(over)
    assert "OVER A LIMIT" in page and "1 of 20" in page and "1 of 24" in page
    page = build_report_html(evaluated)
    assert "within every limit" in page and "0 of 10" in page and "1 of 24" in page

    assert main(["verify", str(over)]) == 0
    assert "final policy OVER A LIMIT" in capsys.readouterr().out.splitlines()[-1]
    assert main(["verify", str(evaluated)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    # Within on evaluation, and the training episode over the limit is still counted.
    assert "within every limit on evaluation" in last and "speed: 1 of 24 episodes over" in last

    monkeypatch.setenv("SAFE_TRPO_REPORTS", str(root))
    monkeypatch.delenv("SAFE_TRPO_REVIEWERS", raising=False)
    at = open_app(page="Review", run="over")
    assert "OVER A LIMIT" in texts(at.error)
    at = open_app(page="Review", run="evaluated")
    shown = texts(at.warning)  # within, but training episodes went over: a warning, not success
    assert "within every limit" in shown and "1 episode(s) over a limit" in shown
