"""``safe-trpo compare RUN --controllers pid,mpc``: a run's trained policy against the process
baselines on the same fresh episodes, with the figures a process engineer reads.

Every controller runs on its own fresh vector env built from the run's scenario with the same
number of copies and reset with the same seed, so each sees the same episodes: the same
setpoint schedules, disturbances, parameter draws and sensor noise (the plants draw all of an
episode's randomness at reset, from the copy's own generator, independently of the actions).

Per controller, over the episodes (each with a 95 % interval over episodes: Student's t for
means, Wilson for fractions, and the worst episode beside each mean):
- ``return``: undiscounted episode return (the scenario's reward, move penalty included);
- ``iae``: integral of |tracked variable - setpoint| dt (mol/L min or bar min);
- ``valve_travel``: total valve stroke moved per episode (full strokes);
- ``settling_minutes``: after each setpoint change, the time until the tracked variable enters
  and stays within a band of the new setpoint until the next change: ``SETTLE_FRACTION`` of
  the step size, but no narrower than the plant's ``settle_floor`` (its sensor noise std:
  a band inside the noise cannot be judged from the measurement); a change it never settles
  from counts the whole segment and is counted unsettled;
- per constraint: mean and max episode cost, fraction of episodes over the limit.
The MPC's wall time per solve (one copy, one step) is reported as median / 95th percentile /
max, with the solves IPOPT did not finish. One episode (the first of copy 0) is kept as
trajectories for the report's and the review app's plot.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from safe_trpo.errors import UserError
from safe_trpo.record.audit import AuditLog
from safe_trpo.run.evaluate import Controller
from safe_trpo.run.make_env import make_vector_env

SETTLE_FRACTION = 0.1
"""Settling band: this fraction of the setpoint step's size around the new setpoint."""

PLANTS = {
    "SafeTRPO/CSTR-v0": {"tracked": "ca", "setpoint": "ca_setpoint", "unit": "mol/L",
                         "safety": "temperature", "safety_unit": "K", "settle_floor": 0.005,
                         "limits": {"safe band": "safe_temp_K", "runaway": "runaway_temp_K"}},
    "SafeTRPO/PressureVessel-v0": {
        "tracked": "pressure", "setpoint": "pressure_setpoint", "unit": "bar a",
        "safety": "pressure", "safety_unit": "bar a", "settle_floor": 0.02,
        "limits": {"relief set": "relief_set_bar", "MAWP": "mawp_bar"}},
}
"""Per plant: info keys of the tracked variable, its setpoint and the safety variable, and the
env-config fields of the limits drawn on the plot."""
KNOWN = ("pid", "pid-ff", "mpc", "hold")


def baseline(name: str, env_id: str, config: Any) -> Controller:
    """A baseline controller by name for the plant ``env_id`` with env ``config``."""
    from envs import cstr_env, pressure_env
    from envs.mpc import cstr_mpc, pressure_mpc
    from envs.pid import cstr_pid, hold_valve, pressure_pid

    cstr = env_id == "SafeTRPO/CSTR-v0"
    if name == "pid":
        return (cstr_pid(dt_minutes=config.dt_minutes) if cstr
                else pressure_pid(dt_minutes=config.dt_minutes))
    if name == "pid-ff" and not cstr:
        return pressure_pid(dt_minutes=config.dt_minutes, feedforward=True)
    if name == "mpc":
        return cstr_mpc(config) if cstr else pressure_mpc(config)
    if name == "hold":
        return hold_valve(cstr_env if cstr else pressure_env)
    raise UserError(f"--controllers: {name!r} is not a baseline for {env_id} (known: "
                    f"{', '.join(k for k in KNOWN if cstr is False or k != 'pid-ff')})")


def parse_controllers(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in KNOWN]
    if not names or unknown:
        raise UserError(f"--controllers: expected a comma-separated list of {', '.join(KNOWN)}"
                        f", got {text!r}")
    return list(dict.fromkeys(names))


