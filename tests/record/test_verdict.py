"""The one verdict rule (safe_trpo.record.verdict), on hand-made records with known counts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from safe_trpo.cli import main
from safe_trpo.record.audit import AuditLog
from safe_trpo.record.verdict import END_WINDOW, run_verdict, training_totals

LIMITS = {"temperature": 5.0, "runaway": 1.0}


def started() -> dict[str, Any]:
    return {"type": "run_started", "seq": 0, "scenario": {
        "constraints": [{"name": n, "limit": v} for n, v in LIMITS.items()]}}


def row(u: int, over: dict[str, int] | None, mean: dict[str, float] | None = None,
        worst: dict[str, float] | None = None, episodes: int = 10) -> dict[str, Any]:
    """An update row; ``over=None`` writes a record from before ``episodes_over`` existed."""
    cons = []
    for name, limit in LIMITS.items():
        c = {"name": name, "limit": limit, "ep_cost": (mean or {}).get(name, 0.5 * limit)}
        c["violated"] = c["ep_cost"] > limit
        if over is not None:
            c["episodes_over"] = over.get(name, 0)
            c["ep_cost_max"] = (worst or {}).get(name, 0.9 * limit)
            c["ep_cost_cvar90"] = c["ep_cost_max"]
        cons.append(c)
    return {"type": "update", "update": u, "episodes": episodes, "constraints": cons}


def chain(*lines: dict[str, Any]) -> list[dict[str, Any]]:
    out = [started(), *lines]
    for i, ln in enumerate(out):
        ln["seq"] = i
    return out


def finished(status: str = "completed", reason: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": "run_finished", "status": status, "reason": reason, **extra}


def test_training_totals_sum_episode_counts_and_keep_the_worst_episode() -> None:
    lines = chain(row(0, {"runaway": 3}, worst={"runaway": 4.5}), row(1, {"runaway": 1}),
                  *[row(u, {}) for u in range(2, 10)], finished())
    totals = {c.name: c for c in training_totals(lines)}
    assert (totals["runaway"].over, totals["runaway"].episodes) == (4, 100)
    assert totals["runaway"].worst == 4.5 and totals["temperature"].over == 0
    v = run_verdict(lines, "intact")
    # The last END_WINDOW rows had no episode over: within at the end of training...
    assert v.limits.basis == "end of training" and v.limits.within is True
    # ...but the headline says how many training episodes went over, and the worst.
    assert "runaway: 4 of 100 episodes over limit 1, worst 4.5" in v.headline()
    assert v.level == "warn"


def test_a_mean_within_the_limit_does_not_hide_an_episode_over_it() -> None:
    # Mean 0.5 (within 1.0) but one episode at 3.0: the final policy is not within.
    lines = chain(*[row(u, {}) for u in range(END_WINDOW)],
                  row(END_WINDOW, {"runaway": 1}, mean={"runaway": 0.5}, worst={"runaway": 3.0}),
                  finished())
    v = run_verdict(lines, "intact")
    assert v.limits.within is False and v.level == "bad"
    assert "OVER A LIMIT" in v.headline() and "runaway: 1 of 50 episodes over" in v.headline()


def test_the_latest_evaluation_after_the_last_update_decides() -> None:
    ev = {"type": "evaluation", "episodes": 10, "constraints": [
        {"name": "temperature", "limit": 5.0, "ep_cost_mean": 1.0, "ep_cost_max": 2.0,
         "frac_over_limit": 0.0, "episodes_over": 0},
        {"name": "runaway", "limit": 1.0, "ep_cost_mean": 0.4, "ep_cost_max": 2.0,
         "frac_over_limit": 0.2}]}  # no episodes_over: recovered exactly from the fraction
    lines = chain(row(0, {"runaway": 5}), finished(), ev)
    v = run_verdict(lines, "intact")
    counts = {c.name: c for c in v.limits.counts}
    assert v.limits.basis == "evaluation" and v.limits.within is False
    assert (counts["runaway"].over, counts["runaway"].episodes) == (2, 10)
    clean = dict(ev, constraints=[dict(c, frac_over_limit=0.0, episodes_over=0, ep_cost_max=0.5)
                                  for c in ev["constraints"]])
    v = run_verdict(chain(row(0, {"runaway": 5}), finished(), clean), "intact")
    assert v.limits.within is True and "within every limit on evaluation" in v.headline()
    assert "runaway: 5 of 10 episodes over" in v.training_text()  # training still counted
    # An evaluation older than the last update judged an earlier policy: not used.
    old = chain(row(0, {}), clean, row(1, {"runaway": 2}), finished())
    assert run_verdict(old, "intact").limits.basis == "end of training"


def test_old_records_without_episode_counts_say_not_recorded_never_within() -> None:
    lines = chain(*[row(u, None) for u in range(6)], finished())
    v = run_verdict(lines, "intact")
    assert v.limits.within is None and "not recorded" in v.headline()
    assert "within every limit" not in v.headline()
    over = chain(row(0, None, mean={"runaway": 2.0}), row(1, None), finished())
    totals = {c.name: c for c in training_totals(over)}
    assert totals["runaway"].over == 1 and "at least 1 of 20" in totals["runaway"].text()
    assert run_verdict(over, "intact").limits.within is False


def test_run_finished_totals_are_preferred_and_superseded_rows_drop() -> None:
    totals = [{"name": "temperature", "limit": 5.0, "episodes": 70, "episodes_over": 7,
               "ep_cost_max": 9.0},
              {"name": "runaway", "limit": 1.0, "episodes": 70, "episodes_over": 0,
               "ep_cost_max": 0.2}]
    lines = chain(row(0, {}), finished(constraint_totals=totals))
    got = {c.name: c for c in training_totals(lines)}
    assert (got["temperature"].over, got["temperature"].episodes, got["temperature"].worst) == \
        (7, 70, 9.0)
    # Rows 1-2 were redone after a resume from update 1: the first copies do not count.
    resumed = chain(row(0, {}), row(1, {"runaway": 9}), row(2, {"runaway": 9}),
                    {"type": "resumed", "from_update": 1}, row(1, {}), row(2, {"runaway": 1}))
    got = {c.name: c for c in training_totals(resumed)}
    assert got["runaway"].over == 1 and got["runaway"].episodes == 30


@pytest.mark.parametrize(("tail", "integrity", "status", "word"), [
    ([finished("failed", "NonFiniteError: nan")], "intact", "failed", "run FAILED"),
    ([finished("interrupted", "stopped by the user")], "intact", "interrupted",
     "run INTERRUPTED"),
    ([], "interrupted", "interrupted", "run INTERRUPTED"),
    ([], "intact", "not finished", "run NOT FINISHED"),
])
def test_status_words(tail: list, integrity: str, status: str, word: str) -> None:
    v = run_verdict(chain(row(0, {}), *tail), integrity)
    assert v.status == status and v.headline().startswith(word)


@dataclass(frozen=True)
class State:
    stale: bool
    reviewer: str = "a"
    decision: str = "approve"
    verified: bool | None = None
    signature: str = "unverified identity"  # as record.signature names a valid, unchecked one


def test_signoffs_current_stale_and_verified() -> None:
    lines = chain(row(0, {}), finished())
    assert run_verdict(lines, "intact").signoffs.text() == "none"
    unchecked = run_verdict(lines, "intact", [State(False), State(True, "b")]).signoffs
    assert (unchecked.current, unchecked.stale, unchecked.verified) == (1, 1, None)
    assert "signatures not checked" in unchecked.text()
    checked = run_verdict(lines, "intact", [State(False, verified=True),
                                            State(False, "b", verified=False)]).signoffs
    assert checked.verified == 1 and "1 of 2 current with a verified signature" in checked.text()


def _real_run(run_dir: Path, status: str) -> Path:
    run_dir.mkdir()
    with AuditLog(run_dir) as log:
        log.append("run_started", scenario=started()["scenario"])
        log.append("update", **{k: v for k, v in row(0, {"runaway": 2}).items()
                                if k not in ("type", "seq")})
        log.append("run_finished", status=status, updates=1, env_steps=10, reason="diverged")
    return run_dir


def test_verify_exits_on_integrity_alone_and_says_failed(tmp_path: Path, capsys) -> None:
    run = _real_run(tmp_path / "r", "failed")
    assert main(["verify", str(run)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("INTEGRITY OK: run FAILED (diverged)")
    assert "runaway: 2 of 10 episodes over" in last
    lines = (run / "audit.jsonl").read_text().splitlines()
    edited = json.loads(lines[1])
    edited["constraints"][1]["episodes_over"] = 0  # hide the violation
    lines[1] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    (run / "audit.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["verify", str(run)]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    # Only the verified line 0 is used: no update row, and no claim of "within".
    assert last.startswith("INTEGRITY NOT OK: run NOT FINISHED") and "within every" not in last
