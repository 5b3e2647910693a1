"""The units of a cost do not change what CPO does: a cost x k with its limit x k gives the same
policy step (to solver and float32 tolerance), and a cost critic whose output is x k."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from safe_trpo.algo.constrained import cpo_step
from safe_trpo.algo.learn import learn
from safe_trpo.algo.rollout import RolloutCollector
from safe_trpo.algo.trpo import flat_params
from safe_trpo.config import load_scenario
from safe_trpo.run.checkpoint import new_state
from safe_trpo.run.make_env import make_vector_env
from tests.algo.test_cpo_line_search import DAMPING, DELTA, _conflict, _reach

ROOT = Path(__file__).resolve().parents[2]
SCALES = [1e-6, 1e-3, 1e3]


@pytest.mark.parametrize("relative_margin", [0.4, -0.3, 2.0])  # fixable, active, recovery
def test_cpo_step_is_the_same_in_any_cost_units(relative_margin: float) -> None:
    policy, batch, reward_adv = _conflict(5)
    gen = torch.Generator().manual_seed(9)
    cost_adv = 0.5 * reward_adv + torch.randn(reward_adv.shape, dtype=torch.float64,
                                              generator=gen)
    cost_adv = cost_adv - cost_adv.mean()
    margin = relative_margin * _reach(policy, batch, cost_adv)
    start = flat_params(policy).clone()

    def step(k: float):
        twin = copy.deepcopy(policy)
        update = cpo_step(twin, batch, reward_adv, k * cost_adv[None], np.array([k * margin]),
                          DELTA, 20, DAMPING, 10, 0.8)
        assert update.solution.case != "failed" and not update.solution.unfixable, k
        return update, flat_params(twin) - start

    ref, ref_step = step(1.0)
    for scale in SCALES:
        scaled, scaled_step = step(scale)
        assert scaled.solution.case == ref.solution.case
        assert scaled.search.accepted == ref.search.accepted
        assert scaled.search.backtracks == ref.search.backtracks
        torch.testing.assert_close(scaled_step, ref_step, rtol=1e-6,
                                   atol=1e-9 * float(ref_step.norm()))
        # The multiplier of a cost in units k is 1/k of the unscaled one (nu b is unit-free).
        np.testing.assert_allclose(scaled.solution.nu * scale, ref.solution.nu, rtol=1e-6,
                                   atol=1e-12)


@pytest.mark.parametrize("scale", SCALES)
def test_two_cpo_updates_learn_the_same_in_any_cost_units(scale: float) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "speed_limit_cpo.toml", [
        "algo.steps_per_update=800", "algo.hidden_sizes=[16]", "algo.critic_epochs=2",
        "env.kwargs.episode_steps=50", "constraints.speed.limit=5.0"])
    scaled_scenario = load_scenario(ROOT / "scenarios" / "speed_limit_cpo.toml", [
        "algo.steps_per_update=800", "algo.hidden_sizes=[16]", "algo.critic_epochs=2",
        "env.kwargs.episode_steps=50", f"constraints.speed.limit={5.0 * scale!r}"])
    torch.manual_seed(0)
    envs = make_vector_env(scenario.env)
    try:
        state = new_state(scenario, envs.single_observation_space, envs.single_action_space)
        twin = copy.deepcopy(state)
        collector = RolloutCollector(envs, ["cost_speed"], seed=0)
        for update in range(2):
            r = collector.collect(state.policy, state.normalizer, 100,
                                  update_stats_per_step=update == 0)
            twin.normalizer.load_state_dict(state.normalizer.state_dict())
            scaled = r._replace(costs=r.costs * scale, episode_costs=r.episode_costs * scale)
            rng_state = torch.get_rng_state()
            row = learn(scenario, state, r)
            torch.set_rng_state(rng_state)
            row_scaled = learn(scaled_scenario, twin, scaled)
            assert row_scaled["cpo"]["case"] == row["cpo"]["case"]
            assert row_scaled["accepted"] == row["accepted"]
            assert row_scaled["cpo"]["unfixable"] == []
            torch.testing.assert_close(flat_params(twin.policy), flat_params(state.policy),
                                       rtol=2e-4, atol=2e-5)
            c, c_scaled = row["constraints"][0], row_scaled["constraints"][0]
            assert c_scaled["margin_episode_units"] == pytest.approx(
                scale * c["margin_episode_units"], rel=1e-9)
            assert row_scaled["cost_value_losses"][0] == pytest.approx(
                scale**2 * row["cost_value_losses"][0], rel=1e-3)
        obs = torch.from_numpy(r.obs.reshape(-1, r.obs.shape[-1]))
        with torch.no_grad():
            torch.testing.assert_close(twin.critics[1](obs), scale * state.critics[1](obs),
                                       rtol=1e-3, atol=1e-3 * scale)
    finally:
        envs.close()
