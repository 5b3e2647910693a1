"""Synthetic run folders for the review app's tests, written with the real ``AuditLog``.

Costs are given explicitly (one list per constraint), so a test can compute what the app should
show (margins, violations) by itself rather than read it back from the app.
"""

from __future__ import annotations

import json
import pickle
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from safe_trpo.record import signoff
from safe_trpo.record.audit import AuditLog
from tests.record.keyfix import make_key

DEFAULT_COSTS = {"temperature": [7.0, 5.5, 4.0, 3.0], "valve_wear": [1.0, 2.5, 1.5, 0.5]}
DEFAULT_LIMITS = {"temperature": 5.0, "valve_wear": 2.0}


class CheckpointUnpickled(RuntimeError):
    """Raised if anything ever unpickles a test checkpoint (the app must not)."""


def _trip() -> None:
    raise CheckpointUnpickled("a checkpoint was unpickled")


class _Tripwire:
    def __reduce__(self) -> tuple:
        return (_trip, ())


def scenario(env_id: str, algo: str, limits: dict[str, float], seed: int) -> dict[str, Any]:
    return {"env": {"id": env_id, "num_envs": 2, "kwargs": {}},
            "algo": {"name": algo, "target_kl": 0.01, "gamma": 0.99},
            "constraints": [{"name": n, "limit": v} for n, v in limits.items()],
            "run": {"seed": seed, "out_dir": "reports"}, "eval": {}}


def update_line(u: int, costs: dict[str, list[float | None]], limits: dict[str, float],
                algo: str, kl: float, accepted: bool = True, case: str = "feasible"
                ) -> dict[str, Any]:
    constraints = []
    for name, series in costs.items():
        cost = series[u]
        constraints.append({
            "name": name, "limit": limits[name], "ep_cost": cost,
            "violated": None if cost is None else cost > limits[name],
            "margin": None if cost is None else limits[name] - cost, "nu": 0.1 * u})
    cpo = None
    if algo == "cpo":
        cpo = {"case": case, "lambda": 1.0 + u, "nu": [0.1 * u] * len(costs),
               "solver_status": "optimal", "solve_time_ms": 1.5}
    return {"update": u, "env_steps": 1000 * (u + 1), "kl": kl, "target_kl": 0.01,
            "accepted": accepted, "backtracks": 0 if accepted else 10,
            "return_mean": -50.0 + 10 * u, "episodes": 4, "algo": algo,
            "constraints": constraints, "cpo": cpo, "value_loss": 0.5, "wall_s": 0.1}


BACKTEST_BASELINES = ("equal-weight", "buy-and-hold", "inverse-vol", "risk-parity", "min-variance",
                      "mean-variance")


def backtest_metrics(sharpe: float, breach_drawdown: int) -> dict[str, Any]:
    """One strategy's figures, with the keys ``safe_trpo.finance.backtest.run_strategy`` records."""
    return {"days": 250, "final_wealth": 1.1, "annual_return": 0.1, "annual_volatility": 0.15,
            "sharpe": sharpe, "sortino": 1.5 * sharpe, "max_drawdown": 0.12, "cvar_95": 0.02,
            "avg_daily_turnover": 0.05, "total_costs": 0.004,
            "breach_days": {"drawdown": breach_drawdown, "concentration": 0, "turnover": 1,
                            "cvar": 0},
            "solver_failures": 0}


def backtest_fields(run_dir: Path) -> dict[str, Any]:
    """A ``backtest`` line as ``safe_trpo.finance.backtest._audit`` writes it for a trained run:
    ``policy`` is the run folder as given on the command line, its figures are in ``metrics``,
    the baselines' in ``baselines`` (curves left out, ``json`` added)."""
    return {"policy": str(run_dir), "metrics": backtest_metrics(1.2, 3),
            "baselines": {name: backtest_metrics(0.8 - 0.1 * i, i)
                          for i, name in enumerate(BACKTEST_BASELINES)},
            "prices": "data/stock_prices.csv", "prices_sha256": "ef" * 32,
            "tickers": ["AAA", "BBB"], "start": "2024-01-02", "end": "2024-12-31", "days": 250,
            "cost_rate": 0.001,
            "limits": {"drawdown": 0.2, "concentration": 0.4, "turnover": 0.2, "cvar": 0.03},
            "in_sample": False, "json": None}


