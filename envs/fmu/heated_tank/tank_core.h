/* The heated tank's physics, shared by the FMI 2.0 (heated_tank.c) and FMI 3.0
 * (heated_tank3.c) wrappers: the same model, whichever standard loads it.
 *
 *   dT/dt = P * heat - k * (T - T_amb)          (explicit Euler, `substeps` per step)
 */
#ifndef TANK_CORE_H
#define TANK_CORE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { VR_HEAT, VR_T, VR_PRODUCTION, VR_T0, VR_K, VR_P, VR_T_AMB, VR_SUBSTEPS, VR_FAIL_ABOVE,
       VR_NAN_AFTER, VR_DTDT, VR_ABORT_AFTER, N_REALS };

/* Which variables the environment may set (inputs and parameters). */
static int tank_settable(unsigned vr) {
    return vr < N_REALS && vr != VR_T && vr != VR_PRODUCTION && vr != VR_DTDT;
}

static void tank_defaults(double *r) {
    memset(r, 0, sizeof(double) * N_REALS);
    r[VR_T0] = 25.0;
    r[VR_K] = 0.1;
    r[VR_P] = 10.0;
    r[VR_T_AMB] = 20.0;
    r[VR_SUBSTEPS] = 10.0;
    r[VR_FAIL_ABOVE] = 1e9;
    r[VR_NAN_AFTER] = 1e9;
    r[VR_ABORT_AFTER] = 1e9;
}

static void tank_outputs(double *r) {
    double over = r[VR_T] - r[VR_T_AMB];
    r[VR_PRODUCTION] = over > 0 ? over / 100.0 : 0.0;
    r[VR_DTDT] = r[VR_P] * r[VR_HEAT] - r[VR_K] * over;
}

static void tank_initialize(double *r) {
    r[VR_T] = r[VR_T0];
    tank_outputs(r);
}

/* Advance from t by h; returns 0 on success, -1 when T passed fail_above. */
static int tank_step(double *r, double t, double h) {
    long n = (long)r[VR_SUBSTEPS];
    if (n < 1) n = 1;
    double dt = h / (double)n, T = r[VR_T];
    const double gain = r[VR_P] * r[VR_HEAT], k = r[VR_K], amb = r[VR_T_AMB];
    for (long i = 0; i < n; i++) T += dt * (gain - k * (T - amb));
    r[VR_T] = T;
    if (t + h >= r[VR_NAN_AFTER]) r[VR_T] = NAN;
    if (t + h >= r[VR_ABORT_AFTER]) abort(); /* a crashing plant, for the tests */
    tank_outputs(r);
    return T > r[VR_FAIL_ABOVE] ? -1 : 0;
}

#endif
