"""Scenarios: one TOML file fixes environment, constraints, algorithm and run.

A scenario loads into the frozen dataclasses below. Each field's default, unit and usual range
live in one place, its ``metadata``; ``describe_fields`` prints them. Loading refuses unknown keys,
wrong types and out-of-range values with one line naming the file and the key. The resolved
scenario (``scenario_to_dict``) is what the audit record stores, so a run can be re-created from
its record alone (``scenario_from_dict``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from safe_trpo.errors import UserError

ALGORITHMS = ("trpo", "cpo", "trpo-lag")
# torch seeds are 64-bit; resumed runs add an offset to the seed, so keep well below 2**64.
MAX_SEED = 2**63 - 1
# Network size limits: far beyond any policy this project trains, well below what would make
# torch try to allocate terabytes (a typo like 1000000 gets a message, not an allocator crash).
MAX_WIDTH, MAX_LAYERS = 4096, 8


def _f(default: Any, help_: str, *, gt: float | None = None, ge: float | None = None,
       le: float | None = None, lt: float | None = None, choices: tuple = ()) -> Any:
    """A dataclass field with its documentation and validation range."""
    meta = {"help": help_, "gt": gt, "ge": ge, "le": le, "lt": lt, "choices": choices}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class EnvConfig:
    id: str = _f("", "Registered Gymnasium id (e.g. 'Pendulum-v1'), or 'module:EnvId-vN' / "
                     "'module:Class' from a module the user trusts (--trust-module).")
    num_envs: int = _f(8, "Parallel env copies; 4-64. Native vector envs step them in one call.",
                       ge=1, le=100_000)
    kwargs: dict = _f({}, "Keyword arguments passed to the environment constructor; "
                          "`safe-trpo envs` lists them with defaults and units.")
    data_files: dict = _f({}, "Data files the env reads, name -> path relative to the scenario "
                              "file; passed to the env as kwargs (absolute) and hashed into "
                              "the audit record.")
    vectorization: str = _f("auto", "'auto' uses the env's native vector env if registered, "
                                     "else Gymnasium's SyncVectorEnv; 'sync' forces the latter.",
                            choices=("auto", "sync"))
    backend: str = _f("local", "Where the env copies run: 'local' (this process, or worker "
                               "processes for SafeTRPO/FMU-v0) or 'ray' (Ray actors on the "
                               "cluster at RAY_ADDRESS, else a local Ray instance).",
                      choices=("local", "ray"))


@dataclass(frozen=True)
class AlgoConfig:
    name: str = _f("trpo", "Policy step: 'trpo', 'cpo' (constrained) or 'trpo-lag' "
                           "(Lagrangian baseline).", choices=ALGORITHMS)
    target_kl: float = _f(0.01, "Trust region: max mean KL(old||new) per update; 0.001-0.05. "
                                "Larger = bigger, riskier steps.", gt=0, le=1)
    gamma: float = _f(0.99, "Reward discount; 0.95-0.999. Closer to 1 = longer horizon.",
                      gt=0, le=1)
    gae_lambda: float = _f(0.95, "GAE lambda; 0.9-1. Lower = less variance, more bias.",
                           ge=0, le=1)
    steps_per_update: int = _f(2048, "Env steps per policy update, all copies together; a "
                                     "multiple of num_envs. 1000-50000.", ge=1)
    total_steps: int = _f(100_000, "Env steps for the whole run.", ge=1)
    hidden_sizes: list = _f([64, 64], "Hidden layer widths of policy and critics.")
    activation: str = _f("tanh", "Hidden activation.", choices=("tanh", "relu"))
    init_log_std: float = _f(-0.5, "Initial log std of the Gaussian policy (Box actions); "
                                   "-1.5 to 0.5.", ge=-5, le=2)
    cg_iters: int = _f(10, "Conjugate-gradient iterations per solve; 10-20.", ge=1, le=200)
    cg_damping: float = _f(0.1, "Damping added to the Fisher matrix (F + damping*I) so CG is "
                                "well posed when F is near singular; 0.01-0.1. Raise it if "
                                "steps are erratic.", gt=0)
    backtrack_iters: int = _f(10, "Line-search tries before the step is rejected.", ge=1, le=50)
    backtrack_coeff: float = _f(0.8, "Step shrink factor per line-search try.", gt=0, lt=1)
    critic_lr: float = _f(1e-3, "Adam learning rate of the value and cost critics.", gt=0)
    critic_epochs: int = _f(10, "Passes over the batch per update for each critic.", ge=1)
    critic_minibatch: int = _f(128, "Critic minibatch size.", ge=1)
    normalize_obs: bool = _f(True, "Running mean/var observation normalisation (saved with "
                                   "the model).")
    normalize_advantages: bool = _f(True, "Standardise reward advantages per batch.")
    lagrange_lr: float = _f(0.05, "trpo-lag: multiplier step per unit of episode-cost excess.",
                            ge=0)
    lagrange_init: float = _f(0.0, "trpo-lag: initial multiplier value.", ge=0)
    cost_gae_lambda: float = _f(0.95, "GAE lambda of the cost advantages.", ge=0, le=1)


@dataclass(frozen=True)
class ConstraintConfig:
    name: str = _f("", "Cost name: read from info['cost_<name>'] (info['cost'] if 'cost'); "
                       "`safe-trpo envs` lists each environment's cost names.")
    limit: float = _f(0.0, "Budget on the undiscounted episode sum of this cost.", ge=0)
    cost_gamma: float | None = _f(1.0, "Discount of this cost's critic and advantages. 1.0 "
                                       "(default): the limit budgets the undiscounted episode "
                                       "sum, so the cost is not discounted; lower it only to "
                                       "trade that exactness for variance. null: algo.gamma.",
                                  gt=0, le=1)
    horizon: float | None = _f(None, "Episode length (steps) the limit is budgeted over, for "
                                     "CPO's per-step margin limit / horizon. Default: the mean "
                                     "length of recently finished episodes, else the env's "
                                     "max_episode_steps; required when neither exists.", gt=0)

    @property
    def info_key(self) -> str:
        return "cost" if self.name == "cost" else f"cost_{self.name}"


@dataclass(frozen=True)
class RunConfig:
    seed: int = _f(0, "Seeds torch, numpy and the environments; 0 to 2**63-1.", ge=0,
                   le=MAX_SEED)
    out_dir: str = _f("reports", "Folder in which each run gets its own run folder; relative "
                                 "to the scenario file's folder, like data_files (unset: "
                                 "./reports in the current directory; --out: relative to the "
                                 "current directory).")
    name: str = _f("", "Run-name prefix (one folder-name component: no path separators, "
                       "not '.' or '..'); defaults to the scenario file's stem.")
    checkpoint_every: int = _f(10, "Checkpoint interval in updates (always at the end).", ge=1)
    torch_threads: int = _f(1, "torch intra-op threads; 1 keeps runs reproducible and lets "
                               "sweeps run side by side.", ge=1, le=64)
    ledger: str = _f("", "Ledger anchoring every record line: '' = <out_dir>/ledger.sqlite, a "
                         "path, or postgresql://user@host/db (password via PGPASSWORD/.pgpass, "
                         "never here). See docs/audit.md.")


@dataclass(frozen=True)
class EvalConfig:
    episodes: int = _f(10, "Episodes per evaluation.", ge=1)
    seed: int = _f(1_000_000, "First seed of the evaluation episodes (fresh, not training's).",
                   ge=0, le=MAX_SEED)


@dataclass(frozen=True)
class Scenario:
    env: EnvConfig
    algo: AlgoConfig
    constraints: tuple[ConstraintConfig, ...]
    run: RunConfig
    eval: EvalConfig
    source: str = ""  # the file it came from (not part of the resolved record)

    @property
    def planned_updates(self) -> int:
        return math.ceil(self.algo.total_steps / self.algo.steps_per_update)


_SECTIONS = {"env": EnvConfig, "algo": AlgoConfig, "run": RunConfig, "eval": EvalConfig}


def _check_value(where: str, f: dataclasses.Field, value: Any) -> Any:
    hint = typing.get_type_hints(_OWNER[id(f)])[f.name]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    base = next(t for t in allowed if t is not type(None))
    base = typing.get_origin(base) or base
    ok = (isinstance(value, base) and not (base in (int, float) and isinstance(value, bool))) \
        or (base is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise UserError(f"{where}: expected {base.__name__}, got {type(value).__name__} "
                        f"{value!r}")
    if base is float:
        value = float(value)
        if not math.isfinite(value):
            raise UserError(f"{where}: expected a finite number, got {value!r}")
    meta = f.metadata
    for key, test, word in (("gt", lambda a, b: a > b, ">"), ("ge", lambda a, b: a >= b, ">="),
                            ("lt", lambda a, b: a < b, "<"), ("le", lambda a, b: a <= b, "<=")):
        if meta.get(key) is not None and not test(value, meta[key]):
            raise UserError(f"{where}: expected a value {word} {meta[key]}, got {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise UserError(f"{where}: expected one of {', '.join(map(repr, meta['choices']))}, "
                        f"got {value!r}")
    return value


_OWNER = {id(f): cls for cls in (*_SECTIONS.values(), ConstraintConfig)
          for f in dataclasses.fields(cls)}


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise UserError(f"{where}: expected a table, got {type(table).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise UserError(f"{where}: unknown key '{key}' (expected one of "
                            f"{', '.join(fields)})")
        values[key] = _check_value(f"{where}.{key}", fields[key], value)
    return cls(**values)


def scenario_from_dict(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a parsed scenario and build the frozen dataclasses."""
    unknown = set(data) - {*_SECTIONS, "constraints"}
    if unknown:
        raise UserError(f"{source}: unknown section '{sorted(unknown)[0]}' (expected env, algo, "
                        f"constraints, run, eval)")
    if "env" not in data or "id" not in data["env"]:
        raise UserError(f"{source}: [env] id is required (a Gymnasium id or 'module:Class')")
    sections = {name: _build(cls, data.get(name, {}), f"{source}: [{name}]")
                for name, cls in _SECTIONS.items()}
    raw_constraints = data.get("constraints", [])
    if not isinstance(raw_constraints, list):
        raise UserError(f"{source}: constraints must be an array of tables [[constraints]]")
    constraints = []
    for i, item in enumerate(raw_constraints):
        where = f"{source}: [[constraints]] #{i + 1}"
        if not isinstance(item, dict) or "name" not in item or "limit" not in item:
            raise UserError(f"{where}: needs 'name' and 'limit'")
        constraints.append(_build(ConstraintConfig, item, where))
    names = [c.name for c in constraints]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: constraint names must be unique, got {names}")
    scenario = Scenario(constraints=tuple(constraints), source=source, **sections)
    _check_consistency(scenario, source)
    return scenario


