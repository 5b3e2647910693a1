"""Process envs: batched env-steps per second at 1, 64 and 4096 copies, next to pcgym's CSTR
stepping the same model, and the runaway accuracy behind the speed.

    python benchmarks/bench_process_envs.py            # full table (~2-4 minutes)
    python benchmarks/bench_process_envs.py --quick    # fewer steps, no 4096-copy peer run

One core: the BLAS/OpenMP/XLA thread counts are set to 1 before numpy (and jax) load, and
every figure is process CPU time (all threads of this process): wall time on an idle core, and
less disturbed than wall time by other jobs on a shared machine (though still somewhat lower
than on an idle one). Workloads, per plant and copy count:
- "random": uniform random valve commands (the stiff worst case: in the CSTR about 17 % of the
  copies are running away and ~1 % ignite in any given step, each ignition needing ~35 steps of
  the adaptive integrator; compiled with numba, each copy takes its own steps, so those cost
  microseconds, not a numpy call each);
- "PID": the tuned PID baseline closing the loop (normal operation; its act() is not timed).
Peer: pcgym 0.1.8 (pip install pcgym; a benchmark-only dependency) CSTR with the same
parameters and the same 0.5-min step, one env per copy (pcgym has no batched stepping), with
its default CasADi/CVODES integrator and with its JAX/diffrax option (not at 4096 copies: it
compiles every env, ~0.35 s each). pcgym's figures are over 100, 5 and 1 steps per copy, all
within its first episode (it does not reset itself; our figures include our autoresets).
pcgym's action sets the coolant temperature directly (uniform in 290-310 K, no actuator).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import envs  # noqa: E402,F401  (registers the ids)
from envs import cstr  # noqa: E402
from envs.pid import cstr_pid, pressure_pid  # noqa: E402

DT = 0.5  # CSTR control interval, min (the env's default)


def native_rate(env_id: str, copies: int, steps: int, workload: str) -> float:
    """Env-steps per CPU-second of the native vector env, best of two passes (the first also
    pays numba's one-time compile of the integrator when its on-disk cache is cold)."""
    venv = gym.make_vec(env_id, num_envs=copies)
    rng = np.random.default_rng(0)
    pid = (cstr_pid if "CSTR" in env_id else pressure_pid)()
    best = np.inf
    for _ in range(2):
        obs, _ = venv.reset(seed=0)
        pid.reset()
        spent = 0.0
        for _ in range(steps):
            action = (rng.uniform(-1, 1, (copies, 1)).astype(np.float32) if workload == "random"
                      else pid.act(obs))
            start = time.process_time()
            obs, *_ = venv.step(action)
            spent += time.process_time() - start
        best = min(best, spent)
    return copies * steps / best


def pcgym_params(method: str, x0=(0.8773, 324.5), coolant=(290.0, 310.0)) -> dict:
    n = 120
    return {"N": n, "tsim": n * DT, "SP": {"Ca": [0.85] * n}, "model": "cstr",
            "o_space": {"low": np.array([0.0, 250.0, 0.0]), "high": np.array([1.2, 600.0, 1.2])},
            "a_space": {"low": np.array([coolant[0]]), "high": np.array([coolant[1]])},
            "x0": np.array([*x0, 0.85]), "normalise_o": False, "normalise_a": True,
            "integration_method": method}


def pcgym_rate(copies: int, steps: int, method: str) -> float:
    """pcgym env-steps per CPU-second: ``copies`` envs stepped one after another."""
    from pcgym import make_env

    envs_ = [make_env(pcgym_params(method)) for _ in range(copies)]
    for env in envs_:
        env.reset()
        env.step(np.array([0.0]))  # JIT compile / build outside the timing
    # Within one episode: pcgym does not reset itself, and with jax a reset recompiles.
    assert steps < envs_[0].N - 1
    rng = np.random.default_rng(0)
    start = time.process_time()
    for _ in range(steps):
        for env in envs_:
            env.step(rng.uniform(-1, 1, 1))
    return copies * steps / (time.process_time() - start)


def radau_temperature(state, coolant: float, dt: float, params: cstr.Params | None = None
                      ) -> float:
    params = params or cstr.Params()
    sol = solve_ivp(lambda t, y: cstr.derivatives(y[None], coolant, params)[0], (0.0, dt),
                    np.asarray(state, float), method="Radau", rtol=1e-10, atol=1e-12,
                    jac=lambda t, y: cstr.jacobian(y[None], coolant, params)[0])
    return float(sol.y[1, -1])


def runaway_case(with_peer: bool) -> list[tuple[str, float, float]]:
    """(method, T after the step, error vs Radau) from Ca=0.5, T=360 K, Tc=310 K, 26/60 min."""
    dt, start, tc = 26.0 / 60.0, np.array([0.5, 360.0]), 310.0
    ref = radau_temperature(start, tc, dt)
    ours = cstr.step(start[None], tc, dt)[0, 1]

    def f(y):
        return cstr.derivatives(y[None], tc)[0]
    k1 = f(start)
    k2 = f(start + dt / 2 * k1)
    k3 = f(start + dt / 2 * k2)
    k4 = f(start + dt * k3)
    rk4 = (start + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4))[1]
    rows = [("scipy Radau rtol 1e-10 (reference)", ref, 0.0),
            ("safe-trpo envs.cstr.step (RODAS4)", ours, ours - ref),
            ("fixed-step RK4, one step", rk4, rk4 - ref)]
    if with_peer:
        from pcgym import make_env
        for method in ("casadi", "jax"):
            params = pcgym_params(method, x0=(0.5, 360.0))
            params.update(N=60, tsim=26.0, SP={"Ca": [0.85] * 60})
            env = make_env(params)
            env.reset()
            temp = float(env.step(np.array([1.0]))[0][1])  # action +1 -> Tc = 310 K
            rows.append((f"pcgym cstr ({method})", temp, temp - ref))
    return rows


