/* A heated tank as an FMI 2.0 co-simulation FMU: the example plant of safe-trpo's FMU path.
 *
 *   dT/dt = P * heat - k * (T - T_amb)          (explicit Euler, `substeps` per doStep;
 *                                                the physics is in tank_core.h)
 *
 * `heat` in [0, 1] is the heater command (input). Full heat drives T towards
 * T_amb + P / k = 120 degC by default, above a safety limit such as 80 degC, so a policy that
 * only maximises `production` (which grows with T) breaks the limit. `substeps` sets the cost of
 * one doStep (fine internal integration), which the parallel-rollout benchmark uses to make a
 * plant whose step costs about a millisecond. `fail_above`, `nan_after` and `abort_after` exist
 * so the tests can make the plant fail (doStep returns fmi2Error), emit NaN or crash on purpose.
 *
 * Build: python -m envs.fmu.build_example OUT.fmu  (compiles this file with the system C
 * compiler against the FMI 2.0 headers that ship with fmpy, and zips it with its
 * modelDescription.xml).
 */
#include "tank_core.h"
#include "fmi2Functions.h"

typedef struct {
    fmi2Real r[N_REALS];
    fmi2Real time;
    const fmi2CallbackFunctions *cb;
    char name[64];
} Tank;

static void logmsg(Tank *m, fmi2Status status, const char *msg) {
    if (m->cb && m->cb->logger) m->cb->logger(m->cb->componentEnvironment, m->name, status,
                                              "logError", msg);
}

const char *fmi2GetTypesPlatform(void) { return fmi2TypesPlatform; }
const char *fmi2GetVersion(void) { return fmi2Version; }

fmi2Status fmi2SetDebugLogging(fmi2Component c, fmi2Boolean on, size_t n,
                               const fmi2String categories[]) {
    (void)c; (void)on; (void)n; (void)categories;
    return fmi2OK;
}

fmi2Component fmi2Instantiate(fmi2String instanceName, fmi2Type fmuType, fmi2String guid,
                              fmi2String resources, const fmi2CallbackFunctions *cb,
                              fmi2Boolean visible, fmi2Boolean loggingOn) {
    (void)resources; (void)visible; (void)loggingOn;
    if (fmuType != fmi2CoSimulation || strcmp(guid, "{8c4e810f-3df3-4a00-8276-176fa3c9f000}"))
        return NULL;
    Tank *m = calloc(1, sizeof(Tank));
    if (!m) return NULL;
    tank_defaults(m->r);
    m->cb = cb;
    strncpy(m->name, instanceName ? instanceName : "tank", sizeof(m->name) - 1);
    return m;
}

void fmi2FreeInstance(fmi2Component c) { free(c); }

fmi2Status fmi2SetupExperiment(fmi2Component c, fmi2Boolean tolDefined, fmi2Real tol,
                               fmi2Real start, fmi2Boolean stopDefined, fmi2Real stop) {
    (void)tolDefined; (void)tol; (void)stopDefined; (void)stop;
    ((Tank *)c)->time = start;
    return fmi2OK;
}

fmi2Status fmi2EnterInitializationMode(fmi2Component c) { (void)c; return fmi2OK; }

fmi2Status fmi2ExitInitializationMode(fmi2Component c) {
    tank_initialize(((Tank *)c)->r);
    return fmi2OK;
}

fmi2Status fmi2Terminate(fmi2Component c) { (void)c; return fmi2OK; }

fmi2Status fmi2Reset(fmi2Component c) {
    Tank *m = c;
    tank_defaults(m->r);
    m->time = 0.0;
    return fmi2OK;
}

fmi2Status fmi2GetReal(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                       fmi2Real value[]) {
    Tank *m = c;
    for (size_t i = 0; i < n; i++) {
        if (vr[i] >= N_REALS) return fmi2Error;
        value[i] = m->r[vr[i]];
    }
    return fmi2OK;
}

fmi2Status fmi2SetReal(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                       const fmi2Real value[]) {
    Tank *m = c;
    for (size_t i = 0; i < n; i++) {
        if (!tank_settable(vr[i])) return fmi2Error;
        m->r[vr[i]] = value[i];
    }
    return fmi2OK;
}

fmi2Status fmi2DoStep(fmi2Component c, fmi2Real t, fmi2Real h, fmi2Boolean noSetPrior) {
    (void)noSetPrior;
    Tank *m = c;
    int failed = tank_step(m->r, t, h);
    m->time = t + h;
    if (failed) {
        logmsg(m, fmi2Error, "temperature above fail_above: the model stops");
        return fmi2Error;
    }
    return fmi2OK;
}

