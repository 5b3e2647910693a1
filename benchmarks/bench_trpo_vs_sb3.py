"""safe-trpo's TRPO vs sb3-contrib's TRPO on Pendulum-v1, side by side in one process.

Same settings for both: 8 envs, 2048 env steps per update (256 per env), 64x64 tanh policy and
critic, target_kl 0.01, gamma 0.99, GAE lambda 0.95, 10 CG iterations with damping 0.1, a
10-try line search shrinking by 0.8, advantage normalisation, observation normalisation
(VecNormalize for SB3, our running normaliser), initial log-std 0, and the same critic work:
10 epochs of Adam (lr 1e-3) over minibatches of 128 per update. Both use one torch thread.

Prints env-steps per second of each (whole training loop: collection + update), their ratio,
the mean training return of the last updates, and a deterministic 10-episode evaluation.

    pip install -e ".[bench]"
    python benchmarks/bench_trpo_vs_sb3.py --steps 102400 --seed 0
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from safe_trpo.audit import read_lines
from safe_trpo.config import load_scenario
from safe_trpo.evaluate import run_episodes
from safe_trpo.make_env import make_vector_env
from safe_trpo.policy_io import load_policy
from safe_trpo.trainer import start_run

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "pendulum_trpo.toml"


def ours(steps: int, seed: int, out: Path) -> tuple[float, float, float]:
    scenario = load_scenario(SCENARIO, [f"algo.total_steps={steps}", f"run.seed={seed}",
                                        f"run.out_dir={str(out)!r}", "algo.init_log_std=0.0",
                                        "run.checkpoint_every=1000"])
    start = time.perf_counter()
    outcome = start_run(scenario, progress=False)
    wall = time.perf_counter() - start
    rows = [ln for ln in read_lines(outcome.run_dir) if ln["type"] == "update"]
    train_return = float(np.mean([r["return_mean"] for r in rows[-5:]]))
    policy = load_policy(outcome.run_dir)
    envs = make_vector_env(scenario.env)
    evaluation = run_episodes(envs, policy, 10, seed + 10_000, []).returns.mean()
    return outcome.env_steps / wall, train_return, float(evaluation)


def sb3(steps: int, seed: int) -> tuple[float, float, float]:
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
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
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
    return model.num_timesteps / wall, train_return, float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=102_400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Constructing the first Adam imports torch._dynamo (seconds, once per process). SB3 pays
    # that while building its model, before its timer; pay it here before ours too.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    with tempfile.TemporaryDirectory() as tmp:
        our_sps, our_train, our_eval = ours(args.steps, args.seed, Path(tmp))
    sb3_sps, sb3_train, sb3_eval = sb3(args.steps, args.seed)
    print(f"Pendulum-v1, {args.steps} env steps, seed {args.seed}, 1 torch thread")
    print(f"{'':14}{'steps/s':>10}{'train return':>15}{'eval return':>14}")
    print(f"{'safe-trpo':14}{our_sps:>10.0f}{our_train:>15.1f}{our_eval:>14.1f}")
    print(f"{'sb3-contrib':14}{sb3_sps:>10.0f}{sb3_train:>15.1f}{sb3_eval:>14.1f}")
    print(f"throughput ratio safe-trpo / sb3-contrib: {our_sps / sb3_sps:.2f}x")


if __name__ == "__main__":
    main()
