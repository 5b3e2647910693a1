"""What a scenario author needs to know about an environment, kept next to its code.

Each environment module defines ``ENV_INFO = EnvInfo(...)``: its cost names (what a
``[[constraints]] name`` may be) with the meaning and unit of their episode sums, the dataclass
of its constructor kwargs (defaults from the fields, meaning and unit from each field's
docstring), its episode length and an example scenario. ``safe-trpo envs`` prints it, and a
scenario naming a cost the environment does not have is refused before a run folder exists.

Found through Gymnasium's own registry (an id's entry point names the module), so there is no
second registry to keep in step.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class KwargDoc:
    name: str
    default: Any
    doc: str  # the field's docstring: meaning, unit and usual range


@dataclass(frozen=True)
class EnvInfo:
    """One environment's authoring facts.

    env_id: the registered Gymnasium id.
    summary: one line on what the environment is.
    costs: cost name -> what one step's cost is, and what the episode sum means (with its
        unit). ``"cost"`` (``info["cost"]``, the sum of the named costs) is always allowed.
    kwargs: the frozen dataclass of constructor kwargs (``[env] kwargs``), or None.
    episode: the episode length in words, naming the kwargs that set it.
    example: scenario lines that use the environment.
    costs_from_kwarg: when the cost names are chosen by the scenario (e.g. an FMU's outputs), the
        kwarg that names them (a list of names or a table keyed by name); ``costs`` then only
        describes them.
    advice: kwargs -> warnings for a scenario that loads but is likely a mistake.
    """

    env_id: str
    summary: str
    costs: dict[str, str]
    kwargs: type | None
    episode: str
    example: str
    costs_from_kwarg: str | None = None
    advice: Callable[[dict[str, Any]], list[str]] | None = field(default=None, compare=False)

    def cost_names(self, kwargs: dict[str, Any]) -> tuple[str, ...] | None:
        """The cost names a scenario with these kwargs may constrain; None: cannot tell (the
        naming kwarg is missing or malformed; the environment itself will refuse it)."""
        if self.costs_from_kwarg is None:
            return ("cost", *self.costs)
        named = kwargs.get(self.costs_from_kwarg)
        if isinstance(named, dict):
            return ("cost", *map(str, named))
        if isinstance(named, (list, tuple)) and all(isinstance(n, str) for n in named):
            return ("cost", *named)
        return None

    def cost_unit(self, name: str) -> str | None:
        """The unit of ``name``'s episode sum: the last parenthesis of its ``costs`` text."""
        text = self.costs.get(name, "").rstrip()
        if not text.endswith(")") or "(" not in text:
            return None
        return text[text.rindex("(") + 1:-1] or None

    def kwarg_docs(self) -> list[KwargDoc]:
        """Every constructor kwarg with its default and docstring (empty if undocumented)."""
        if self.kwargs is None:
            return []
        docs = _field_docstrings(self.kwargs)
        out = []
        for f in dataclasses.fields(self.kwargs):
            default = (f.default if f.default is not dataclasses.MISSING else
                       f.default_factory() if f.default_factory is not dataclasses.MISSING
                       else "(required)")
            out.append(KwargDoc(f.name, default, docs.get(f.name, "")))
        return out


def _field_docstrings(cls: type) -> dict[str, str]:
    """The string literal after each annotated field of a class body (attribute docstrings,
    which Python parses but does not keep)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str):
            out[node.target.id] = " ".join(after.value.value.split())
    return out


def _entry_module(env_id: str) -> str | None:
    """The module an id's environment lives in: a registered id's entry point, or the module
    part of a ``module:Class`` id."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the SafeTRPO/* environments)

    if env_id in gym.registry:
        entry = gym.spec(env_id).entry_point
        target = entry if isinstance(entry, str) else getattr(entry, "__module__", None)
    elif ":" in env_id:
        target = env_id
    else:
        return None
    return target.partition(":")[0] if target else None


def _may_import(module_name: str, env_id: str) -> bool:
    """Only what is imported anyway: the module of a registered id (registered by code already
    running), this project's ``envs``, or a module already loaded. An id read from a scenario or
    a received record never makes this lookup import anything else (the report and the review
    app call it on such ids); building the environment is where trust is checked."""
    registered = ":" not in env_id
    shipped = module_name == "envs" or module_name.startswith("envs.")
    return registered or shipped or module_name in sys.modules


def env_info(env_id: str) -> EnvInfo | None:
    """The ``EnvInfo`` of ``env_id``, or None when its module does not define one, cannot be
    imported (building the environment reports that) or may not be imported here."""
    module_name = _entry_module(env_id)
    while module_name:
        if not _may_import(module_name, env_id):
            return None
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001  (a broken third-party module: make_env says why)
            return None
        info = getattr(module, "ENV_INFO", None)
        # A package's ENV_INFO may be another env's: a registered id must match its own.
        if info is not None and (":" in env_id or getattr(info, "env_id", None) == env_id):
            return info
        module_name = module_name.rpartition(".")[0]  # then the package that holds it
    return None


def cost_units(env_id: Any) -> dict[str, str]:
    """Cost name -> unit of its episode sum, from ``env_id``'s ``ENV_INFO``; empty when the id
    is not a string, the environment does not say, or it cannot be looked up here (the report
    and the review app then draw without units)."""
    if not isinstance(env_id, str):
        return {}
    try:
        info = env_info(env_id)
    except Exception:  # noqa: BLE001  (a broken third-party registration: no units, no crash)
        return {}
    return {} if info is None else {n: u for n in info.costs if (u := info.cost_unit(n))}
