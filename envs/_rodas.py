"""Adaptive RODAS4 for two-state plants, compiled with numba and run row by row.

The process plants (``envs.cstr``, ``envs.pressure``) are stiff in the states that matter most
(an igniting reactor, a venting relief valve), so they are integrated with RODAS4 (Hairer &
Wanner's stiffly accurate, L-stable Rosenbrock method, order 4 with an embedded order-3 error
estimate), the 2x2 linear systems solved in closed form with the analytic Jacobian.

Why compiled, and why one row at a time: in a batch of thousands of copies almost every row
takes the whole control interval in one step, while the few that are igniting need ~35 small
steps each, one after another. A numpy loop over the rows still working pays its full call
overhead (~80 us) for each of those sequential steps however few rows remain, and that was most
of the time an env step took under random actions. Compiled, each row runs its own adaptive
loop at the cost of its own arithmetic: a quiet CSTR row takes one step (~0.15 us), an igniting
one ~5 us in all, and no row's result can depend on the other rows in the batch.

Generic over the plant: the kernels below take two compiled functions of one row,

    rhs_jac(y1, y2, c) -> (f1, f2, j11, j12, j21, j22)   the derivatives and their Jacobian
    admissible(y1, y2, new1, new2, c) -> factor           see ``integrate_row``
    switch(y1, y2, c) -> None                             a hybrid plant's discrete mode

where ``c`` is that row's 1-D vector of coefficients (the plant's ``coefficients()`` in order).
``specialise(plant module)`` compiles ``integrate_rows`` with the plant's pair inlined (numba
treats each function passed as an argument as a type of its own) and caches it on disk: the
first process compiles it (about a second per plant), later ones load it (~0.1 s).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType

import numpy as np
from numba import njit

# error_model="numpy": IEEE float semantics, a division by zero gives inf as in numpy instead of
# raising (a huge trial step that overflows is rejected by the step-size control, not an error).
kernel = njit(error_model="numpy", inline="always")
"""Compiles the generic kernels below, inlined into each plant's ``specialise``d function (and
so cached as part of it, never alone)."""
compiled = njit(cache=True, error_model="numpy")
"""Compiles the plants' functions, cached on disk next to their source."""

MAX_STEPS = 10_000
"""Step attempts allowed per row and call before ``integrate`` gives up on that row."""

# RODAS4 coefficients (Hairer & Wanner, rodas.f, METH=1), in the transformed form where each
# stage solves (I/(gamma h) - J) k_i = f(y + sum a_ij k_j) + sum (c_ij / h) k_j.
GAMMA = 0.25
A21 = 1.544
A31, A32 = 0.9466785280815826, 0.2557011698983284
A41, A42, A43 = 3.314825187068521, 2.896124015972201, 0.9986419139977817
A51, A52, A53, A54 = 1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950
C21 = -5.6688
C31, C32 = -2.430093356833875, -0.2063599157091915
C41, C42, C43 = -0.1073529058151375, -9.594562251023355, -20.47028614809616
C51, C52, C53, C54 = 7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160
C61, C62, C63, C64, C65 = (8.083246795921522, -7.981132988064893, -31.52159432874371,
                           16.31930543123136, -6.058818238834054)

# Step-size control (rodas.f defaults): next h = h * clip(SAFE err^-1/4, SHRINK, GROW).
SAFE, SHRINK, GROW = 0.9, 0.2, 6.0
REJECT = 0.25  # retry factor after a step whose error estimate overflowed
ERR_FLOOR = 1e-2  # rodas.f: the error remembered for Gustafsson's controller is at least this


