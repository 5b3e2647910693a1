"""Grid search for the shipped PID gains: ``python -m safe_trpo.run.pid_tuning cstr|pressure``.

Lives in the run layer, not beside the controllers in ``envs/pid.py``, because it scores gains
with the project's evaluation loop (:func:`safe_trpo.run.controllers.evaluate_controller`) and
environments import nothing from ``safe_trpo`` but its errors.
"""

from __future__ import annotations

import itertools
import sys

import gymnasium as gym

from envs.pid import PIDGains, cstr_pid, pressure_pid
from safe_trpo.run.controllers import evaluate_controller

PLANTS = {
    # name: (env id, PID factory, default dt, episode budgets the tuning respects)
    "cstr": ("SafeTRPO/CSTR-v0", cstr_pid, 0.5, {"temperature": 5.0, "runaway": 0.25}),
    "pressure": ("SafeTRPO/PressureVessel-v0", pressure_pid, 0.25,
                 {"pressure": 0.01, "relief": 0.25}),
}


def tune(plant: str, grid: dict[str, list[float]], episodes: int = 64, seed: int = 10_000,
         num_envs: int = 64) -> list[tuple[PIDGains, dict]]:
    """Evaluate every (kp, ti, td) of ``grid`` on ``plant``; return (gains, result) sorted best
    first: gains within the cost budgets by tracking error, then the rest by total excess."""
    env_id, factory, dt, budgets = PLANTS[plant]
    import envs  # noqa: F401  (registers the ids)

    env = gym.make_vec(env_id, num_envs=num_envs, **ENV_KWARGS.get(plant, {}))
    scored = []
    for kp, ti, td in itertools.product(grid["kp"], grid["ti"], grid["td"]):
        gains = PIDGains(kp=kp, ti_minutes=ti, td_minutes=td)
        result = evaluate_controller(env, factory(gains, dt), episodes, seed, budgets)
        excess = sum(max(result["costs"][c]["ep_cost_mean"] - b, 0.0) / b
                     for c, b in budgets.items())
        scored.append(((excess > 0, excess if excess > 0 else result["tracking_error_mean"]),
                       gains, result))
    env.close()
    scored.sort(key=lambda item: item[0])
    return [(gains, result) for _, gains, result in scored]


ENV_KWARGS = {"pressure": {"polytropic_exponent": 1.4}}
"""Env kwargs of the tuning episodes beyond the defaults: the shipped pressure scenario's
adiabatic vessel (on the isothermal default no PID vents at all, so the relief budget would not
shape the gains)."""

GRIDS = {
    "cstr": {"kp": [0.5, 1.0, 2.0, 4.0, 8.0], "ti": [1.0, 2.0, 4.0, 8.0, 16.0],
             "td": [0.0, 0.5, 1.0, 2.0]},
    "pressure": {"kp": [0.2, 0.3, 0.5, 0.7, 1.0], "ti": [1.0, 2.0, 4.0, 8.0],
                 "td": [0.0, 0.1, 0.2, 0.4]},
}


if __name__ == "__main__":  # python -m safe_trpo.run.pid_tuning cstr|pressure
    if len(sys.argv) != 2 or sys.argv[1] not in PLANTS:
        sys.exit("usage: python -m safe_trpo.run.pid_tuning cstr|pressure")
    for gains, result in tune(sys.argv[1], GRIDS[sys.argv[1]])[:5]:
        costs = {k: round(v["ep_cost_mean"], 3) for k, v in result["costs"].items()}
        print(f"{gains}  tracking {result['tracking_error_mean']:.4f}  costs {costs}")