def sampled_runaway_errors(samples: int = 60) -> tuple[int, float, float]:
    """Steps of a 4096-copy random-action run that involve runaway (T > 350 K and moving > 2 K),
    re-integrated with Radau: (count, max |dT| where the step is well conditioned, max |dT|)."""
    record = []
    original = cstr.advance

    def spy(ca, temp, tc, dt, params, *args):
        out = original(ca, temp, tc, dt, params, *args)
        record.append((ca.copy(), temp.copy(), np.broadcast_to(tc, ca.shape).copy(),
                       params.UA.copy(), params.k0.copy(), np.broadcast_to(params.Ti, ca.shape),
                       np.broadcast_to(params.Caf, ca.shape), out[1].copy()))
        return out

    cstr.advance = spy
    try:
        venv = gym.make_vec("SafeTRPO/CSTR-v0", num_envs=4096)
        venv.reset(seed=1)
        rng = np.random.default_rng(1)
        for _ in range(20):
            venv.step(rng.uniform(-1, 1, (4096, 1)))
    finally:
        cstr.advance = original
    ca, temp, tc, ua, k0, ti, caf, out = (np.concatenate([r[i] for r in record]) for i in range(8))
    hot = np.flatnonzero((np.maximum(temp, out) > 350.0) & (np.abs(out - temp) > 2.0))
    pick = np.random.default_rng(0).choice(hot, size=min(samples, hot.size), replace=False)
    errors, conditioned = [], []
    for i in pick:
        p = cstr.Params(UA=ua[i], k0=k0[i], Ti=ti[i], Caf=caf[i])
        ref = radau_temperature([ca[i], temp[i]], tc[i], DT, p)
        nudged = radau_temperature([ca[i], temp[i] + 1e-4], tc[i], DT, p)
        errors.append(abs(out[i] - ref))
        conditioned.append(abs(nudged - ref) / 1e-4 < 10.0)  # not on the ignition boundary
    errors, conditioned = np.array(errors), np.array(conditioned)
    return len(pick), float(errors[conditioned].max()), float(errors.max())


def _cell(value: float, fmt: str) -> str:
    return f"{'not run':>12}" if np.isnan(value) else fmt.format(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, no 4096-copy peer")
    parser.add_argument("--no-peer", action="store_true", help="skip pcgym")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with_peer = not args.no_peer
    if with_peer:
        try:
            import pcgym  # noqa: F401
        except ImportError:
            print("pcgym is not installed (pip install pcgym): peer rows skipped\n")
            with_peer = False
    steps = {1: 600, 64: 240, 4096: 120} if args.quick else {1: 2400, 64: 480, 4096: 240}

    print("env-steps per CPU-second (one core)")
    print(f"{'plant':<10} {'engine':<28} {'workload':<8} " + " ".join(
        f"{c:>12,}" for c in steps) + "   copies")
    ours = {}
    for env_id, plant in (("SafeTRPO/CSTR-v0", "CSTR"), ("SafeTRPO/PressureVessel-v0",
                                                         "pressure")):
        for workload in ("random", "PID"):
            rates = [native_rate(env_id, c, s, workload) for c, s in steps.items()]
            ours[(plant, workload)] = rates
            print(f"{plant:<10} {'safe-trpo native vector':<28} {workload:<8} "
                  + " ".join(f"{r:>12,.0f}" for r in rates))
    if with_peer:
        peer_steps = {1: 100, 64: 5, 4096: 1}
        # jax compiles each env (~0.35 s apiece): 4096 of them would take ~25 minutes
        peer_copies = {"casadi": [1, 64] if args.quick else [1, 64, 4096],
                       "jax": [1] if args.quick else [1, 64]}
        for method, copies in peer_copies.items():
            rates = [pcgym_rate(c, peer_steps[c], method) for c in copies]
            rates += [float("nan")] * (3 - len(rates))
            print(f"{'CSTR':<10} {'pcgym ' + method + ' (one env/copy)':<28} {'random':<8} "
                  + " ".join(_cell(r, "{:>12,.0f}") for r in rates))
            ratio = np.array(ours[("CSTR", "random")]) / np.array(rates)
            print(f"{'':<10} {'  safe-trpo / pcgym ' + method:<28} {'random':<8} "
                  + " ".join(_cell(r, "{:>11,.1f}x") for r in ratio))

    print("\nrunaway step: Ca=0.5 mol/L, T=360 K, Tc=310 K, 26/60 min")
    for name, temp, err in runaway_case(with_peer):
        print(f"  {name:<38} T = {temp:9.4f} K   error {err:+9.4f} K")
    count, conditioned, worst = sampled_runaway_errors(30 if args.quick else 60)
    print(f"\n{count} runaway steps sampled from a 4096-copy random-action run, vs Radau: "
          f"max |dT| {conditioned:.4f} K where the step is well conditioned "
          f"(a 1e-4 K nudge moves Radau's answer < 1e-3 K), {worst:.4f} K over all")


if __name__ == "__main__":
    main()
