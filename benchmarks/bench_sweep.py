"""Wall time of a 4-seed sweep on the ``local`` backend versus the same 4 runs one after another.

    python benchmarks/bench_sweep.py [--seeds 0-3] [--workers 2] [--total-steps 100000]

Both sides train the same scenario (Pendulum-v1, TRPO, 4 copies, 1000 steps per update, one
torch thread per run) with the same seeds, without reports. The sequential side calls
``start_run`` for each seed in this one process (imports paid once); the sweep side pays a fresh
spawned process per run (imports paid per run) but runs ``--workers`` of them at a time. The
ideal ratio is the worker count; process start-up (~2-3 s of imports per run: torch, cvxpy) and
other load on the machine eat into it, more so the shorter each run is. The script also checks
that both sides produced the same final returns, i.e. did the same work, and prints the CPU
seconds each side used (this process for the sequential side, the reaped worker processes for
the sweep), which other load on a shared machine does not change the way it changes wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from safe_trpo.config import load_scenario
from safe_trpo.run.trainer import start_run
from safe_trpo.sweep.plan import parse_seeds, plan_sweep
from safe_trpo.sweep.runner import run_sweep
from safe_trpo.sweep.summary import run_result

SCENARIO = """
[env]
id = "Pendulum-v1"
num_envs = 4
[algo]
name = "trpo"
steps_per_update = 1000
total_steps = {total_steps}
hidden_sizes = [32, 32]
critic_epochs = 5
[run]
checkpoint_every = 100
"""


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def sequential(path: Path, seeds: list[int], out: Path) -> tuple[float, dict[int, float]]:
    """Train each seed in turn in this process; wall seconds and final return per seed."""
    started = time.perf_counter()
    finals = {}
    for seed in seeds:
        scenario = load_scenario(path, [f"run.seed={seed}", f"run.out_dir={str(out)!r}"])
        outcome = start_run(scenario, progress=False)
        assert outcome.status == "completed", outcome.reason
        finals[seed] = run_result(outcome.run_dir)["final_return"]
    return time.perf_counter() - started, finals


def swept(path: Path, seeds: str, workers: int, out: Path) -> tuple[float, dict[int, float]]:
    """The same runs as a ``local`` sweep; wall seconds and final return per seed."""
    started = time.perf_counter()
    plan = plan_sweep([path], seeds, [], out, make_reports=False)
    summary = run_sweep(plan, "local", workers=workers, echo=lambda _: None)
    elapsed = time.perf_counter() - started
    (config,) = summary["configurations"]
    assert config["n_completed"] == config["n_runs"], [r["reason"] for r in config["runs"]]
    return elapsed, {r["seed"]: r["final_return"] for r in config["runs"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0-3")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--total-steps", type=int, default=100_000, help="env steps per run")
    args = p.parse_args()
    seeds = parse_seeds(args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(SCENARIO.format(total_steps=args.total_steps))
        load = [os.getloadavg()[0]]
        c0 = cpu_seconds(resource.RUSAGE_SELF)
        t_seq, f_seq = sequential(path, seeds, Path(tmp) / "sequential")
        c_seq = cpu_seconds(resource.RUSAGE_SELF) - c0
        load.append(os.getloadavg()[0])
        c0 = cpu_seconds(resource.RUSAGE_CHILDREN)
        t_par, f_par = swept(path, args.seeds, args.workers, Path(tmp) / "sweep")
        c_par = cpu_seconds(resource.RUSAGE_CHILDREN) - c0
        load.append(os.getloadavg()[0])
    print(f"machine: {os.cpu_count()} cores; 1-min load average before / between / after: "
          + " / ".join(f"{x:.1f}" for x in load))
    print(f"{len(seeds)} runs of {args.total_steps} steps each        wall      CPU")
    print(f"  one after another, one process     {t_seq:7.1f} s {c_seq:7.1f} s")
    print(f"  sweep --backend local, {args.workers} workers   {t_par:7.1f} s {c_par:7.1f} s")
    print(f"  speed-up (sequential / sweep wall) {t_seq / t_par:7.2f}x (ideal {args.workers}x)")
    same = all(f_seq[s] == f_par[s] for s in seeds)
    print(f"  same final returns on both sides: {same}")


if __name__ == "__main__":
    main()
