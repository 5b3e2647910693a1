/* The heated tank (tank_core.h) as an FMI 3.0 co-simulation FMU.
 *
 * Only the functions a co-simulation run calls are written here; build_example.py generates the
 * rest of the FMI 3.0 interface from fmi3FunctionTypes.h as functions that return fmi3Error
 * (fmpy binds every fmi3* symbol when it loads an FMU).
 */
#include "tank_core.h"
#include "fmi3Functions.h"

#define VR_TIME 100
#define TOKEN "{8c4e810f-3df3-4a00-8276-176fa3c9f003}"

typedef struct {
    fmi3Float64 r[N_REALS];
    fmi3Float64 time;
    fmi3InstanceEnvironment env;
    fmi3LogMessageCallback log;
} Tank3;

const char *fmi3GetVersion(void) { return fmi3Version; }

fmi3Status fmi3SetDebugLogging(fmi3Instance c, fmi3Boolean on, size_t n,
                               const fmi3String categories[]) {
    (void)c; (void)on; (void)n; (void)categories;
    return fmi3OK;
}

fmi3Instance fmi3InstantiateCoSimulation(fmi3String instanceName, fmi3String token,
        fmi3String resourcePath, fmi3Boolean visible, fmi3Boolean loggingOn,
        fmi3Boolean eventModeUsed, fmi3Boolean earlyReturnAllowed,
        const fmi3ValueReference required[], size_t nRequired, fmi3InstanceEnvironment env,
        fmi3LogMessageCallback log, fmi3IntermediateUpdateCallback update) {
    (void)instanceName; (void)resourcePath; (void)visible; (void)loggingOn; (void)required;
    (void)nRequired; (void)update; (void)earlyReturnAllowed;
    if (eventModeUsed || !token || strcmp(token, TOKEN)) return NULL;
    Tank3 *m = calloc(1, sizeof(Tank3));
    if (!m) return NULL;
    tank_defaults(m->r);
    m->env = env;
    m->log = log;
    return m;
}

void fmi3FreeInstance(fmi3Instance c) { free(c); }

fmi3Status fmi3EnterInitializationMode(fmi3Instance c, fmi3Boolean tolDefined, fmi3Float64 tol,
                                       fmi3Float64 start, fmi3Boolean stopDefined,
                                       fmi3Float64 stop) {
    (void)tolDefined; (void)tol; (void)stopDefined; (void)stop;
    ((Tank3 *)c)->time = start;
    return fmi3OK;
}

fmi3Status fmi3ExitInitializationMode(fmi3Instance c) {
    tank_initialize(((Tank3 *)c)->r);
    return fmi3OK;
}

fmi3Status fmi3Terminate(fmi3Instance c) { (void)c; return fmi3OK; }

fmi3Status fmi3Reset(fmi3Instance c) {
    Tank3 *m = c;
    tank_defaults(m->r);
    m->time = 0.0;
    return fmi3OK;
}

fmi3Status fmi3GetFloat64(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                          fmi3Float64 values[], size_t nValues) {
    Tank3 *m = c;
    if (nValues != n) return fmi3Error;
    for (size_t i = 0; i < n; i++) {
        if (vr[i] == VR_TIME) values[i] = m->time;
        else if (vr[i] < N_REALS) values[i] = m->r[vr[i]];
        else return fmi3Error;
    }
    return fmi3OK;
}

fmi3Status fmi3SetFloat64(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                          const fmi3Float64 values[], size_t nValues) {
    Tank3 *m = c;
    if (nValues != n) return fmi3Error;
    for (size_t i = 0; i < n; i++) {
        if (!tank_settable(vr[i])) return fmi3Error;
        m->r[vr[i]] = values[i];
    }
    return fmi3OK;
}

fmi3Status fmi3DoStep(fmi3Instance c, fmi3Float64 t, fmi3Float64 h, fmi3Boolean noSetPrior,
                      fmi3Boolean *eventHandlingNeeded, fmi3Boolean *terminateSimulation,
                      fmi3Boolean *earlyReturn, fmi3Float64 *lastSuccessfulTime) {
    (void)noSetPrior;
    Tank3 *m = c;
    int failed = tank_step(m->r, t, h);
    m->time = t + h;
    *eventHandlingNeeded = fmi3False;
    *terminateSimulation = fmi3False;
    *earlyReturn = fmi3False;
    *lastSuccessfulTime = m->time;
    if (failed) {
        if (m->log) m->log(m->env, fmi3Error, "logError",
                           "temperature above fail_above: the model stops");
        return fmi3Error;
    }
    return fmi3OK;
}