/* Everything below is part of the FMI 2.0 interface but not used by this model. */
#define UNSUPPORTED return fmi2Error
fmi2Status fmi2GetInteger(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                          fmi2Integer v[]) { (void)c; (void)vr; (void)n; (void)v; UNSUPPORTED; }
fmi2Status fmi2GetBoolean(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                          fmi2Boolean v[]) { (void)c; (void)vr; (void)n; (void)v; UNSUPPORTED; }
fmi2Status fmi2GetString(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                         fmi2String v[]) { (void)c; (void)vr; (void)n; (void)v; UNSUPPORTED; }
fmi2Status fmi2SetInteger(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                          const fmi2Integer v[]) { (void)c; (void)vr; (void)n; (void)v; UNSUPPORTED; }
fmi2Status fmi2SetBoolean(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                          const fmi2Boolean v[]) { (void)c; (void)vr; (void)n; (void)v; UNSUPPORTED; }
fmi2Status fmi2SetString(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                         const fmi2String v[]) { (void)c; (void)vr; (void)n; (void)v; UNSUPPORTED; }
fmi2Status fmi2GetFMUstate(fmi2Component c, fmi2FMUstate *s) { (void)c; (void)s; UNSUPPORTED; }
fmi2Status fmi2SetFMUstate(fmi2Component c, fmi2FMUstate s) { (void)c; (void)s; UNSUPPORTED; }
fmi2Status fmi2FreeFMUstate(fmi2Component c, fmi2FMUstate *s) { (void)c; (void)s; UNSUPPORTED; }
fmi2Status fmi2SerializedFMUstateSize(fmi2Component c, fmi2FMUstate s, size_t *n) {
    (void)c; (void)s; (void)n; UNSUPPORTED; }
fmi2Status fmi2SerializeFMUstate(fmi2Component c, fmi2FMUstate s, fmi2Byte b[], size_t n) {
    (void)c; (void)s; (void)b; (void)n; UNSUPPORTED; }
fmi2Status fmi2DeSerializeFMUstate(fmi2Component c, const fmi2Byte b[], size_t n,
                                   fmi2FMUstate *s) { (void)c; (void)b; (void)n; (void)s; UNSUPPORTED; }
fmi2Status fmi2GetDirectionalDerivative(fmi2Component c, const fmi2ValueReference u[], size_t nu,
                                        const fmi2ValueReference k[], size_t nk,
                                        const fmi2Real dk[], fmi2Real du[]) {
    (void)c; (void)u; (void)nu; (void)k; (void)nk; (void)dk; (void)du; UNSUPPORTED; }
fmi2Status fmi2SetRealInputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                                       const fmi2Integer order[], const fmi2Real v[]) {
    (void)c; (void)vr; (void)n; (void)order; (void)v; UNSUPPORTED; }
fmi2Status fmi2GetRealOutputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                                        const fmi2Integer order[], fmi2Real v[]) {
    (void)c; (void)vr; (void)n; (void)order; (void)v; UNSUPPORTED; }
fmi2Status fmi2CancelStep(fmi2Component c) { (void)c; UNSUPPORTED; }
fmi2Status fmi2GetStatus(fmi2Component c, const fmi2StatusKind s, fmi2Status *v) {
    (void)c; (void)s; (void)v; UNSUPPORTED; }
fmi2Status fmi2GetRealStatus(fmi2Component c, const fmi2StatusKind s, fmi2Real *v) {
    (void)c; (void)s; (void)v; UNSUPPORTED; }
fmi2Status fmi2GetIntegerStatus(fmi2Component c, const fmi2StatusKind s, fmi2Integer *v) {
    (void)c; (void)s; (void)v; UNSUPPORTED; }
fmi2Status fmi2GetBooleanStatus(fmi2Component c, const fmi2StatusKind s, fmi2Boolean *v) {
    (void)c; (void)s; (void)v; UNSUPPORTED; }
fmi2Status fmi2GetStringStatus(fmi2Component c, const fmi2StatusKind s, fmi2String *v) {
    (void)c; (void)s; (void)v; UNSUPPORTED; }
/* Model-exchange functions: the shared library must export them (fmpy binds every fmi2*
 * name), but this FMU declares co-simulation only. */
fmi2Status fmi2EnterEventMode(fmi2Component c) { (void)c; UNSUPPORTED; }
fmi2Status fmi2NewDiscreteStates(fmi2Component c, fmi2EventInfo *e) { (void)c; (void)e; UNSUPPORTED; }
fmi2Status fmi2EnterContinuousTimeMode(fmi2Component c) { (void)c; UNSUPPORTED; }
fmi2Status fmi2CompletedIntegratorStep(fmi2Component c, fmi2Boolean a, fmi2Boolean *b,
                                       fmi2Boolean *d) { (void)c; (void)a; (void)b; (void)d; UNSUPPORTED; }
fmi2Status fmi2SetTime(fmi2Component c, fmi2Real t) { (void)c; (void)t; UNSUPPORTED; }
fmi2Status fmi2SetContinuousStates(fmi2Component c, const fmi2Real x[], size_t n) {
    (void)c; (void)x; (void)n; UNSUPPORTED; }
fmi2Status fmi2GetDerivatives(fmi2Component c, fmi2Real x[], size_t n) {
    (void)c; (void)x; (void)n; UNSUPPORTED; }
fmi2Status fmi2GetEventIndicators(fmi2Component c, fmi2Real x[], size_t n) {
    (void)c; (void)x; (void)n; UNSUPPORTED; }
fmi2Status fmi2GetContinuousStates(fmi2Component c, fmi2Real x[], size_t n) {
    (void)c; (void)x; (void)n; UNSUPPORTED; }
fmi2Status fmi2GetNominalsOfContinuousStates(fmi2Component c, fmi2Real x[], size_t n) {
    (void)c; (void)x; (void)n; UNSUPPORTED; }