def record_episodes(envs, controller: Controller, episodes: int, seed: int,
                    keys: list[str]) -> list[dict[str, np.ndarray]]:
    """Exactly ``episodes`` whole episodes (each copy its share, in order), each a dict of the
    per-step arrays of ``keys`` (info keys) plus ``reward``; ordered by copy, then episode."""
    n = envs.num_envs
    quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
    done_count = np.zeros(n, dtype=np.int64)
    obs, _ = envs.reset(seed=seed)
    controller.reset()
    current: list[dict[str, list]] = [{k: [] for k in [*keys, "reward"]} for _ in range(n)]
    finished: list[list[dict[str, np.ndarray]]] = [[] for _ in range(n)]
    while np.any(done_count < quota):
        obs, reward, terminated, truncated, info = envs.step(controller.act(np.asarray(obs)))
        done = np.logical_or(terminated, truncated)
        missing = [k for k in keys if k not in info]
        if missing:
            raise UserError(f"compare: the environment reports no {missing} in its info")
        for i in np.flatnonzero(done_count < quota):
            for k in keys:
                current[i][k].append(float(np.asarray(info[k])[i]))
            current[i]["reward"].append(float(reward[i]))
            if done[i]:
                finished[i].append({k: np.array(v) for k, v in current[i].items()})
                current[i] = {k: [] for k in current[i]}
                done_count[i] += 1
        if done.any():
            controller.reset(done)
    return [ep for copy in finished for ep in copy]


def settling_times(pv: np.ndarray, sp: np.ndarray, dt: float, floor: float = 0.0
                   ) -> tuple[list[float], int]:
    """(settling time in minutes after each setpoint change, number never settled); the band
    is ``SETTLE_FRACTION`` of the step, at least ``floor``."""
    changes = np.flatnonzero(np.diff(sp) != 0) + 1
    times, unsettled = [], 0
    for j, start in enumerate(changes):
        end = changes[j + 1] if j + 1 < len(changes) else len(sp)
        band = max(SETTLE_FRACTION * abs(sp[start] - sp[start - 1]), floor)
        outside = np.flatnonzero(np.abs(pv[start:end] - sp[start:end]) > band)
        if len(outside) == 0:
            times.append(0.0)
        elif outside[-1] == end - start - 1:  # still outside at the segment's end
            times.append((end - start) * dt)
            unsettled += 1
        else:
            times.append((outside[-1] + 1) * dt)
    return times, unsettled


def interval(values: np.ndarray) -> dict[str, float]:
    """Mean, 95 % t-interval over episodes, worst (min for returns is the caller's reading)."""
    values = np.asarray(values, float)
    mean = float(values.mean())
    half = (float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(
        len(values))) if len(values) > 1 else float("nan"))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "min": float(values.min()),
            "max": float(values.max())}


def wilson(k: int, n: int) -> dict[str, float]:
    """Fraction k/n with its 95 % Wilson interval."""
    z, p = 1.959963984540054, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"frac": p, "lo": max(0.0, centre - half), "hi": min(1.0, centre + half)}


def summarise(eps: list[dict[str, np.ndarray]], plant: dict, limits: dict[str, float],
              dt: float) -> dict[str, Any]:
    """The comparison figures of one controller's episodes."""
    pv, sp = plant["tracked"], plant["setpoint"]
    settle, unsettled = [], 0
    for ep in eps:
        t, u = settling_times(ep[pv], ep[sp], dt, plant.get("settle_floor", 0.0))
        settle += t
        unsettled += u
    out: dict[str, Any] = {
        "episodes": len(eps),
        "return": interval([ep["reward"].sum() for ep in eps]),
        "iae": interval([np.abs(ep[pv] - ep[sp]).sum() * dt for ep in eps]),
        "valve_travel": interval([ep["valve_travel"].sum() for ep in eps]),
        "settling_minutes": interval(settle) if settle else None,
        "setpoint_steps": len(settle), "unsettled_steps": unsettled, "constraints": []}
    for name, limit in limits.items():
        sums = np.array([ep[f"cost_{name}"].sum() for ep in eps])
        over = int((sums > limit).sum())
        out["constraints"].append({"name": name, "limit": limit, "ep_cost": interval(sums),
                                   "episodes_over": over, "over": wilson(over, len(eps))})
    return out


