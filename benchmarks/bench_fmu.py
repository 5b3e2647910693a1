"""FMU rollout throughput: 1 process vs N worker processes vs Ray actors, at 8 and 64 copies.

The plant is the example heated tank compiled from C, with its internal Euler substeps raised
until one ``fmi2DoStep`` costs about ``--step-ms`` (default 1 ms): a slow plant, where parallel
rollouts matter. For each number of copies and each backend it prints env-steps/s next to the
limit set by the FMU's own single-step time, the speed-up over one process, and the parallel
efficiency: measured steps/s / (workers x 1 / single-step time), i.e. the share of the cores
used that went into stepping the plant. "FMU share of CPU" is the plant's own work over the
CPU time the driver and its workers (processes or local Ray actors) spent: what the parallel
machinery costs, whatever else runs. "others" is how many cores everything else on the machine
(Ray's daemons included) used during the row, with the load average before and after: on a
shared machine the other processes take cores, and the efficiency says so.

Ray actors are stepped over their direct TCP channel; ``--ray-calls`` adds a row with the
channel refused, i.e. stepped through Ray actor calls (the fallback on a cluster whose ports
are closed).

    python benchmarks/bench_fmu.py                       # workers = the allowed CPUs
    python benchmarks/bench_fmu.py --workers 2 --steps 40 --copies 8 64
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from envs.fmu import FMUEnv, ParallelVectorEnv, ray_backend
from envs.fmu.build_example import build_fmu
from envs.fmu.parallel import available_cpus
from envs.fmu.simulator import FMUSimulator
from envs.fmu.spec import parse_spec

KWARGS = {
    "step_size": 1.0,
    "episode_steps": 50,
    "actions": [{"name": "heat", "low": 0.0, "high": 1.0}],
    "observations": ["T", "dTdt"],
    "reward": {"output": "production"},
    "costs": {"overheat": {"output": "T", "above": 80.0}},
    "randomize": {"T0": [20.0, 40.0]},
}


def fmu_step_seconds(fmu: Path, substeps: float, repeats: int) -> float:
    """Median wall time of one bare FMU step (set input, doStep, read outputs), no env."""
    spec = parse_spec(str(fmu), **{**KWARGS, "randomize": None,
                                   "start_values": {"substeps": substeps}})
    sim = FMUSimulator(spec)
    sim.reset(spec.start_values)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sim.step([0.5])
        times.append(time.perf_counter() - start)
    sim.close()
    return float(np.median(times))


def calibrate(fmu: Path, target_s: float) -> tuple[float, float]:
    """Substeps giving about ``target_s`` per step, and the measured step time."""
    substeps = 10_000.0
    for _ in range(4):
        t = fmu_step_seconds(fmu, substeps, 30)
        substeps = max(1.0, round(substeps * target_s / t))
    return substeps, fmu_step_seconds(fmu, substeps, 200)


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of processes ``pids`` (Linux /proc), None elsewhere."""
    try:
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes spent so far, steal time included (Linux /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


def refused(address: tuple[str, int], authkey: bytes) -> None:
    """A ``connect`` for ``--ray-calls``: every channel refused, as by a closed port."""
    raise ConnectionRefusedError("refused for --ray-calls")


def worker_pids(venv: ParallelVectorEnv) -> list[int]:
    """The worker processes, or the Ray actors' processes (a local Ray: the same machine)."""
    procs = getattr(venv._exec, "procs", [])
    actors = getattr(venv._exec, "actors", [])
    if actors:
        return ray_backend._ray().get([a.pid.remote() for a in actors])
    return [p.pid for p in procs]


def throughput(fmu: Path, substeps: float, copies: int, workers: int, backend: str,
               steps: int) -> tuple[float, float | None, float | None]:
    """Env-steps/s of ``steps`` vector steps (after reset and one warm-up step), the CPU
    seconds this process and its workers spent meanwhile, and how many cores everything else
    on the machine used meanwhile (Ray's own daemons included)."""
    kwargs = {"fmu": str(fmu), **KWARGS, "start_values": {"substeps": substeps}}
    connect = ray_backend.connect
    if backend == "ray calls":
        ray_backend.connect = refused
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            venv = ParallelVectorEnv([functools.partial(FMUEnv, **kwargs)] * copies, workers,
                                     backend.split()[0])
    finally:
        ray_backend.connect = connect
    pids = [os.getpid()] + worker_pids(venv)
    try:
        venv.reset(seed=0)
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, (steps + 1, copies, 1)).astype(np.float32)
        venv.step(actions[0])
        busy0, cpu0, start = machine_busy_seconds(), cpu_seconds(pids), time.perf_counter()
        for t in range(steps):
            venv.step(actions[t + 1])
        wall, cpu1, busy1 = time.perf_counter() - start, cpu_seconds(pids), machine_busy_seconds()
        cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        others = (None if cpu is None or busy0 is None or busy1 is None
                  else max(0.0, (busy1 - busy0 - cpu) / wall))
        return copies * steps / wall, cpu, others
    finally:
        venv.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=available_cpus(),
                        help="worker processes and Ray actors (default: the CPUs this process "
                             "may use; worker processes that fill them are pinned one per CPU)")
    parser.add_argument("--copies", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--steps", type=int, default=30, help="timed vector steps per case")
    parser.add_argument("--step-ms", type=float, default=1.0, help="target FMU step time")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--ray-calls", action="store_true",
                        help="also Ray without the direct channel (plain actor calls)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fmu = build_fmu(Path(tmp) / "heated_tank.fmu")
        substeps, step_s = calibrate(fmu, args.step_ms / 1000)
        limit = 1.0 / step_s
        print(f"cores: {os.cpu_count()}  load average before: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"FMU single step: {step_s * 1e3:.3f} ms ({substeps:.0f} Euler substeps) -> "
              f"limit {limit:,.0f} steps/s per core")
        print(f"{'copies':>6}  {'backend':<22} {'workers':>7} {'steps/s':>10} "
              f"{'limit':>10} {'speed-up':>8} {'efficiency':>10} {'FMU share of CPU':>16} "
              f"{'others (cores)':>14}")
        backends = [("1 process", 0, "process"), (f"{args.workers} processes", args.workers,
                                                  "process")]
        if not args.no_ray:
            backends.append((f"Ray ({args.workers} actors)", args.workers, "ray"))
            if args.ray_calls:
                backends.append((f"Ray calls ({args.workers} actors)", args.workers,
                                 "ray calls"))
        for copies in args.copies:
            base = None
            for label, workers, backend in backends:
                rate, cpu, others = throughput(fmu, substeps, copies, workers, backend,
                                               args.steps)
                used = max(1, min(workers, copies))
                base = base or rate
                # The plant's own work (steps x single-step time) over the CPU time spent:
                # what the parallel machinery costs, whatever else the machine runs.
                share = "-" if cpu is None else f"{copies * args.steps * step_s / cpu:.0%}"
                print(f"{copies:>6}  {label:<22} {used:>7} {rate:>10,.0f} "
                      f"{used * limit:>10,.0f} {rate / base:>7.2f}x "
                      f"{rate / (used * limit):>9.0%} {share:>16} "
                      f"{'-' if others is None else f'{others:.2f}':>14}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
