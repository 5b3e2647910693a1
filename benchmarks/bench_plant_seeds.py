"""The shipped process scenarios over several training seeds, against PID and MPC on the same
evaluation episodes.

For each scenario and seed: train the scenario as shipped (``--total-steps`` overrides its
length for a shorter check, and is printed), then ``compare_run`` the trained policy on
``--episodes`` fresh evaluation episodes from ``--eval-seed``. The evaluation episodes are the
same for every seed (same seed, same copies), so the baselines are run once, on the first
seed's run, and their figures stand beside the policy's median and spread over seeds.

Printed per scenario: per seed the policy's mean return, episodes over any limit, mean valve
travel and IAE; then the median and range over seeds, and the PID's and MPC's figures.

    python benchmarks/bench_plant_seeds.py --seeds 0-4 --episodes 20
    python benchmarks/bench_plant_seeds.py --scenarios pressure_relief.toml --total-steps 200000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from safe_trpo.config import load_scenario
from safe_trpo.run.compare import compare_run
from safe_trpo.run.trainer import start_run

ROOT = Path(__file__).resolve().parents[1]


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def _figures(result: dict) -> dict[str, float]:
    over = max((c["episodes_over"] for c in result["constraints"]), default=0)
    return {"return": result["return"]["mean"], "worst_return": result["return"]["min"],
            "episodes_over_any": float(over), "valve_travel": result["valve_travel"]["mean"],
            "iae": result["iae"]["mean"]}


def run_scenario(name: str, seeds: list[int], total_steps: int | None, episodes: int,
                 eval_seed: int, out: Path, controllers: list[str]) -> dict:
    per_seed, baselines = {}, {}
    for i, seed in enumerate(seeds):
        overrides = [f"run.seed={seed}", f"run.out_dir={str(out)!r}"]
        if total_steps is not None:
            overrides.append(f"algo.total_steps={total_steps}")
        scenario = load_scenario(ROOT / "scenarios" / name, overrides)
        tic = time.perf_counter()
        outcome = start_run(scenario, progress=False)
        train_s = time.perf_counter() - tic
        record = compare_run(outcome.run_dir, controllers if i == 0 else [], episodes,
                             eval_seed)
        per_seed[seed] = {**_figures(record["controllers"]["policy"]), "train_s": train_s,
                          "run": str(outcome.run_dir)}
        if i == 0:
            baselines = {c: _figures(record["controllers"][c]) for c in controllers}
            for c in controllers:
                if "solve_ms" in record["controllers"][c]:
                    baselines[c]["solve_ms"] = record["controllers"][c]["solve_ms"]
        f = per_seed[seed]
        print(f"  seed {seed}: return {f['return']:.2f} (worst {f['worst_return']:.2f}), "
              f"episodes over a limit {f['episodes_over_any']:.0f}/{episodes}, valve travel "
              f"{f['valve_travel']:.3f}, IAE {f['iae']:.4g}, trained in {train_s:.0f} s",
              flush=True)
    return {"per_seed": per_seed, "baselines": baselines}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="cstr_runaway.toml,pressure_relief.toml")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--total-steps", type=int, help="override algo.total_steps (shorter check)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--eval-seed", type=int, default=2026)
    p.add_argument("--controllers", default="pid,mpc")
    p.add_argument("--out", type=Path, default=Path("reports/bench_plant_seeds"))
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args()
    seeds, controllers = _seeds(args.seeds), args.controllers.split(",")
    summary = {}
    for name in args.scenarios.split(","):
        print(f"{name}: seeds {seeds}, total_steps {args.total_steps or 'as shipped'}, "
              f"{args.episodes} evaluation episodes from seed {args.eval_seed}", flush=True)
        result = run_scenario(name, seeds, args.total_steps, args.episodes, args.eval_seed,
                              args.out, controllers)
        summary[name] = result
        print(f"  {'':<8} {'return':>26} {'episodes over':>22} {'valve travel':>24} "
              f"{'IAE':>24}")
        cols = ("return", "episodes_over_any", "valve_travel", "iae")
        vals = {k: np.array([f[k] for f in result["per_seed"].values()]) for k in cols}
        print(f"  {'policy':<8} " + " ".join(
            f"{np.median(vals[k]):>10.4g} [{vals[k].min():.4g}, {vals[k].max():.4g}]".rjust(
                26 if k == "return" else 24) for k in cols) + "  (median [range] over seeds)")
        for c, f in result["baselines"].items():
            print(f"  {c:<8} " + " ".join(f"{f[k]:>24.4g}" for k in cols))
            if "solve_ms" in f:
                s = f["solve_ms"]
                print(f"  {'':<8} solve time median {s['median']:.1f} ms, p95 {s['p95']:.1f} "
                      f"ms, max {s['max']:.1f} ms, {s['failures']}/{s['solves']} not converged")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
