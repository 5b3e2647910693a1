"""Tier 2: constrained training respects a limit that unconstrained training breaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from safe_trpo.algo.constrained import lagrangian_advantages, update_multipliers
from safe_trpo.config import load_scenario
from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.run.trainer import start_run

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "speed_limit_cpo.toml"
LIMIT = 10.0


def run(tmp_path: Path, algo: str, total_steps: int = 64_000) -> list[dict]:
    scenario = load_scenario(SCENARIO, [f"algo.name={algo!r}", f"algo.total_steps={total_steps}",
                                        f"run.out_dir={str(tmp_path / algo)!r}"])
    outcome = start_run(scenario, progress=False)
    assert outcome.status == "completed" and verify_run(outcome.run_dir).ok
    return [ln for ln in read_lines(outcome.run_dir) if ln["type"] == "update"]


def final_cost(rows: list[dict], last: int = 4) -> float:
    return float(np.mean([r["constraints"][0]["ep_cost"] for r in rows[-last:]]))


@pytest.fixture(scope="module")
def trpo_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return run(tmp_path_factory.mktemp("trpo"), "trpo")


def test_unconstrained_trpo_breaks_the_limit(trpo_rows: list[dict]) -> None:
    assert final_cost(trpo_rows) > 3 * LIMIT
    assert all(r["constraints"][0]["nu"] is None for r in trpo_rows)


def test_cpo_ends_under_the_limit_while_still_learning(tmp_path: Path,
                                                      trpo_rows: list[dict]) -> None:
    rows = run(tmp_path, "cpo")
    # The batch estimate of the episode cost is noisy around the limit CPO steers to; averaged
    # over the last four batches (160 episodes) it must sit under the limit (5% tolerance).
    assert final_cost(rows) <= 1.05 * LIMIT, [r["constraints"][0]["ep_cost"] for r in rows]
    assert rows[-1]["return_mean"] > rows[0]["return_mean"] + 20  # it learned to move
    cases = {r["cpo"]["case"] for r in rows}
    assert "feasible" in cases and "failed" not in cases
    for r in rows:
        assert set(r["cpo"]) >= {"case", "lambda", "nu", "solver_status", "solve_time_ms"}
        c = r["constraints"][0]
        assert c["violated"] == (c["ep_cost"] > c["limit"])
        assert c["margin"] == pytest.approx(c["limit"] - c["ep_cost"])
        if r["accepted"]:
            assert 0 < r["kl"] <= r["target_kl"]


def test_trpo_lagrangian_multiplier_rises_while_violated(tmp_path: Path) -> None:
    rows = run(tmp_path, "trpo-lag", total_steps=40_000)
    nus = [r["constraints"][0]["nu"] for r in rows]
    costs = [r["constraints"][0]["ep_cost"] for r in rows]
    for i in range(1, len(rows)):
        expected = max(0.0, nus[i - 1] + 0.05 * (costs[i] - LIMIT))
        assert nus[i] == pytest.approx(expected, abs=1e-9)
    assert max(nus) > 0


def test_multiplier_update_and_penalised_advantage_by_hand() -> None:
    nu = update_multipliers(np.array([0.0, 1.0]), np.array([12.0, 3.0]), np.array([10.0, 5.0]),
                            lr=0.5)
    np.testing.assert_allclose(nu, [1.0, 0.0])
    assert update_multipliers(nu, None, np.array([10.0, 5.0]), 0.5) is nu
    adv = lagrangian_advantages(torch.tensor([1.0, 2.0]), torch.tensor([[1.0, 0.0], [0.0, 4.0]]),
                                np.array([1.0, 0.5]))
    torch.testing.assert_close(adv, torch.tensor([(1 - 1) / 2.5, (2 - 2) / 2.5]))


def test_speed_limit_env_contract() -> None:
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import envs  # noqa: F401

    check_env(gym.make("SafeTRPO/SpeedLimit-v0").unwrapped)
    venv = gym.make_vec("SafeTRPO/SpeedLimit-v0", num_envs=2, episode_steps=10)
    venv.reset(seed=3)
    speeding = 0.0
    for t in range(10):
        _, reward, terminated, truncated, info = venv.step(np.ones((2, 1), np.float32))
        assert not terminated.any() and truncated.all() == (t == 9)
        costs = info["final_info"]["cost_speed"] if truncated.any() else info["cost_speed"]
        speeding += costs[0]
    # Full throttle from v ~ 0: v = 1 - 0.8^k (+ start), above 0.5 from the 4th step on.
    assert speeding == 7.0


def test_per_step_margins_by_hand() -> None:
    from safe_trpo.algo.constrained import per_step_margins

    costs = np.array([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [0.0, 2.0]]])  # (T=2, N=2, m=2)
    # mean per-step cost (0.5, 1.0) minus limit / horizon (10 / 20, 40 / 20)
    np.testing.assert_allclose(per_step_margins(costs, np.array([10.0, 40.0]), 20.0),
                               [0.0, -1.0])


def _cpo_problem(seed: int):
    from gymnasium import spaces

    from safe_trpo.algo.networks import make_policy
    from safe_trpo.algo.trpo import PolicyBatch

    torch.manual_seed(seed)
    policy = make_policy(spaces.Box(-1, 1, shape=(3,)), spaces.Box(-1, 1, shape=(2,)), [8],
                         "tanh", -0.3).double()
    obs = torch.randn(64, 3, dtype=torch.float64)
    with torch.no_grad():
        dist = policy.distribution(obs)
        actions = dist.sample()
        batch = PolicyBatch(policy, obs, actions, policy.log_prob(dist, actions))
    reward_adv = torch.randn(64, dtype=torch.float64)
    cost_adv = torch.randn(1, 64, dtype=torch.float64)
    return policy, batch, reward_adv, cost_adv


@pytest.mark.parametrize("margin", [0.05, -0.001, 0.0])
def test_cpo_line_search_keeps_each_cost_within_its_allowed_change(margin: float) -> None:
    from safe_trpo.algo.constrained import cpo_step
    from safe_trpo.algo.trpo import flat_params, surrogate

    for seed in range(4):
        policy, batch, reward_adv, cost_adv = _cpo_problem(seed)
        before = flat_params(policy).clone()
        with torch.no_grad():
            reward0 = float(surrogate(policy, batch, reward_adv))
            cost0 = float(surrogate(policy, batch, cost_adv[0]))
        update = cpo_step(policy, batch, reward_adv, cost_adv, np.array([margin]), 0.01, 20,
                          0.01, 10, 0.8)
        with torch.no_grad():
            reward1 = float(surrogate(policy, batch, reward_adv))
            cost1 = float(surrogate(policy, batch, cost_adv[0]))
        if not update.search.accepted:
            assert torch.equal(flat_params(policy), before)
            continue
        assert update.search.kl <= 0.01
        # A violated constraint (margin >= 0) may not rise; one with slack may use it.
        assert cost1 - cost0 <= max(-margin, 0.0) + 1e-12
        if update.solution.case != "recovery":
            assert reward1 > reward0
        if margin > 0 and update.solution.case == "recovery":
            assert cost1 < cost0
