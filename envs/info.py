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
import inspect
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
