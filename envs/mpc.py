"""Nonlinear MPC baselines for the process envs (CasADi + IPOPT), run like the PID: the
Controller protocol, ``act(obs batch) -> action batch`` and ``reset(mask)``.

Each controller solves, for every env copy and every step, a finite-horizon problem on the
plant's *nominal* model (the per-episode parameter draws, UA/k0 or Kv/volume, are unknown to
it) from the measured state, with the measured disturbances (feed temperature and
concentration; inflow) held over the horizon and the current setpoint held too (future
setpoint changes are not announced to any controller). Decisions are the valve positions at the
end of each step, within the env's rate limit (the stem ramps to them at that rate, which the
model takes as a ramp over the whole step). Objective per step: squared tracking error over
the env's ``tracking_scale``, a squared move term, and a heavily weighted slack on the safety
limit (CSTR: temperature below the safe band less ``temp_backoff_K``; vessel: pressure below
the relief set pressure less ``pressure_backoff_bar``), soft so that a disturbance the valve
cannot reject leaves a feasible problem. Offset-free: a constant additive disturbance per step
w (the filtered difference between each measured state and the nominal model's one-step
prediction from the previous measurement) is added to every predicted step, so a plant whose
UA, k0, Kv or volume differ from nominal is still driven to its setpoint.

Integration inside the NLP: fixed-step RK4 (``substeps`` per control step) of the nominal ODE,
by single shooting; the CSTR's coolant lag is solved exactly for the ramping target (as in the
env). Every solve's wall time is kept in ``solve_seconds`` and every solve IPOPT did not report
as solved (or solved to acceptable level) is counted in ``failures``: the step then applies the
returned iterate if finite, else holds the valve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import casadi as ca
import numpy as np

from envs import cstr, cstr_env, pressure, pressure_env


@dataclass(frozen=True)
class MPCSettings:
    """Horizon and weights shared by both MPCs."""

    horizon: int = 12
    """Control steps predicted (CSTR: 6 min at 0.5 min; vessel: 3 min at 0.25 min)."""
    substeps: int = 4
    """RK4 steps per control step inside the model."""
    move_weight: float = 2.0
    """Weight of (valve move / full stroke)^2 per step, against (error / tracking_scale)^2."""
    slack_weight: float = 1e3
    """Weight of the safety-limit slack (linear and quadratic)."""
    disturbance_filter: float = 0.2
    """Filter factor (0-1) of the output-disturbance estimate per step."""
    temp_backoff_K: float = 2.0
    """CSTR: the predicted temperature is held this far below ``safe_temp_K``."""
    pressure_backoff_bar: float = 0.15
    """Vessel: the predicted pressure is held this far below the relief set pressure."""


_IPOPT = {"ipopt.print_level": 0, "print_time": 0, "ipopt.sb": "yes", "ipopt.max_iter": 100,
          "ipopt.tol": 1e-6, "ipopt.acceptable_tol": 1e-4,
          # trial iterates that ignite the model reactor overflow RK4; IPOPT backtracks from
          # them by design, so the evaluation warnings are noise (failures are still counted)
          "show_eval_warnings": False}


def _rk4(f, x, h: float, n: int, t0: float = 0.0):
    """n RK4 steps of size h/n of dx/dt = f(t, x) from t0: the state at t0 + h."""
    step = h / n
    for i in range(n):
        t = t0 + i * step
        k1 = f(t, x)
        k2 = f(t + step / 2, x + step / 2 * k1)
        k3 = f(t + step / 2, x + step / 2 * k2)
        k4 = f(t + step, x + step * k3)
        x = x + step / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


class _MPC:
    """Shared machinery: one IPOPT problem, solved row by row with warm starts."""

    def __init__(self, settings: MPCSettings, rate_step: float) -> None:
        self.settings, self.rate_step = settings, rate_step
        self.solve_seconds: list[float] = []
        self.failures = 0
        self._warm: np.ndarray | None = None
        self._d = self._pred = self._fresh = None

    def _build(self, p_sym, v_sym, slack, objective, constraints) -> None:
        """``v_sym`` (N) valve positions, ``slack`` (N) >= 0; constraints: the moves."""
        n = self.settings.horizon
        self._solver = ca.nlpsol("mpc", "ipopt", {"x": ca.vertcat(v_sym, slack), "p": p_sym,
                                                  "f": objective, "g": constraints}, _IPOPT)
        self._lbx = np.concatenate([np.zeros(n), np.zeros(n)])
        self._ubx = np.concatenate([np.ones(n), np.full(n, np.inf)])
        self._lbg, self._ubg = -self.rate_step * np.ones(n), self.rate_step * np.ones(n)

    def reset(self, mask: np.ndarray | None = None) -> None:
        if self._fresh is None or mask is None:
            self._fresh = None
        else:
            self._fresh[np.asarray(mask, dtype=bool)] = True

    def _solve(self, row: int, params: np.ndarray, opening: float) -> tuple[float, np.ndarray]:
        n = self.settings.horizon
        start = self._warm[row] if not self._fresh[row] else np.concatenate(
            [np.full(n, opening), np.zeros(n)])
        tic = time.perf_counter()
        sol = self._solver(x0=start, p=params, lbx=self._lbx, ubx=self._ubx, lbg=self._lbg,
                           ubg=self._ubg)
        self.solve_seconds.append(time.perf_counter() - tic)
        status = self._solver.stats()["return_status"]
        z = np.asarray(sol["x"]).ravel()
        if status not in ("Solve_Succeeded", "Solved_To_Acceptable_Level"):
            self.failures += 1
            if not np.all(np.isfinite(z)):
                return opening, start
        # next warm start: the plan shifted by one step
        self._warm[row] = np.concatenate([z[1:n], z[n - 1:n], z[n + 1:], [0.0]])
        return float(np.clip(z[0], 0.0, 1.0)), z

    def _begin(self, n_rows: int, k: int) -> np.ndarray:
        if self._fresh is None or len(self._fresh) != n_rows:
            self._fresh = np.ones(n_rows, dtype=bool)
            self._warm = np.zeros((n_rows, 2 * self.settings.horizon))
            self._d, self._pred = np.zeros((n_rows, k)), np.zeros((n_rows, k))
        return self._fresh

    def _estimate(self, measured: np.ndarray) -> np.ndarray:
        """Update and return the per-step disturbance estimates (rows, k) from the measured
        states (rows, k) (fresh rows start at 0)."""
        a, fresh = self.settings.disturbance_filter, self._fresh[:, None]
        self._d = np.where(fresh, 0.0, (1.0 - a) * self._d + a * (measured - self._pred))
        return self._d


class CSTRMPC(_MPC):
    """MPC of SafeTRPO/CSTR-v0's Ca loop on the nominal reactor (pass the env's config)."""

    def __init__(self, config: cstr_env.CSTRConfig | None = None,
                 settings: MPCSettings | None = None) -> None:
        config = cstr_env.CSTRConfig() if config is None else config
        settings = MPCSettings() if settings is None else settings
        super().__init__(settings, config.valve_rate_per_min * config.dt_minutes)
        c, s, n, dt = config, settings, settings.horizon, config.dt_minutes
        self.config = c
        nominal = cstr.Params()
        p = ca.SX.sym("p", 9)  # Ca, T, Tc, valve, Ti, Caf, setpoint, w_Ca, w_T
        v, slack = ca.SX.sym("v", n), ca.SX.sym("s", n)
        span, tau = c.coolant_max_K - c.coolant_min_K, c.coolant_lag_minutes
        x = ca.vertcat(p[0], p[1])
        tc, prev = p[2], p[3]
        objective, moves, self._predict = 0, [], None
        for k in range(n):
            a, b = c.coolant_max_K - prev * span, -(v[k] - prev) * span / dt  # target ramp
            if tau > 0:
                off = tc - a + b * tau
                e = np.exp(-dt / tau)
                tc_mean = (a * dt + b * (dt * dt / 2 - tau * dt) + off * tau * (1 - e)) / dt
                tc = a + b * (dt - tau) + off * e
            else:
                tc_mean, tc = a + b * dt / 2, a + b * dt
            x = _rk4(lambda _t, y, tcm=tc_mean: ca.vertcat(*self._rhs(y, tcm, p[4], p[5],
                                                                       nominal)),
                     x, dt, s.substeps)
            if k == 0:  # the nominal one-step prediction, without w: for the estimate
                self._predict = ca.Function("predict", [p, v], [x])
            x = x + p[7:9]
            err = (x[0] - p[6]) / c.tracking_scale
            objective += err * err + s.move_weight * (v[k] - prev) ** 2
            objective += s.slack_weight * (slack[k] + slack[k] ** 2)
            moves.append(v[k] - prev)
            moves_t = x[1] - (c.safe_temp_K - s.temp_backoff_K) - slack[k]
            moves.append(moves_t)
            prev = v[k]
        move = ca.vertcat(*moves[0::2])
        temps = ca.vertcat(*moves[1::2])
        self._build(p, v, slack, objective, ca.vertcat(move, temps))
        self._lbg = np.concatenate([self._lbg, np.full(n, -np.inf)])
        self._ubg = np.concatenate([self._ubg, np.zeros(n)])

    @staticmethod
    def _rhs(y, tc, ti, caf, nominal: cstr.Params):
        """The CSTR's right-hand side (``envs.cstr``) in CasADi symbols."""
        ca_, temp = y[0], y[1]
        dil = nominal.q / nominal.V
        # the exponent capped at 450 K: far past runaway, it keeps trial iterates finite
        rate = nominal.k0 * ca.exp(-nominal.E_over_R / ca.fmin(ca.fmax(temp, 250.0), 450.0)) * ca_
        cool = nominal.UA / (nominal.V * nominal.rho * nominal.C)
        return (dil * (caf - ca_) - rate,
                dil * (ti - temp) + (-nominal.dH) / (nominal.rho * nominal.C) * rate
                + cool * (tc - temp))

    def act(self, obs: np.ndarray) -> np.ndarray:
        names = cstr_env.OBS_NAMES
        raw = np.asarray(obs, np.float64) * cstr_env.OBS_SCALE + cstr_env.OBS_CENTER
        col = {k: raw[:, names.index(k)] for k in names}
        self._begin(len(raw), 2)
        d = self._estimate(np.stack([col["ca"], col["temperature"]], axis=1))
        out = np.empty(len(raw))
        for i in range(len(raw)):
            params = np.array([col["ca"][i], col["temperature"][i],
                               col["coolant_temperature"][i], col["valve_opening"][i],
                               col["feed_temperature"][i], col["feed_concentration"][i],
                               col["ca_setpoint"][i], d[i, 0], d[i, 1]])
            out[i], z = self._solve(i, params, col["valve_opening"][i])
            self._pred[i] = np.asarray(self._predict(params, z[:self.settings.horizon])).ravel()
        self._fresh[:] = False
        return (2.0 * out - 1.0).astype(np.float32)[:, None]


