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

    pip install -e ".[bench]"
    python benchmarks/bench_trpo_vs_sb3.py --steps 204800 [--seeds 0 1 2 3 4] [--repeats 3]
        [--native]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch

from safe_trpo.config import load_scenario
from safe_trpo.record.audit import read_lines
from safe_trpo.run.evaluate import run_episodes
from safe_trpo.run.make_env import make_vector_env
from safe_trpo.run.policy_io import load_policy
from safe_trpo.run.trainer import start_run

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "pendulum_trpo.toml"
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


def ours(steps: int, seed: int, out: Path, env_id: str = "Pendulum-v1") -> Timed:
    scenario = load_scenario(SCENARIO, [f"algo.total_steps={steps}", f"run.seed={seed}",
                                        f"run.out_dir={str(out)!r}", "algo.init_log_std=0.0",
                                        "run.checkpoint_every=1000", f"env.id={env_id!r}"])
    outcomes = []

    def train() -> int:
        outcomes.append(start_run(scenario, progress=False))
        return outcomes[0].env_steps

    sps, cpu_sps = timed(train)
    outcome = outcomes[0]
    rows = [ln for ln in read_lines(outcome.run_dir) if ln["type"] == "update"]
    train_return = float(np.mean([r["return_mean"] for r in rows[-5:]]))
    policy = load_policy(outcome.run_dir)
    envs = make_vector_env(scenario.env)
    evaluation = run_episodes(envs, policy, 10, seed + 10_000, []).returns.mean()
    return Timed(sps, cpu_sps, train_return, float(evaluation))


def sb3(steps: int, seed: int) -> Timed:
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=8, seed=seed), norm_obs=True,
                        norm_reward=False)
    model = TRPO("MlpPolicy", venv, n_steps=256, batch_size=128, gamma=0.99, gae_lambda=0.95,
                 target_kl=0.01, cg_max_steps=10, cg_damping=0.1, line_search_max_iter=10,
                 line_search_shrinking_factor=0.8, n_critic_updates=10, learning_rate=1e-3,
                 normalize_advantage=True, seed=seed, device="cpu",
                 policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]},
                                "activation_fn": torch.nn.Tanh, "log_std_init": 0.0})
    sps, cpu_sps = timed(lambda: model.learn(total_timesteps=steps).num_timesteps)
    buffer = model.ep_info_buffer  # the last 100 finished episodes
    train_return = float(np.mean([ep["r"] for ep in list(buffer)[-40:]]))
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
    return Timed(sps, cpu_sps, train_return, float(np.mean(returns)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=204_800)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run of each side per seed (and per repeat)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="alternate the two sides this many times per seed; medians are "
                             "reported")
    parser.add_argument("--native", action="store_true",
                        help=f"also time safe-trpo on {NATIVE_PENDULUM} (a second line, not "
                             "the headline: SB3 keeps Gymnasium's env)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Constructing the first Adam imports torch._dynamo (seconds, once per process). SB3 pays
    # that while building its model, before its timer; pay it here before ours too.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    names = ["safe-trpo", "sb3-contrib"] + ([NATIVE_LABEL] if args.native else [])
    per_seed: dict[int, dict[str, Timed]] = {}
    for seed in args.seeds:
        runs: dict[str, list[Timed]] = {name: [] for name in names}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                runs["safe-trpo"].append(ours(args.steps, seed, Path(tmp)))
            runs["sb3-contrib"].append(sb3(args.steps, seed))
            if args.native:
                with tempfile.TemporaryDirectory() as tmp:
                    runs[NATIVE_LABEL].append(ours(args.steps, seed, Path(tmp), NATIVE_PENDULUM))
        per_seed[seed] = {name: Timed(*np.median(np.array(rs), axis=0))
                          for name, rs in runs.items()}
    print(f"Pendulum-v1, {args.steps} env steps, 1 torch thread, median of {args.repeats} "
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


if __name__ == "__main__":
    main()