@kernel
def rodas4_step(rhs_jac, y1: float, y2: float, c: np.ndarray, h: float
                ) -> tuple[float, float, float, float]:
    """One RODAS4 step of size ``h`` from (y1, y2) for one row with coefficients ``c``.

    Returns the new state and the embedded error estimate (new minus the order-3 solution).
    Stage 2-6 evaluations use only the derivatives of ``rhs_jac``; once inlined, the compiler
    drops the unused Jacobian entries.
    """
    f1, f2, j11, j12, j21, j22 = rhs_jac(y1, y2, c)
    fac = 1.0 / (GAMMA * h)
    e11, e22 = fac - j11, fac - j22
    inv_det = 1.0 / (e11 * e22 - j12 * j21)
    # (I/(gamma h) - J)^-1 of a 2x2 matrix, entry by entry: exact and cheap.
    m11, m12, m21, m22 = e22 * inv_det, j12 * inv_det, j21 * inv_det, e11 * inv_det
    ih = 1.0 / h
    p1, p2 = m11 * f1 + m12 * f2, m21 * f1 + m22 * f2
    g1, g2, _, _, _, _ = rhs_jac(y1 + A21 * p1, y2 + A21 * p2, c)
    b1, b2 = g1 + C21 * ih * p1, g2 + C21 * ih * p2
    q1, q2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    g1, g2, _, _, _, _ = rhs_jac(y1 + A31 * p1 + A32 * q1, y2 + A31 * p2 + A32 * q2, c)
    b1 = g1 + ih * (C31 * p1 + C32 * q1)
    b2 = g2 + ih * (C31 * p2 + C32 * q2)
    r1, r2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    g1, g2, _, _, _, _ = rhs_jac(y1 + A41 * p1 + A42 * q1 + A43 * r1,
                                 y2 + A41 * p2 + A42 * q2 + A43 * r2, c)
    b1 = g1 + ih * (C41 * p1 + C42 * q1 + C43 * r1)
    b2 = g2 + ih * (C41 * p2 + C42 * q2 + C43 * r2)
    s1, s2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    z1 = y1 + A51 * p1 + A52 * q1 + A53 * r1 + A54 * s1
    z2 = y2 + A51 * p2 + A52 * q2 + A53 * r2 + A54 * s2
    g1, g2, _, _, _, _ = rhs_jac(z1, z2, c)
    b1 = g1 + ih * (C51 * p1 + C52 * q1 + C53 * r1 + C54 * s1)
    b2 = g2 + ih * (C51 * p2 + C52 * q2 + C53 * r2 + C54 * s2)
    u1, u2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    z1, z2 = z1 + u1, z2 + u2  # stiffly accurate: stage 6 starts from the stage-5 solution
    g1, g2, _, _, _, _ = rhs_jac(z1, z2, c)
    b1 = g1 + ih * (C61 * p1 + C62 * q1 + C63 * r1 + C64 * s1 + C65 * u1)
    b2 = g2 + ih * (C61 * p2 + C62 * q2 + C63 * r2 + C64 * s2 + C65 * u2)
    v1, v2 = m11 * b1 + m12 * b2, m21 * b1 + m22 * b2
    return z1 + v1, z2 + v2, v1, v2


@kernel
def integrate_row(rhs_jac, admissible, switch, y1: float, y2: float, c: np.ndarray, dt: float,
                  rtol: float, atol1: float, atol2: float, max_steps: int
                  ) -> tuple[float, float, bool]:
    """Integrate one row over ``dt`` with adaptive RODAS4 steps: (y1, y2, finished).

    The first step tries the whole interval. A step is accepted when the RMS over both states
    of its error estimate, scaled by atol + rtol * |y|, is <= 1. Step-size control as in Hairer
    & Wanner's rodas.f: next h = h * clip(0.9 err^-1/4, 0.2, 6); after an accepted step,
    Gustafsson's predictive controller (it uses the error trend and saves many rejections
    through an ignition); no growth right after a rejection.

    ``admissible(y1, y2, new1, new2, c)`` returns a factor: >= 1 lets the step be judged by its
    error estimate, f < 1 rejects it whatever the estimate says and retries with h * f. Why: a
    linearly implicit step far longer than an ignition can extrapolate the exponential the
    wrong way (Ca rising above the feed, T falling below every inlet) while its embedded
    estimate is equally wrong and looks small; and a long step across a kink of the right-hand
    side (a relief valve lifting) can look smooth to the estimate too.

    ``switch(y1, y2, c)`` runs before the first step and after each accepted one, and may
    change ``c`` in place: a discrete mode of a hybrid plant (a relief valve that has popped
    stays open until it reseats). ``admissible`` keeps steps from jumping far past a switching
    point, so the mode changes within a short step of where it should.

    ``finished`` is False if the row did not reach ``dt`` within ``max_steps`` attempts or its
    step size collapsed below 1e-13 dt; the state returned is then where it stopped.
    """
    switch(y1, y2, c)
    end = dt * (1.0 - 1e-12)
    t, h = 0.0, dt
    h_accepted, err_accepted = 0.0, 0.0  # the last accepted step (0: none yet)
    rejected = False
    for _ in range(max_steps):
        hs = min(h, dt - t)
        n1, n2, e1, e2 = rodas4_step(rhs_jac, y1, y2, c, hs)
        e1 = e1 / (atol1 + rtol * max(abs(y1), abs(n1)))
        e2 = e2 / (atol2 + rtol * max(abs(y2), abs(n2)))
        err = np.sqrt(0.5 * (e1 * e1 + e2 * e2))
        retry = admissible(y1, y2, n1, n2, c)
        root = np.sqrt(np.sqrt(err))
        if not err < np.inf:  # a huge trial step overflowed (inf or nan): never accepted
            factor, rejected = REJECT, True
        elif retry < 1.0:
            factor, rejected = retry, True
        elif err > 1.0:
            factor, rejected = max(SAFE / root, SHRINK), True
        else:
            factor = min(max(SAFE / root, SHRINK), GROW)
            if h_accepted > 0.0:  # Gustafsson: h_new = h^2/h_acc (err_acc / err^2)^(1/4) safe
                trend = SAFE * hs / h_accepted * np.sqrt(np.sqrt(err_accepted)) / (root * root)
                factor = min(factor, max(trend, SHRINK))
            if rejected:
                factor = min(factor, 1.0)
            rejected = False
            h_accepted, err_accepted = hs, max(err, ERR_FLOOR)
            t += hs
            y1, y2 = n1, n2
            switch(y1, y2, c)
            if t >= end:
                return y1, y2, True
        h = hs * factor
        if h < dt * 1e-13:
            break
    return y1, y2, False


