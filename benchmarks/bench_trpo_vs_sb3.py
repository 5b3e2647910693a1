"""safe-trpo's TRPO vs sb3-contrib's TRPO on Pendulum-v1, side by side in one process.

Same settings for both: 8 envs, 2048 env steps per update (256 per env), 64x64 tanh policy and
critic, target_kl 0.01, gamma 0.99, GAE lambda 0.95, 10 CG iterations with damping 0.1, a
10-try line search shrinking by 0.8, advantage normalisation, observation normalisation
(VecNormalize for SB3, our running normaliser), initial log-std 0, and the same critic work:
10 epochs of Adam (lr 1e-3) over minibatches of 128 per update. Both use one torch thread.

Prints env-steps per second of each (whole training loop: collection + update), their ratio,
the mean training return of the last updates, and a deterministic 10-episode evaluation.
``--native`` adds a clearly labelled extra line: safe-trpo on a native batched Pendulum-v1
(envs/pendulum_vec.py, the same dynamics step for step) while SB3 keeps Gymnasium's. The
headline is wall-clock throughput. On a shared machine other processes slow whichever side
runs while they are busy, so it also prints steps per CPU-second of the process (less
sensitive to that), and ``--repeats N`` alternates the two sides N times and reports medians.

``--whole-process`` times what a user waits for instead: each side as a fresh process,
imports and set-up included (``python -m safe_trpo.cli train`` for safe-trpo; a minimal script
building and training sb3-contrib's TRPO for the other; this checkout byte-compiled first, as
pip compiles an installed package: ``precompile``), alternating the two, and prints the
whole-process ratio beside the in-loop one measured in the same processes (safe-trpo: the sum
of its updates' recorded ``wall_s``; sb3-contrib: the wall time of ``model.learn``). Each side
saves its model (safe-trpo its checkpoint and audit record, SB3 ``model.save`` and its
normaliser), which the parent evaluates afterwards, outside the timing.

    pip install -e ".[bench]"
    python benchmarks/bench_trpo_vs_sb3.py --steps 204800 [--seeds 0 1 2 3 4] [--repeats 3]
        [--native]
    taskset -c 0 python benchmarks/bench_trpo_vs_sb3.py --whole-process --steps 20480 102400 \
        --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

# safe-trpo, torch, gymnasium and SB3 are imported inside the functions that use them: an SB3
# child process (``--whole-process``) must load only what a plain SB3 script loads.

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "pendulum_trpo.toml"
# Pendulum-v1's dynamics in one numpy call per vector step (envs/pendulum_vec.py): shows where
# safe-trpo stands when the env is not stepped copy by copy. Not the apples-to-apples headline.
NATIVE_PENDULUM = "envs.pendulum_vec:PendulumVectorEnv"
NATIVE_LABEL = "safe-trpo (native vector Pendulum)"


class Timed(NamedTuple):
    steps_per_s: float  # env steps / wall-clock seconds of the training loop
    steps_per_cpu_s: float  # env steps / CPU seconds this process used meanwhile
    train_return: float
    eval_return: float


def timed(train: Callable[[], int]) -> tuple[float, float]:
    """(steps per wall-clock second, steps per CPU second) of ``train``, which returns the
    number of env steps it took."""
    wall, cpu = time.perf_counter(), time.process_time()
    steps = train()
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


def our_overrides(steps: int, seed: int, out: Path, env_id: str = "Pendulum-v1") -> list[str]:
    return [f"algo.total_steps={steps}", f"run.seed={seed}", f"run.out_dir={str(out)!r}",
            "algo.init_log_std=0.0", "run.checkpoint_every=1000", f"env.id={env_id!r}"]


def our_returns(run_dir: Path, seed: int) -> tuple[float, float]:
    """(mean training return of the last 5 updates, deterministic 10-episode eval return)."""
    from safe_trpo.record.audit import read_lines
    from safe_trpo.run.evaluate import run_episodes
    from safe_trpo.run.make_env import make_vector_env
    from safe_trpo.run.policy_io import load_policy

    rows = [ln for ln in read_lines(run_dir) if ln["type"] == "update"]
    train_return = float(np.mean([r["return_mean"] for r in rows[-5:]]))
    policy = load_policy(run_dir)
    envs = make_vector_env(policy.scenario.env)
    return train_return, float(run_episodes(envs, policy, 10, seed + 10_000, []).returns.mean())


def ours(steps: int, seed: int, out: Path, env_id: str = "Pendulum-v1") -> Timed:
    from safe_trpo.config import load_scenario
    from safe_trpo.run.trainer import start_run

    scenario = load_scenario(SCENARIO, our_overrides(steps, seed, out, env_id))
    outcomes = []

    def train() -> int:
        outcomes.append(start_run(scenario, progress=False))
        return outcomes[0].env_steps

    sps, cpu_sps = timed(train)
    return Timed(sps, cpu_sps, *our_returns(outcomes[0].run_dir, seed))


def sb3_model(seed: int) -> Any:
    """sb3-contrib's TRPO at the settings of the module docstring, on VecNormalize'd envs."""
    import torch
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=8, seed=seed), norm_obs=True,
                        norm_reward=False)
    return TRPO("MlpPolicy", venv, n_steps=256, batch_size=128, gamma=0.99, gae_lambda=0.95,
                target_kl=0.01, cg_max_steps=10, cg_damping=0.1, line_search_max_iter=10,
                line_search_shrinking_factor=0.8, n_critic_updates=10, learning_rate=1e-3,
                normalize_advantage=True, seed=seed, device="cpu",
                policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]},
                               "activation_fn": torch.nn.Tanh, "log_std_init": 0.0})


def sb3_train_return(model: Any) -> float:
    buffer = model.ep_info_buffer  # the last 100 finished episodes
    return float(np.mean([ep["r"] for ep in list(buffer)[-40:]]))


def sb3(steps: int, seed: int) -> Timed:
    model = sb3_model(seed)
    sps, cpu_sps = timed(lambda: model.learn(total_timesteps=steps).num_timesteps)
    return Timed(sps, cpu_sps, sb3_train_return(model), sb3_eval(model, model.get_env(), seed))


def sb3_eval(model: Any, venv: Any, seed: int) -> float:
    """Deterministic 10-episode return on Gymnasium's Pendulum-v1, observations normalised
    with the training statistics."""
    import gymnasium as gym

    venv.training = False
    env = gym.make("Pendulum-v1")
    returns = []
    for ep in range(10):
        obs, _ = env.reset(seed=seed + 10_000 + ep)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(venv.normalize_obs(obs[None]), deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


SB3_CHILD = """
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
sys.path.insert(0, {bench_dir!r})
from bench_trpo_vs_sb3 import sb3_model, sb3_train_return
steps, seed, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
model = sb3_model(seed)
started = time.perf_counter()
model.learn(total_timesteps=steps)
loop_s = time.perf_counter() - started
model.save(out / "model.zip")
model.get_env().save(str(out / "vecnormalize.pkl"))
print(json.dumps({{"loop_s": loop_s, "steps": model.num_timesteps,
                  "train_return": sb3_train_return(model)}}))