def _check_consistency(s: Scenario, source: str) -> None:
    if s.algo.steps_per_update % s.env.num_envs:
        raise UserError(f"{source}: [algo] steps_per_update ({s.algo.steps_per_update}) must be "
                        f"a multiple of [env] num_envs ({s.env.num_envs})")
    if s.algo.name in ("cpo", "trpo-lag") and not s.constraints:
        raise UserError(f"{source}: [algo] name = '{s.algo.name}' needs at least one "
                        f"[[constraints]] table")
    if not all(isinstance(h, int) and not isinstance(h, bool) and 0 < h <= MAX_WIDTH
               for h in s.algo.hidden_sizes) \
            or not 0 < len(s.algo.hidden_sizes) <= MAX_LAYERS:
        raise UserError(f"{source}: [algo] hidden_sizes: expected 1 to {MAX_LAYERS} integers "
                        f"from 1 to {MAX_WIDTH}, got {s.algo.hidden_sizes!r}"[:300])
    check_run_name(s.run.name, f"{source}: [run] name")
    for key, value in s.env.data_files.items():
        if not isinstance(value, str):
            raise UserError(f"{source}: [env.data_files] {key}: expected a path string")
        if not Path(value).is_file():
            raise UserError(f"{source}: [env.data_files] {key}: file not found: {value}")
        if key in s.env.kwargs:
            raise UserError(f"{source}: '{key}' is in both [env.kwargs] and [env.data_files]")