class PressureMPC(_MPC):
    """MPC of SafeTRPO/PressureVessel-v0's pressure loop on the nominal vessel (pass the env's
    config; the actuator's 0.1-min lag is left out of the model)."""

    def __init__(self, config: pressure_env.PressureConfig | None = None,
                 settings: MPCSettings | None = None) -> None:
        config = pressure_env.PressureConfig() if config is None else config
        settings = MPCSettings() if settings is None else settings
        super().__init__(settings, config.valve_rate_per_min * config.dt_minutes)
        c, s, n, dt = config, settings, settings.horizon, config.dt_minutes
        self.config = c
        p = ca.SX.sym("p", 6)  # P, valve, inflow, setpoint, w, reference pressure
        v, slack = ca.SX.sym("v", n), ca.SX.sym("s", n)
        nominal = pressure.Params(polytropic_exponent=c.polytropic_exponent,
                                  relief_set=c.relief_set_bar)
        x, prev, objective, moves, limits = p[0], p[1], 0, [], []
        for k in range(n):
            def rhs(t, y, start=prev, end=v[k]):
                opening = start + (end - start) * t / dt
                return self._rhs(y, opening, p[2], p[5], nominal)
            x = _rk4(rhs, x, dt, s.substeps)
            if k == 0:  # the nominal one-step prediction, without w: for the estimate
                self._predict = ca.Function("predict", [p, v], [x])
            x = x + p[4]
            err = (x - p[3]) / c.tracking_scale
            objective += err * err + s.move_weight * (v[k] - prev) ** 2
            objective += s.slack_weight * (slack[k] + slack[k] ** 2)
            moves.append(v[k] - prev)
            limits.append(x - (c.relief_set_bar - s.pressure_backoff_bar) - slack[k])
            prev = v[k]
        self._build(p, v, slack, objective, ca.vertcat(*moves, *limits))
        self._lbg = np.concatenate([self._lbg, np.full(n, -np.inf)])
        self._ubg = np.concatenate([self._ubg, np.zeros(n)])

    @staticmethod
    def _rhs(pres, opening, inflow, p_ref, nominal: pressure.Params):
        """dP/dt of ``envs.pressure`` with the relief valve shut, in CasADi symbols."""
        q = nominal
        n = q.polytropic_exponent
        a = pressure.density_per_bar(q) * p_ref ** (1.0 - 1.0 / n)
        e = 0.5 * (1.0 + 1.0 / n)
        choke = q.valve_fgamma * q.valve_xt
        xp = ca.fmin(ca.fmax(1.0 - q.downstream_pressure / pres, 0.0), choke)
        y = 1.0 - xp / (3.0 * choke)
        char = (q.valve_rangeability ** opening - 1.0) / (q.valve_rangeability - 1.0)
        flow = pressure.N6_KV / 60.0 * q.valve_kv * char * y * ca.sqrt(xp * a) * pres ** e
        return n / (q.volume * a) * pres ** (2.0 - 2.0 * e) * (inflow - flow)

    def act(self, obs: np.ndarray) -> np.ndarray:
        names = pressure_env.OBS_NAMES
        raw = np.asarray(obs, np.float64) * pressure_env.OBS_SCALE + pressure_env.OBS_CENTER
        col = {k: raw[:, names.index(k)] for k in names}
        fresh = self._begin(len(raw), 1)
        if not hasattr(self, "_p_ref") or len(self._p_ref) != len(raw):
            self._p_ref = col["pressure_setpoint"].copy()
        # the gas path's reference: the episode's first setpoint (where the env starts it)
        self._p_ref = np.where(fresh, col["pressure_setpoint"], self._p_ref)
        d = self._estimate(col["pressure"][:, None])[:, 0]
        out = np.empty(len(raw))
        for i in range(len(raw)):
            params = np.array([col["pressure"][i], col["valve_opening"][i],
                               max(col["inflow"][i], 0.0), col["pressure_setpoint"][i], d[i],
                               self._p_ref[i]])
            out[i], z = self._solve(i, params, col["valve_opening"][i])
            self._pred[i, 0] = float(self._predict(params, z[:self.settings.horizon]))
        self._fresh[:] = False
        return (2.0 * out - 1.0).astype(np.float32)[:, None]


def cstr_mpc(config: cstr_env.CSTRConfig | None = None, **settings) -> CSTRMPC:
    """The CSTR MPC for an env with ``config`` (its kwargs through ``cstr_env.make_config``)."""
    return CSTRMPC(config, MPCSettings(**settings))


def pressure_mpc(config: pressure_env.PressureConfig | None = None, **settings
                 ) -> PressureMPC:
    """The vessel MPC for an env with ``config``."""
    return PressureMPC(config, MPCSettings(**settings))