def make_run(root: Path, run_id: str, *, env_id: str = "SafeTRPO/CSTR-v0", algo: str = "cpo",
             costs: dict[str, list[float | None]] | None = None,
             limits: dict[str, float] | None = None, seed: int = 0, finished: bool = True,
             kls: list[float] | None = None, rejected: tuple[int, ...] = (),
             recovery: tuple[int, ...] = (), checkpoint: bool = False,
             evaluation: bool = False, backtest: bool = False) -> Path:
    """Write ``root/run_id`` with run_started, one update per cost entry, and run_finished.

    checkpoint: also write a checkpoint file bound into the chain by a ``file`` line; its bytes
        are a pickle that raises ``CheckpointUnpickled`` when loaded.
    """
    costs = DEFAULT_COSTS if costs is None else costs
    limits = DEFAULT_LIMITS if limits is None else limits
    n = len(next(iter(costs.values())))
    kls = kls if kls is not None else [0.008] * n
    run_dir = Path(root) / run_id
    run_dir.mkdir(parents=True)
    with AuditLog(run_dir) as log:
        log.append("run_started", run_id=run_id, scenario=scenario(env_id, algo, limits, seed),
                   scenario_file="scenarios/test.toml", scenario_sha256="ab" * 32, seed=seed,
                   versions={"safe_trpo": "0.1.0"}, git_commit=None,
                   data_files=[{"path": "data/prices.csv", "sha256": "cd" * 32}],
                   planned_updates=n)
        for u in range(n):
            log.append("update", **update_line(u, costs, limits, algo, kls[u],
                                               accepted=u not in rejected,
                                               case="recovery" if u in recovery else "feasible"))
        if checkpoint:
            ckpt = run_dir / "checkpoints" / f"update_{n - 1:06d}.pt"
            ckpt.parent.mkdir()
            ckpt.write_bytes(pickle.dumps(_Tripwire()))
            log.append_file(run_dir, ckpt, "checkpoint")
        if evaluation:
            log.append("evaluation", episodes=10, seed=123, deterministic=True, return_mean=-5.0,
                       return_std=1.0, constraints=[
                           {"name": name, "limit": limits[name], "ep_cost_mean": limits[name] + 1,
                            "ep_cost_max": limits[name] + 2, "frac_over_limit": 0.6}
                           for name in costs])
        if backtest:
            log.append("backtest", **backtest_fields(run_dir))
        if finished:
            log.append("run_finished", status="completed", updates=n, env_steps=1000 * n,
                       reason="total_steps reached")
    return run_dir


def rewrite_line(run_dir: Path, seq: int, **changes: Any) -> None:
    """Edit line ``seq`` in place without re-hashing it: what tampering looks like."""
    path = Path(run_dir) / "audit.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    obj = json.loads(lines[seq])
    obj.update(changes)
    lines[seq] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def append(run_dir: Path, type_: str, **fields: Any) -> dict[str, Any]:
    with AuditLog(run_dir) as log:
        return log.append(type_, **fields)


def head(run_dir: Path) -> tuple[int, str]:
    """(seq, hash) of the last line."""
    last = json.loads((Path(run_dir) / "audit.jsonl").read_text().splitlines()[-1])
    return last["seq"], last["hash"]



def sign(run_dir: Path, decision: str = "approve", reviewer: str = "Ada", comment: str = "ok",
         allowed: tuple[str, ...] | None = None) -> dict:
    """Sign the run off as the app would, on the head the reviewer was shown."""
    seq, hash_ = head(run_dir)
    return signoff.append_signoff(run_dir, key=make_key(reviewer, "model-risk reviewer"),
                                  decision=decision, comment=comment, displayed_seq=seq,
                                  displayed_hash=hash_, allowed=allowed)

def make_malformed(root: Path) -> dict[str, str]:
    """One folder per kind of damage; returns {run_id: the integrity the list should show}."""
    root = Path(root)
    (root / "empty-folder").mkdir()
    (root / "no-audit").mkdir()
    (root / "no-audit" / "scenario.toml").write_text("[env]\nid = 'x'\n")
    (root / "garbage-json").mkdir()
    (root / "garbage-json" / "audit.jsonl").write_text("{this is not json\n")
    cut = make_run(root, "cut-tail")
    with open(cut / "audit.jsonl", "a", encoding="utf-8") as f:
        f.write('{"seq": 99, "type": "upd')
    tampered = make_run(root, "tampered-line")
    rewrite_line(tampered, 2, kl=0.0001)
    make_run(root, "only-started", costs={"temperature": []}, limits={"temperature": 5.0},
             finished=False)
    (root / "audit-is-dir").mkdir()
    (root / "audit-is-dir" / "audit.jsonl").mkdir()
    (root / "binary").mkdir()
    (root / "binary" / "audit.jsonl").write_bytes(b"\x80\x81\xfe\xff\n")
    (root / "empty-audit").mkdir()
    (root / "empty-audit" / "audit.jsonl").write_bytes(b"")
    odd = root / "odd-scenario"
    odd.mkdir()
    with AuditLog(odd) as log:  # a valid chain whose content is not what a trainer writes
        log.append("run_started", scenario="not a table", seed="x")
        log.append("update", update="zero", kl="high", constraints="none", cpo=[1])
        log.append("run_finished", status="completed")
    return {"empty-folder": "no audit", "no-audit": "no audit", "garbage-json": "tampered",
            "cut-tail": "interrupted", "tampered-line": "tampered", "only-started": "intact",
            "audit-is-dir": "unreadable", "binary": "tampered", "empty-audit": "empty",
            "odd-scenario": "intact"}


APP = Path(__file__).resolve().parents[2] / "safe_trpo" / "review" / "app.py"


def open_app(**query: str) -> AppTest:
    """The review app run headless with ``query`` in its address; fails on any exception."""
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    """The text shown: markdown sources with the app's backslash escapes (``runs.md``) read."""
    return re.sub(r"\\(.)", r"\1", "\n".join(str(e.value) for e in elements))


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate ``proc``, killing it if it has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