def check_run_name(name: str, where: str) -> None:
    """A run name becomes part of a folder name under ``out_dir``: it must be one path
    component, or a scenario could write anywhere (``name = "../../x"``)."""
    bad = ("/" in name or "\\" in name or "\0" in name or name in (".", "..")
           or any(ord(c) < 32 for c in name) or len(name) > 100)
    if bad:
        raise UserError(f"{where}: expected one folder-name component (no '/', '\\', control "
                        f"characters, '.' or '..'; at most 100 characters), got {name!r}")


def apply_override(data: dict[str, Any], assignment: str, source: str = "--set") -> None:
    """Apply one ``section.key=value`` (or ``constraints.<name>.key=value``) in place.

    The value is parsed as a TOML value (``0.02``, ``true``, ``[32, 32]``, ``"x"``); a bare word
    that is not valid TOML is taken as a string, so ``--set env.id=Pendulum-v1`` works.
    """
    path, sep, raw = assignment.partition("=")
    if not sep or "." not in path:
        raise UserError(f"{source} {assignment!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise UserError(f"{source} {assignment!r}: value nested too deeply") from None
    keys = path.split(".")
    if keys[0] == "constraints":
        if len(keys) != 3:
            raise UserError(f"{source} {assignment!r}: expected constraints.<name>.<key>=value")
        match = [c for c in data.get("constraints", []) if c.get("name") == keys[1]]
        if not match:
            raise UserError(f"{source} {assignment!r}: no constraint named '{keys[1]}'")
        match[0][keys[2]] = value
        return
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"{source} {assignment!r}: '{key}' is not a table")
    node[keys[-1]] = value


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read, override, validate. Data-file paths are resolved against the scenario's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: scenario file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read scenario ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib recurses once per nesting level
        raise UserError(f"{path}: not a usable scenario (arrays or tables nested too "
                        f"deeply)") from None
    for section in ("env", "algo", "run", "eval"):
        if section in data and not isinstance(data[section], dict):
            raise UserError(f"{path}: [{section}] must be a table, got "
                            f"{type(data[section]).__name__}")
    # Paths written in the file resolve against the file's folder; paths given on the command
    # line (overrides, --out) against the current directory, as any command-line path.
    _resolve_paths(data, path.parent.resolve())
    for assignment in overrides:
        apply_override(data, assignment)
    _resolve_paths(data, Path.cwd())
    data.setdefault("run", {}).setdefault("name", path.stem)
    return scenario_from_dict(data, source=str(path))


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make ``[env.data_files]`` values and ``[run] out_dir`` absolute against ``base`` (those
    already absolute stay as they are; values of the wrong type are left for validation)."""
    env = data.get("env")
    files = env.get("data_files") if isinstance(env, dict) else None
    if isinstance(files, dict):
        for key, value in files.items():
            if isinstance(value, str):
                files[key] = str((base / value).resolve())
    run = data.get("run")
    if isinstance(run, dict) and isinstance(run.get("out_dir"), str):
        run["out_dir"] = str((base / run["out_dir"]).resolve())


def scenario_to_dict(s: Scenario) -> dict[str, Any]:
    """The resolved scenario, as recorded in the audit (no source path)."""
    out = dataclasses.asdict(s)
    out.pop("source")
    out["constraints"] = list(out["constraints"])
    return out


def data_file_hashes(s: Scenario) -> list[dict[str, str]]:
    result = []
    for key, value in sorted(s.env.data_files.items()):
        digest = hashlib.sha256(Path(value).read_bytes()).hexdigest()
        result.append({"name": key, "path": value, "sha256": digest})
    return result


def describe_fields() -> str:
    """Every scenario key with its default and explanation (for ``safe-trpo keys``)."""
    lines = []
    for section, cls in (*_SECTIONS.items(), ("[constraints]", ConstraintConfig)):
        lines.append(f"[{section.strip('[]')}]")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  {f.name} = {default!r}\n      {f.metadata['help']}")
    return "\n".join(lines)
