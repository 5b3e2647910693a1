"""The native Pendulum vector env against Gymnasium's Pendulum, step by step."""

from __future__ import annotations

import numpy as np
import pytest


def test_native_pendulum_vector_env_follows_gymnasium_pendulum_step_by_step() -> None:
    import gymnasium as gym

    from envs.pendulum_vec import PendulumVectorEnv

    n, seed = 3, 5
    native = PendulumVectorEnv(num_envs=n)
    singles = [gym.make("Pendulum-v1") for _ in range(n)]
    obs, _ = native.reset(seed=seed)
    expected = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(singles)])
    np.testing.assert_allclose(obs, expected, rtol=0, atol=1e-6)
    rng = np.random.default_rng(0)
    resets = 0
    for _ in range(450):  # through two autoresets (time limit 200)
        actions = rng.uniform(-3, 3, size=(n, 1)).astype(np.float32)  # some beyond +-2
        obs, reward, terminated, truncated, info = native.step(actions)
        for i, env in enumerate(singles):
            o, r, term, trunc, _ = env.step(actions[i])
            assert (term, trunc) == (terminated[i], truncated[i])
            assert reward[i] == pytest.approx(r, rel=1e-6, abs=1e-6)
            if trunc:  # SAME_STEP autoreset: last observation in final_obs, then a new episode
                np.testing.assert_allclose(info["final_obs"][i], o, rtol=0, atol=1e-6)
                o, _ = env.reset()
                resets += 1
            np.testing.assert_allclose(obs[i], o, rtol=0, atol=1e-6)
    assert resets == 2 * n
    native.close()
