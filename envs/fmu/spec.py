"""The interface between an FMU and a constrained Gymnasium env: parsed from ``[env.kwargs]``
and checked against the FMU's ``modelDescription.xml`` before any native code is loaded.

Every problem is one ``UserError`` line that names the FMU file, the kwarg (``actions[0].name``,
``costs.overheat.output``, ...) and the variable, e.g.
``plant.fmu: actions[0]: 'Q' is a parameter, expected causality input``.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safe_trpo.errors import UserError

READABLE = ("output", "local")  # what observations, reward and costs may read (states are locals)
# FMI 2.0 / 3.0 type names -> the type the env handles them as (FMI 3.0: Float64, Int32).
TYPES = {"Real": "Real", "Float64": "Real", "Integer": "Integer", "Int32": "Integer",
         "Boolean": "Boolean"}
SETTABLE_TYPES = tuple(TYPES)


@dataclass(frozen=True)
class Variable:
    """One FMU scalar variable as the env uses it."""

    name: str
    vr: int  # value reference
    type: str  # Real | Integer | Boolean
    low: float | None = None  # normalisation / mapping range (None: not known)
    high: float | None = None


@dataclass(frozen=True)
class Reward:
    """Per-step reward: ``output`` (maximise var) or ``track`` (-|var - setpoint| / scale)."""

    kind: str
    var: Variable
    setpoint: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class Cost:
    """Per-step cost ``name``: var itself (``output``) or its excess beyond ``above``/``below``."""

    name: str
    var: Variable
    above: float | None = None
    below: float | None = None


@dataclass(frozen=True)
class FMUSpec:
    """Everything the env needs to know, validated. ``reads`` is the variables read after every
    step (observations, reward, costs; unique, in a fixed order)."""

    path: str
    label: str  # the FMU's file name, for messages
    fmi_version: str  # "2.0" or "3.0"
    guid: str
    model_identifier: str
    once_per_process: bool  # canBeInstantiatedOnlyOncePerProcess
    step_size: float
    episode_steps: int
    start_time: float
    actions: tuple[Variable, ...]
    observations: tuple[Variable, ...]
    reward: Reward
    costs: tuple[Cost, ...]
    start_values: tuple[tuple[Variable, float], ...]
    randomize: tuple[tuple[Variable, float, float], ...]

    @property
    def reads(self) -> tuple[Variable, ...]:
        seen: dict[int, Variable] = {}
        for var in (*self.observations, self.reward.var, *(c.var for c in self.costs)):
            seen.setdefault(var.vr, var)
        return tuple(seen.values())


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _table(value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
           ) -> dict[str, Any]:
    if not isinstance(value, dict):
        keys = ", ".join(f"{k} = ..." for k in required)
        raise UserError(f"{where}: expected a table like {{ {keys} }}, got {value!r}")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (expected "
                        f"{', '.join((*required, *optional))})")
    missing = [k for k in required if k not in value]
    if missing:
        raise UserError(f"{where}: missing key {missing[0]!r}")
    return value


class _Model:
    """The variables of one model description, looked up by name with causality checks."""

    def __init__(self, md: Any, label: str) -> None:
        self.label = label
        self.vars = {v.name: v for v in md.modelVariables}

    def get(self, name: Any, where: str, causalities: tuple[str, ...], what: str) -> Any:
        if not isinstance(name, str):
            raise UserError(f"{self.label}: {where}: expected a variable name, got {name!r}")
        v = self.vars.get(name)
        if v is None:
            close = sorted(n for n in self.vars if n.lower() == name.lower())
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{self.label}: {where}: no variable named {name!r} in the FMU"
                            f"{hint}")
        if v.causality not in causalities:
            raise UserError(f"{self.label}: {where}: {name!r} has causality {v.causality}, "
                            f"expected {' or '.join(causalities)} ({what})")
        return v

    def real(self, name: Any, where: str, causalities: tuple[str, ...], what: str) -> Variable:
        v = self.get(name, where, causalities, what)
        if TYPES.get(v.type) != "Real":
            raise UserError(f"{self.label}: {where}: {name!r} is of type {v.type}, expected "
                            f"Real (FMI 3.0: Float64)")
        return Variable(name, int(v.valueReference), "Real", _declared(v.min), _declared(v.max))

    def settable(self, name: Any, where: str) -> Variable:
        v = self.get(name, where, ("parameter", "input", "local", "output"), "a start value")
        # FMI 2.0/3.0: before initialisation only inputs and variables with an exact/approx start
        # may be set; a calculated variable or a constant would be rejected by the FMU.
        if v.causality not in ("parameter", "input") and v.initial not in ("exact", "approx"):
            raise UserError(f"{self.label}: {where}: {name!r} (causality {v.causality}, initial "
                            f"{v.initial}) cannot be given a start value")
        if v.variability == "constant":
            raise UserError(f"{self.label}: {where}: {name!r} is a constant")
        if v.type not in SETTABLE_TYPES:
            raise UserError(f"{self.label}: {where}: {name!r} is of type {v.type}; only "
                            f"{', '.join(SETTABLE_TYPES)} start values are supported")
        return Variable(name, int(v.valueReference), TYPES[v.type], _declared(v.min),
                        _declared(v.max))


def _declared(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def read_description(fmu: Any) -> tuple[Any, str]:
    """fmpy's model description of ``fmu`` (a path), and its label; bad files are UserErrors."""
    from fmpy import read_model_description

    if not isinstance(fmu, (str, Path)):
        raise UserError(f"SafeTRPO/FMU-v0: fmu: expected a path (give it as [env] data_files = "
                        f"{{ fmu = \"plant.fmu\" }}), got {fmu!r}")
    path = Path(fmu)
    label = path.name
    if not path.is_file():
        raise UserError(f"{path}: FMU file not found")
    try:
        md = read_model_description(str(path), validate=True)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise UserError(f"{label}: not an FMU (a zip with modelDescription.xml): {exc}") from None
    except Exception as exc:  # lxml / fmpy validation errors have no common base
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{label}: invalid modelDescription.xml: {first}") from None
    if md.fmiVersion not in ("2.0", "3.0"):
        raise UserError(f"{label}: FMI version {md.fmiVersion}; SafeTRPO/FMU-v0 runs FMI 2.0 "
                        f"and 3.0 co-simulation FMUs")
    if md.coSimulation is None:
        raise UserError(f"{label}: the FMU has no co-simulation interface (model exchange "
                        f"only); export it for co-simulation")
    return md, label