def compare_run(run_dir: Path, controllers: list[str], episodes: int = 20,
                seed: int | None = None) -> dict[str, Any]:
    """Compare the run's policy with ``controllers`` on the same ``episodes`` fresh episodes
    from ``seed`` (default: the scenario's evaluation seed) and append a ``comparison`` line."""
    from safe_trpo.run.policy_io import load_policy

    policy = load_policy(run_dir)
    scenario = policy.scenario
    env_id = scenario.env.id
    if env_id not in PLANTS:
        raise UserError(f"compare: {run_dir}: baselines exist only for {', '.join(PLANTS)}, "
                        f"not {env_id}")
    plant = PLANTS[env_id]
    seed = scenario.eval.seed if seed is None else seed
    limits = {c.name: c.limit for c in scenario.constraints}
    keys = sorted({plant["tracked"], plant["setpoint"], plant["safety"], "valve_opening",
                   "valve_travel", *(f"cost_{n}" for n in limits)})
    num = min(episodes, scenario.env.num_envs)
    results, example, config = {}, {}, None
    for name in ["policy", *controllers]:
        envs = make_vector_env(scenario.env, num_envs=num)
        try:
            config = envs.unwrapped.config
            controller = policy if name == "policy" else baseline(name, env_id, config)
            tic = time.perf_counter()
            eps = record_episodes(envs, controller, episodes, seed, keys)
            wall = time.perf_counter() - tic
        finally:
            envs.close()
        results[name] = summarise(eps, plant, limits, config.dt_minutes)
        results[name]["wall_seconds"] = wall
        if hasattr(controller, "solve_seconds"):
            ms = 1e3 * np.array(controller.solve_seconds)
            results[name]["solve_ms"] = {"median": float(np.median(ms)),
                                         "p95": float(np.percentile(ms, 95)),
                                         "max": float(ms.max()), "solves": len(ms),
                                         "failures": int(controller.failures)}
        first = eps[0]
        example[name] = {k: first[k].tolist() for k in (plant["tracked"], plant["setpoint"],
                                                        plant["safety"], "valve_opening")}
    record = {
        "env_id": env_id, "seed": seed, "episodes": episodes, "policy_update": policy.update,
        "checkpoint": policy.checkpoint.relative_to(policy.run_dir).as_posix(),
        "dt_minutes": config.dt_minutes, "plant": {k: v for k, v in plant.items()
                                                   if k != "limits"},
        "limits_drawn": {label: float(getattr(config, field))
                         for label, field in plant["limits"].items()},
        "settle_fraction": SETTLE_FRACTION, "order": list(results), "controllers": results,
        "example": example}  # "order": the audit line's keys are stored sorted
    with AuditLog(policy.run_dir) as audit:
        audit.append("comparison", **record)
    return record


def format_table(record: dict[str, Any]) -> str:
    """The comparison as a plain-text table (the CLI's output)."""
    unit = record["plant"]["unit"]
    head = (f"{'controller':<10} {'return (95% CI; worst)':<30} {'IAE ' + unit + ' min':<24} "
            f"{'valve travel':<22} {'settling min':<16} constraints: mean/max cost, over limit")
    lines = [f"{record['episodes']} episodes, seed {record['seed']} ({record['env_id']})", head]

    def ci(m: dict, worst: str, fmt: str = ".3g") -> str:
        return f"{m['mean']:{fmt}} [{m['lo']:{fmt}}, {m['hi']:{fmt}}]; {m[worst]:{fmt}}"

    for name, r in record["controllers"].items():
        settle = r["settling_minutes"]
        cons = "  ".join(f"{c['name']} {c['ep_cost']['mean']:.3g}/{c['ep_cost']['max']:.3g}, "
                         f"{c['episodes_over']}/{r['episodes']}" for c in r["constraints"])
        settled = (f"{settle['mean']:.2f} ({r['unsettled_steps']} unsettled)" if settle
                   else "-")
        lines.append(f"{name:<10} {ci(r['return'], 'min'):<30} {ci(r['iae'], 'max'):<24} "
                     f"{ci(r['valve_travel'], 'max'):<22} {settled:<16} {cons}")
        if "solve_ms" in r:
            s = r["solve_ms"]
            lines.append(f"{'':<10} solve time per step and copy: median {s['median']:.1f} ms, "
                         f"p95 {s['p95']:.1f} ms, max {s['max']:.1f} ms over {s['solves']} "
                         f"solves, {s['failures']} not converged")
    return "\n".join(lines)