@kernel
def integrate_rows(rhs_jac, admissible, switch, y1: np.ndarray, y2: np.ndarray,
                   coeffs: np.ndarray, dt: float, rtol: float, atol1: float, atol2: float,
                   max_steps: int                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``integrate_row`` for every row i of (N,) ``y1``, ``y2`` with coefficients
    ``coeffs[i]`` ((N, k), updated in place by ``switch``): new (N,) arrays and a (N,) boolean
    ``finished``."""
    n = y1.shape[0]
    out1, out2 = np.empty(n), np.empty(n)
    finished = np.empty(n, dtype=np.bool_)
    for i in range(n):
        out1[i], out2[i], finished[i] = integrate_row(rhs_jac, admissible, switch, y1[i],
                                                      y2[i], coeffs[i], dt, rtol, atol1, atol2,
                                                      max_steps)
    return out1, out2, finished


def specialise(plant: ModuleType):
    """``integrate_rows`` for one plant, compiled once and cached on disk: a function of
    (y1, y2, coeffs, dt, rtol, atol1, atol2, max_steps), the ``rows_kernel`` of ``integrate``.

    ``plant`` is the plant's module. It defines the compiled row functions ``row_rhs_jac``,
    ``row_admissible`` and ``row_switch`` (module docstring), before or after this call: they
    are looked up when the function is first called.
    """
    # Three things about numba's on-disk cache shape this function.
    # - The row functions are reached as attributes of the plant's module, constants at compile
    #   time; a function passed as a global, or from Python, is compiled in as a process-specific
    #   address, and code holding one is never cached (or never found again).
    # - Each plant's function gets a name of its own: numba names compiled code (and cache
    #   files) by module, name and argument types, and two plants' code under one name can clash
    #   once one of them comes from the cache. The kernels are inlined (``kernel``) for the same
    #   reason: compiled alone, they would be named by the types of their function arguments,
    #   which name no module.
    # - numba notices edits only to the file a cached function is defined in (this one). What a
    #   closure captures is part of its cache key (a module pickles by name, the same in every
    #   process), so the plant file's digest there makes an edit to the plant recompile too.
    plant_digest = hashlib.sha256(Path(plant.__file__).read_bytes()).hexdigest()

    def integrate_plant_rows(y1, y2, coeffs, dt, rtol, atol1, atol2, max_steps):
        plant_digest  # noqa: B018  (in the cache key, see above)
        return integrate_rows(plant.row_rhs_jac, plant.row_admissible, plant.row_switch, y1, y2,
                              coeffs, dt, rtol, atol1, atol2, max_steps)

    integrate_plant_rows.__qualname__ = f"integrate_rows_{plant.__name__.rsplit('.', 1)[-1]}"
    return compiled(integrate_plant_rows)


def integrate(rows_kernel, y1: np.ndarray, y2: np.ndarray,
              coeffs: tuple[float | np.ndarray, ...], dt: float, rtol: float, atol1: float,
              atol2: float, name: str, return_coeffs: bool = False) -> tuple[np.ndarray, ...]:
    """Advance every row of a two-state autonomous ODE by ``dt``, each with its own adaptive
    RODAS4 steps (``integrate_row``).

    ``rows_kernel`` is the plant's ``specialise(...)``; ``y1``, ``y2`` are the (N,) states;
    ``coeffs`` is the plant's ``coefficients()``, each a float or an (N,) array; ``rtol`` and
    ``atol1``, ``atol2`` (in the states' units) bound each step's error estimate; ``name``
    prefixes error messages; with ``return_coeffs`` the (N, k) coefficient table comes back
    too, as ``switch`` left it (a hybrid plant's new modes). Raises ``ValueError`` for a
    non-finite state or coefficient and ``RuntimeError`` naming the rows that could not be
    integrated (never returns NaN).
    """
    y1 = np.ascontiguousarray(y1, dtype=np.float64)
    y2 = np.ascontiguousarray(y2, dtype=np.float64)
    if y1.ndim != 1 or y1.shape != y2.shape:
        raise ValueError(f"{name}: states must be two arrays of shape (N,), got {y1.shape} "
                         f"and {y2.shape}")
    table = np.empty((y1.shape[0], len(coeffs)))  # row i: row i's coefficients, contiguous
    for j, c in enumerate(coeffs):
        table[:, j] = c  # a float or an (N,) array, broadcast down the column
    if not (np.isfinite(table).all() and np.isfinite(y1).all() and np.isfinite(y2).all()):
        raise ValueError(f"{name}: non-finite state or input")
    # Python numbers as floats: an int dt would compile (and cache) a second specialisation.
    out1, out2, finished = rows_kernel(y1, y2, table, float(dt), float(rtol), float(atol1),
                                       float(atol2), MAX_STEPS)
    if not finished.all():
        failed = np.flatnonzero(~finished)
        raise RuntimeError(f"{name}: rows {failed[:5].tolist()} (of {failed.size} failing) did "
                           f"not reach dt={dt} (step size collapsed or more than {MAX_STEPS} "
                           "steps)")
    return (out1, out2, table) if return_coeffs else (out1, out2)