def parse_spec(fmu: Any, step_size: Any, episode_steps: Any, actions: Any, observations: Any,
               reward: Any, costs: Any = None, start_values: Any = None, randomize: Any = None,
               start_time: Any = 0.0) -> FMUSpec:
    """Validate the ``[env.kwargs]`` of ``SafeTRPO/FMU-v0`` against the FMU; see ``FMUEnv``."""
    md, label = read_description(fmu)
    model = _Model(md, label)
    h = _number(step_size, f"{label}: step_size")
    if h <= 0:
        raise UserError(f"{label}: step_size: expected model seconds > 0, got {step_size!r}")
    if isinstance(episode_steps, bool) or not isinstance(episode_steps, int) or episode_steps < 1:
        raise UserError(f"{label}: episode_steps: expected an integer >= 1, got {episode_steps!r}")
    return FMUSpec(
        path=str(Path(fmu).resolve()), label=label, fmi_version=md.fmiVersion, guid=md.guid,
        model_identifier=md.coSimulation.modelIdentifier,
        once_per_process=bool(md.coSimulation.canBeInstantiatedOnlyOncePerProcess),
        step_size=h, episode_steps=episode_steps,
        start_time=_number(start_time, f"{label}: start_time"),
        actions=_actions(model, actions), observations=_observations(model, observations),
        reward=_reward(model, reward), costs=_costs(model, costs),
        start_values=_start_values(model, start_values),
        randomize=_randomize(model, randomize))


def _actions(model: _Model, actions: Any) -> tuple[Variable, ...]:
    if not isinstance(actions, list) or not actions:
        raise UserError(f"{model.label}: actions: expected a non-empty list of "
                        f"{{ name, low, high }} tables")
    out = []
    for i, item in enumerate(actions):
        where = f"actions[{i}]"
        t = _table(item, f"{model.label}: {where}", ("name", "low", "high"))
        var = model.real(t["name"], where, ("input",), "the policy sets FMU inputs")
        low = _number(t["low"], f"{model.label}: {where}.low")
        high = _number(t["high"], f"{model.label}: {where}.high")
        if not low < high:
            raise UserError(f"{model.label}: {where}: expected low < high, got {low} >= {high}")
        if var.low is not None and low < var.low or var.high is not None and high > var.high:
            raise UserError(f"{model.label}: {where}: [{low}, {high}] leaves the declared "
                            f"range [{var.low}, {var.high}] of {var.name!r}")
        out.append(Variable(var.name, var.vr, "Real", low, high))
    if len({v.name for v in out}) != len(out):
        raise UserError(f"{model.label}: actions: an input is listed twice")
    return tuple(out)