"""


class Whole(NamedTuple):
    process_s: float  # wall time of the whole process: start, imports, set-up, training, exit
    loop_s: float  # the training loop alone, measured inside the process
    train_return: float
    eval_return: float


def run_child(argv: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of a fresh Python process running ``argv``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=False)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed:\n{out.stderr[-3000:]}")
    return wall, out.stdout


def ours_process(steps: int, seed: int, out: Path) -> Whole:
    """``safe-trpo train`` as a user runs it; in-loop time from the record's ``wall_s``."""
    from safe_trpo.record.audit import read_lines

    argv = ["-m", "safe_trpo.cli", "train", str(SCENARIO), "--no-progress"]
    for override in our_overrides(steps, seed, out):
        argv += ["--set", override]
    wall, stdout = run_child(argv)
    run_dir = Path(stdout.strip().splitlines()[-1])
    rows = [ln for ln in read_lines(run_dir) if ln["type"] == "update"]
    assert rows[-1]["env_steps"] == steps, rows[-1]
    return Whole(wall, sum(r["wall_s"] for r in rows), *our_returns(run_dir, seed))


def sb3_process(steps: int, seed: int, out: Path) -> Whole:
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    code = SB3_CHILD.format(bench_dir=str(Path(__file__).resolve().parent))
    wall, stdout = run_child(["-c", code, str(steps), str(seed), str(out)])
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["steps"] == steps, result
    venv = VecNormalize.load(str(out / "vecnormalize.pkl"),
                             make_vec_env("Pendulum-v1", n_envs=8, seed=seed))
    model = TRPO.load(out / "model.zip", device="cpu")
    return Whole(wall, result["loop_s"], result["train_return"], sb3_eval(model, venv, seed))


def precompile() -> None:
    """Byte-compile this checkout once, as ``pip install`` compiles an installed package.

    SB3's modules were compiled when pip installed them; this checkout is an editable install,
    and with PYTHONDONTWRITEBYTECODE set (as on CI machines) every fresh process would compile
    safe-trpo's sources again, a cost no installed copy pays. Python reads the compiled files
    whatever that variable says.
    """
    import compileall

    for folder in ("safe_trpo", "envs", "benchmarks"):
        compileall.compile_dir(ROOT / folder, quiet=1)


