"""Run folders for the report tests, built with the real ``AuditLog``.

They follow the line schema of the audit contract (COMMON.md), so the report is tested against
what the trainer writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from safe_trpo.record.audit import AUDIT_FILE, AuditLog, read_lines
from safe_trpo.record.signature import sign_fields
from tests.record.keyfix import make_key

LIMITS = {"temperature": 5.0, "pressure": 2.0}
EVIL = '<script>alert("x")</script> & <b>bold</b>'


def scenario() -> dict:
    """The resolved scenario a CPO run on the CSTR records."""
    return {
        "env": {"id": "SafeTRPO/CSTR-v0", "num_envs": 8, "kwargs": {"episode_minutes": 60.0},
                "data_files": {}},
        "algo": {"name": "cpo", "target_kl": 0.01, "gamma": 0.99, "steps_per_update": 2048},
        "constraints": [{"name": n, "limit": lim} for n, lim in LIMITS.items()],
        "run": {"seed": 0, "out_dir": "reports", "name": "cstr_demo"},
        "eval": {"episodes": 10},
    }


def start_run(run_dir: Path, planned: int) -> AuditLog:
    """Open the audit log of a new run and write its ``run_started`` line."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = AuditLog(run_dir)
    log.append("run_started", run_id=run_dir.name, scenario=scenario(),
               scenario_file="scenarios/cstr.toml", scenario_sha256="ab" * 32, seed=0,
               versions={"python": "3.11", "torch": "2.13.0"}, git_commit="deadbeef",
               data_files=[{"name": "prices", "path": "data/stock_prices.csv",
                            "sha256": "cd" * 32}], planned_updates=planned)
    return log


def update_line(i: int, rng: np.random.Generator, violate: bool, fail: bool) -> dict:
    """An update line; update 0 has no finished episode (null costs and return)."""
    cons = []
    for name, limit in LIMITS.items():
        cost = None if i == 0 else float(limit * (1.3 if violate and name == "temperature"
                                                  else rng.uniform(0.2, 0.9)))
        cons.append({"name": name, "limit": limit, "ep_cost": cost,
                     "violated": None if cost is None else cost > limit,
                     "margin": None if cost is None else limit - cost,
                     "nu": float(rng.uniform(0, 1))})
    case = "recovery" if violate else ("feasible" if i % 3 else "unconstrained")
    return dict(update=i, env_steps=2048 * (i + 1), kl=0.0 if fail else float(
        rng.uniform(0.002, 0.0099)), target_kl=0.01, accepted=not fail,
        backtracks=10 if fail else int(rng.integers(0, 3)),
        return_mean=None if i == 0 else float(-100 + i), episodes=0 if i == 0 else 4,
        algo="cpo", constraints=cons, cpo={"case": case, "lambda": float(rng.uniform(0, 2)),
                                           "nu": [c["nu"] for c in cons],
                                           "solver_status": "optimal", "solve_time_ms": 1.5},
        value_loss=0.1, wall_s=0.5)


def make_run(run_dir: Path, n_updates: int = 30, violate: tuple[int, ...] = (5, 17),
             fail: tuple[int, ...] = (9,), finish: bool = True, extras: bool = True) -> Path:
    """A run folder: updates, a checkpoint, an evaluation, a backtest and a sign-off."""
    rng = np.random.default_rng(0)
    log = start_run(run_dir, n_updates)
    for i in range(n_updates):
        log.append("update", **update_line(i, rng, i in violate, i in fail))
        if i == 3:
            log.append("nan_detected", where="cost_value", update=i, action="skipped update")
    if extras:
        ckpt = run_dir / "checkpoints" / "update_000029.pt"
        ckpt.parent.mkdir(exist_ok=True)
        ckpt.write_bytes(b"weights")
        log.append_file(run_dir, ckpt, role="checkpoint")
    if finish:
        log.append("run_finished", status="completed", updates=n_updates,
                   env_steps=2048 * n_updates, reason=None)
    if extras:
        log.append("evaluation", episodes=10, seed=123, deterministic=True, return_mean=-70.5,
                   return_std=3.2, constraints=[
                       {"name": "temperature", "limit": 5.0, "ep_cost_mean": 6.5,
                        "ep_cost_max": 9.0, "frac_over_limit": 0.6},
                       {"name": "pressure", "limit": 2.0, "ep_cost_mean": 1.0,
                        "ep_cost_max": 1.5, "frac_over_limit": 0.0}])
        log.append("backtest", split="test", limits={"drawdown": 0.15},
                   policy={"sharpe": 1.25, "max_drawdown": 0.08, "turnover": {"mean": 0.3}},
                   baselines={"equal_weight": {"sharpe": 0.75, "max_drawdown": 0.12},
                              "buy_and_hold": {"sharpe": 0.5, "max_drawdown": 0.2}})
        head = log.head_hash
        run_id = read_lines(run_dir)[0].get("run_id")
        log.append("signoff", **sign_fields(make_key("Dana Risk", "model-risk"), {
            "run_id": run_id, "decision": "approve", "comment": EVIL,
            "reviewed_seq": log.next_seq - 1, "reviewed_head_hash": head,
            "time": "2026-01-01T00:00:00Z"}))
    log.close()
    return run_dir


def crashed_and_resumed_run(run_dir: Path) -> Path:
    """Shaped like the trainer's log: updates 0..9, a checkpoint after update 7 (it holds the
    state at update 8), a crash mid-line, ``resumed`` from_update=8, then updates 8..11 again.
    Before the crash updates 8 and 9 violate and fail their line search; after it they do not."""
    rng = np.random.default_rng(3)
    log = start_run(run_dir, planned=12)
    for i in range(10):
        log.append("update", **update_line(i, rng, violate=i in (5, 8, 9), fail=i == 9))
        if i == 7:
            ckpt = run_dir / "checkpoints" / "update_000008.pt"
            ckpt.parent.mkdir(exist_ok=True)
            ckpt.write_bytes(b"weights at update 8")
            log.append_file(run_dir, ckpt, role="checkpoint")
    log.close()
    with open(run_dir / AUDIT_FILE, "ab") as f:
        f.write(b'{"seq": 99, "ty')  # the crash
    with AuditLog(run_dir) as log:
        log.append("resumed", from_update=8, checkpoint="checkpoints/update_000008.pt",
                   cut_tail=log.cut_tail)
        for i in range(8, 12):
            log.append("update", **update_line(i, rng, violate=i == 10, fail=False))
        log.append("nan_detected", where="environment", update=12, detail="obs NaN in copy 3",
                   action="run stopped; the last checkpoint holds the last good state")
        log.append("run_finished", status="completed", updates=12, env_steps=2048 * 12,
                   reason=None)
    return run_dir