def _observations(model: _Model, observations: Any) -> tuple[Variable, ...]:
    if not isinstance(observations, list) or not observations:
        raise UserError(f"{model.label}: observations: expected a non-empty list of names or "
                        f"{{ name, low, high }} tables")
    out = []
    for i, item in enumerate(observations):
        where = f"observations[{i}]"
        if isinstance(item, dict):
            t = _table(item, f"{model.label}: {where}", ("name",), ("low", "high"))
            var = model.real(t["name"], where, READABLE, "observations read outputs or states")
            if ("low" in t) != ("high" in t):
                raise UserError(f"{model.label}: {where}: give both low and high, or neither")
            if "low" in t:
                low = _number(t["low"], f"{model.label}: {where}.low")
                high = _number(t["high"], f"{model.label}: {where}.high")
                if not low < high:
                    raise UserError(f"{model.label}: {where}: expected low < high")
                var = Variable(var.name, var.vr, "Real", low, high)
        else:
            var = model.real(item, where, READABLE, "observations read outputs or states")
        if var.low is None or var.high is None or not var.low < var.high:
            var = Variable(var.name, var.vr, "Real")  # raw units; the trainer normalises
        out.append(var)
    return tuple(out)


def _reward(model: _Model, reward: Any) -> Reward:
    where = f"{model.label}: reward"
    if isinstance(reward, dict) and "output" in reward:
        t = _table(reward, where, ("output",))
        return Reward("output", model.real(t["output"], "reward.output", READABLE, "a reward"))
    if isinstance(reward, dict) and "track" in reward:
        t = _table(reward, where, ("track", "setpoint"), ("scale",))
        scale = _number(t.get("scale", 1.0), f"{where}.scale")
        if scale <= 0:
            raise UserError(f"{where}.scale: expected a number > 0, got {scale}")
        return Reward("track", model.real(t["track"], "reward.track", READABLE, "a reward"),
                      _number(t["setpoint"], f"{where}.setpoint"), scale)
    raise UserError(f"{where}: expected {{ output = NAME }} or {{ track = NAME, setpoint = X, "
                    f"scale = S }}, got {reward!r}")


def _costs(model: _Model, costs: Any) -> tuple[Cost, ...]:
    if costs is None:
        return ()
    if not isinstance(costs, dict):
        raise UserError(f"{model.label}: costs: expected a table name -> {{ output = NAME }}")
    out = []
    for name, item in costs.items():
        where = f"costs.{name}"
        if not name.isidentifier():
            raise UserError(f"{model.label}: {where}: a cost name must be a plain identifier")
        t = _table(item, f"{model.label}: {where}", ("output",), ("above", "below"))
        if "above" in t and "below" in t:
            raise UserError(f"{model.label}: {where}: give above or below, not both (use two "
                            f"costs)")
        var = model.real(t["output"], f"{where}.output", READABLE, "a cost")
        above = _number(t["above"], f"{model.label}: {where}.above") if "above" in t else None
        below = _number(t["below"], f"{model.label}: {where}.below") if "below" in t else None
        out.append(Cost(name, var, above, below))
    return tuple(out)


def _start_values(model: _Model, values: Any) -> tuple[tuple[Variable, float], ...]:
    if values is None:
        return ()
    if not isinstance(values, dict):
        raise UserError(f"{model.label}: start_values: expected a table NAME = value")
    out = []
    for name, value in values.items():
        var = model.settable(name, f"start_values.{name}")
        out.append((var, _number(value, f"{model.label}: start_values.{name}")))
    return tuple(out)


def _randomize(model: _Model, ranges: Any) -> tuple[tuple[Variable, float, float], ...]:
    if ranges is None:
        return ()
    if not isinstance(ranges, dict):
        raise UserError(f"{model.label}: randomize: expected a table NAME = [low, high]")
    out = []
    for name, bounds in ranges.items():
        where = f"{model.label}: randomize.{name}"
        var = model.settable(name, f"randomize.{name}")
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise UserError(f"{where}: expected [low, high], got {bounds!r}")
        low, high = (_number(b, where) for b in bounds)
        if low > high:
            raise UserError(f"{where}: expected low <= high, got [{low}, {high}]")
        out.append((var, low, high))
    return tuple(out)