def whole_process(args: argparse.Namespace) -> None:
    precompile()
    for steps in args.steps:
        ratios, loop_ratios = [], []
        runs: dict[str, list[Whole]] = {"safe-trpo": [], "sb3-contrib": []}
        for seed in args.seeds:
            for _ in range(args.repeats):  # alternating, so both see the same machine load
                with tempfile.TemporaryDirectory() as tmp:
                    runs["safe-trpo"].append(ours_process(steps, seed, Path(tmp)))
                with tempfile.TemporaryDirectory() as tmp:
                    runs["sb3-contrib"].append(sb3_process(steps, seed, Path(tmp)))
                ours_run, sb3_run = runs["safe-trpo"][-1], runs["sb3-contrib"][-1]
                ratios.append(sb3_run.process_s / ours_run.process_s)
                loop_ratios.append(sb3_run.loop_s / ours_run.loop_s)
                for name, r in (("safe-trpo", ours_run), ("sb3-contrib", sb3_run)):
                    print(f"    seed {seed} {name:12} process {r.process_s:6.2f} s, in loop "
                          f"{r.loop_s:6.2f} s, train return {r.train_return:8.1f}, eval "
                          f"return {r.eval_return:8.1f}", flush=True)
        print(f"Pendulum-v1, {steps} env steps, 1 torch thread, fresh processes, seeds "
              f"{args.seeds} x {args.repeats} alternating repeat(s); medians")
        print(f"  {'':13}{'process s':>10}{'in-loop s':>11}{'fixed s':>9}{'train return':>14}"
              f"{'eval return':>13}")
        for name, rs in runs.items():
            med = Whole(*np.median(np.array(rs), axis=0))
            print(f"  {name:13}{med.process_s:>10.2f}{med.loop_s:>11.2f}"
                  f"{med.process_s - med.loop_s:>9.2f}{med.train_return:>14.1f}"
                  f"{med.eval_return:>13.1f}")
        print(f"  speed ratio safe-trpo vs sb3-contrib: whole process {np.median(ratios):.2f}x "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}), in loop "
              f"{np.median(loop_ratios):.2f}x (range {min(loop_ratios):.2f}-"
              f"{max(loop_ratios):.2f})")
        ours_eval = [r.eval_return for r in runs["safe-trpo"]]
        sb3_eval = [r.eval_return for r in runs["sb3-contrib"]]
        ahead = sum(o >= s for o, s in zip(ours_eval, sb3_eval, strict=True))
        print(f"  eval return: safe-trpo >= sb3-contrib in {ahead} of {len(ours_eval)} runs; "
              f"worst run {min(ours_eval):.1f} vs {min(sb3_eval):.1f}")


def in_process(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    for steps in args.steps:
        in_process_at(args, steps)


def in_process_at(args: argparse.Namespace, steps: int) -> None:
    names = ["safe-trpo", "sb3-contrib"] + ([NATIVE_LABEL] if args.native else [])
    per_seed: dict[int, dict[str, Timed]] = {}
    for seed in args.seeds:
        runs: dict[str, list[Timed]] = {name: [] for name in names}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                runs["safe-trpo"].append(ours(steps, seed, Path(tmp)))
            runs["sb3-contrib"].append(sb3(steps, seed))
            if args.native:
                with tempfile.TemporaryDirectory() as tmp:
                    runs[NATIVE_LABEL].append(ours(steps, seed, Path(tmp), NATIVE_PENDULUM))
        per_seed[seed] = {name: Timed(*np.median(np.array(rs), axis=0))
                          for name, rs in runs.items()}
    print(f"Pendulum-v1, {steps} env steps, 1 torch thread, median of {args.repeats} "
          f"alternating run(s) per seed")
    width = max(map(len, names)) + 2
    header = (f"{'seed':>4}  {'':{width}}{'steps/s':>10}{'steps/cpu-s':>13}{'train return':>15}"
              f"{'eval return':>14}")
    print(header)
    for seed, med in per_seed.items():
        for name, t in med.items():
            print(f"{seed:>4}  {name:{width}}{t.steps_per_s:>10.0f}{t.steps_per_cpu_s:>13.0f}"
                  f"{t.train_return:>15.1f}{t.eval_return:>14.1f}")
    for name in [n for n in names if n != "sb3-contrib"]:
        ratios = [m[name].steps_per_s / m["sb3-contrib"].steps_per_s for m in per_seed.values()]
        cpu_ratios = [m[name].steps_per_cpu_s / m["sb3-contrib"].steps_per_cpu_s
                      for m in per_seed.values()]
        print(f"throughput ratio {name} / sb3-contrib: {np.median(ratios):.2f}x median over "
              f"{len(ratios)} seed(s) (range {min(ratios):.2f}-{max(ratios):.2f}; per "
              f"CPU-second {np.median(cpu_ratios):.2f}x)")
    if len(per_seed) > 1:
        for name in names:
            train = np.mean([m[name].train_return for m in per_seed.values()])
            evaluation = np.mean([m[name].eval_return for m in per_seed.values()])
            print(f"mean over seeds, {name}: train return {train:.1f}, eval return "
                  f"{evaluation:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[204_800],
                        help="total env steps of each run (several sizes: one table each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run of each side per seed (and per repeat)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="alternate the two sides this many times per seed; medians are "
                             "reported")
    parser.add_argument("--native", action="store_true",
                        help=f"also time safe-trpo on {NATIVE_PENDULUM} (a second line, not "
                             "the headline: SB3 keeps Gymnasium's env)")
    parser.add_argument("--whole-process", action="store_true",
                        help="time each side as a fresh process, imports and set-up included, "
                             "beside its in-loop time")
    args = parser.parse_args()
    (whole_process if args.whole_process else in_process)(args)


if __name__ == "__main__":
    main()
