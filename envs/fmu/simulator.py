"""One instance of an FMI 2.0 or 3.0 co-simulation FMU, driven through fmpy.

An FMU is native code (a shared library inside the zip): loading it runs the plant vendor's
code in this process with this user's rights, like a plugin. We load it only through fmpy's
standard FMI loading of the FMU's own binary and never run anything else the FMU names.

Every failing FMI call becomes one ``UserError`` line naming the FMU, the call, the model time
and, for values, the variable.
"""

from __future__ import annotations

import atexit
import math
import shutil
from collections.abc import Sequence

from envs.fmu.spec import FMUSpec, Variable
from safe_trpo.errors import UserError

_EXTRACTED: dict[str, str] = {}  # FMU path -> unzipped folder, one per process


def _unzipped(path: str) -> str:
    """Extract each FMU once per process (copies share the folder; FMI allows it)."""
    from fmpy import extract

    if path not in _EXTRACTED:
        folder = extract(path)
        _EXTRACTED[path] = folder
        atexit.register(shutil.rmtree, folder, True)
    return _EXTRACTED[path]


class FMUSimulator:
    """One FMU instance: ``reset`` starts an episode, ``step`` advances it one step."""

    def __init__(self, spec: FMUSpec, instance_name: str = "safe_trpo") -> None:
        from fmpy.fmi1 import FMICallException
        from fmpy.fmi2 import FMU2Slave
        from fmpy.fmi3 import FMU3Slave

        self.spec = spec
        self._v3 = spec.fmi_version == "3.0"
        self._do_step = "fmi3DoStep" if self._v3 else "fmi2DoStep"
        self._call_error = FMICallException
        self.time = spec.start_time
        self._reads = spec.reads
        self._read_vrs = [v.vr for v in self._reads]
        self._action_vrs = [v.vr for v in spec.actions]
        try:
            slave = FMU3Slave if self._v3 else FMU2Slave
            self._fmu = slave(guid=spec.guid, unzipDirectory=_unzipped(spec.path),
                              modelIdentifier=spec.model_identifier,
                              instanceName=instance_name)
            self._fmu.instantiate()
        except Exception as exc:  # a missing binary for this platform, a refused GUID, ...
            raise UserError(f"{spec.label}: cannot load or instantiate the FMU "
                            f"({type(exc).__name__}: {exc})") from None
        self._fresh = True

    def _fail(self, what: str, exc: Exception) -> UserError:
        return UserError(f"{self.spec.label}: {what} failed at model time {self.time:g} s "
                         f"({exc})")

    def reset(self, values: Sequence[tuple[Variable, float]]) -> dict[str, float]:
        """Start an episode at ``start_time`` with ``values`` set before initialisation;
        returns the values of ``spec.reads`` by name."""
        self.time = self.spec.start_time
        try:
            if not self._fresh:
                self._fmu.reset()
            self._fresh = False
            if not self._v3:  # FMI 3.0 takes the start time in enterInitializationMode
                self._fmu.setupExperiment(startTime=self.time)
            for var, value in values:
                self._set(var, value)
            if self._v3:
                self._fmu.enterInitializationMode(startTime=self.time)
            else:
                self._fmu.enterInitializationMode()
            self._fmu.exitInitializationMode()
        except self._call_error as exc:
            raise self._fail("initialisation", exc) from None
        return self._read("initialisation")

    def _set(self, var: Variable, value: float) -> None:
        fmu = self._fmu
        try:
            if var.type == "Real":
                (fmu.setFloat64 if self._v3 else fmu.setReal)([var.vr], [value])
            elif var.type == "Integer":
                (fmu.setInt32 if self._v3 else fmu.setInteger)([var.vr], [int(round(value))])
            else:
                fmu.setBoolean([var.vr], [bool(value)])
        except self._call_error as exc:
            raise UserError(f"{self.spec.label}: setting {var.name!r} = {value:g} failed at "
                            f"model time {self.time:g} s ({exc})") from None

    def step(self, inputs: Sequence[float]) -> dict[str, float]:
        """Set the action inputs, advance one ``step_size``; the values of ``spec.reads``."""
        h = self.spec.step_size
        try:
            (self._fmu.setFloat64 if self._v3 else self._fmu.setReal)(self._action_vrs,
                                                                     list(inputs))
        except self._call_error as exc:
            raise self._fail("setting the inputs " + ", ".join(
                f"{v.name}={u:g}" for v, u in zip(self.spec.actions, inputs, strict=True)),
                exc) from None
        try:
            result = self._fmu.doStep(currentCommunicationPoint=self.time,
                                      communicationStepSize=h)
        except self._call_error as exc:
            raise UserError(f"{self.spec.label}: {self._do_step} from model time "
                            f"{self.time:g} s to {self.time + h:g} s failed ({exc}); the "
                            f"plant stopped there") from None
        if self._v3 and result[1]:  # terminateSimulation: the model refuses to go on
            raise UserError(f"{self.spec.label}: the FMU asked to terminate the simulation at "
                            f"model time {result[3]:g} s ({self._do_step} from "
                            f"{self.time:g} s)")
        self.time += h
        return self._read(self._do_step)

    def _read(self, after: str) -> dict[str, float]:
        try:
            raw = (self._fmu.getFloat64 if self._v3 else self._fmu.getReal)(self._read_vrs)
        except self._call_error as exc:
            raise self._fail(f"reading {[v.name for v in self._reads]}", exc) from None
        out = {}
        for var, value in zip(self._reads, raw, strict=True):
            if not math.isfinite(value):
                raise UserError(f"{self.spec.label}: {var.name!r} is {value} at model time "
                                f"{self.time:g} s (after {after}); the FMU produced a "
                                f"non-finite value")
            out[var.name] = value
        return out

    def close(self) -> None:
        fmu, self._fmu = getattr(self, "_fmu", None), None
        if fmu is None:
            return
        try:
            if not self._fresh:
                fmu.terminate()
        except self._call_error:
            pass  # terminating a failed instance may fail too; freeing it is what matters
        fmu.freeInstance()
