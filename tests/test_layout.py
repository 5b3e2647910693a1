"""The package's layout rules, read from the source with ``ast`` (nothing is imported).

Edges are the imports a module executes: at its top and inside functions (a lazy import still
ties the importer to the imported package). Imports under ``if TYPE_CHECKING:`` never run: the
direction rules leave them out, the cycle check counts them too. Each rule is a function over a
module graph, so the tests below also run it on a small synthetic tree with one violation of
each kind, to show the rule fails when it should.

Print the graph (subpackages with line counts, edges between them, cycles):
``python -m tests.test_layout``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("safe_trpo", "envs")
LINE_LIMITED = ("safe_trpo", "envs", "tests", "benchmarks")
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 8
SUBPACKAGES = ("algo", "run", "record", "report", "review", "sweep", "finance")

Graph = dict[str, set[str]]  # module -> modules (of the tree) and third-party names it imports


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, with_typing: bool) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, and with ``with_typing`` also those under
    ``if TYPE_CHECKING:`` (annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if not with_typing and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_names(path: Path, module: str, with_typing: bool = False
                   ) -> set[tuple[str, str]]:
    """``(dotted base, imported name)`` for each name ``path`` imports: ``import a.b`` gives
    ``("a.b", "")``, ``from a.b import c`` gives ``("a.b", "c")``; relative imports are resolved
    against ``module``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[tuple[str, str]] = set()
    for node in _imports(tree, with_typing):
        if isinstance(node, ast.Import):
            names.update((alias.name, "") for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            anchor = parts[: len(parts) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        names.update((base, alias.name) for alias in node.names)
    return names


def build_graph(root: Path, packages: Iterable[str] = SOURCE_PACKAGES,
                with_typing: bool = False) -> Graph:
    """Module -> what it imports: the module of the tree an import names (``from pkg import
    mod`` is an edge to ``pkg.mod``, ``from pkg.mod import f`` to ``pkg.mod``), or the dotted
    name itself when it is outside the tree (``torch``, ``numpy.linalg``). Imports under
    ``if TYPE_CHECKING:`` count only with ``with_typing``."""
    files = {module_name(p, root): p
             for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    graph: Graph = {}
    for module, path in files.items():
        targets = set()
        for base, name in imported_names(path, module, with_typing):
            if f"{base}.{name}" in files:
                targets.add(f"{base}.{name}")
            elif base in files or base.split(".")[0] not in packages:
                targets.add(base)
            else:
                raise AssertionError(f"{module}: import of {base!r}, which is not in the tree")
        targets.discard(module)
        graph[module] = targets
    return graph


def internal(graph: Graph) -> Graph:
    return {m: {t for t in targets if t in graph} for m, targets in graph.items()}


def find_cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    edges = internal(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def direction_violations(graph: Graph) -> list[str]:
    """The dependency rules of the layout, as ``importer -> imported (rule)`` lines."""
    forbidden = {  # importer package: packages it must never import
        "safe_trpo.algo": [f"safe_trpo.{p}" for p in ("run", "record", "report", "review",
                                                      "sweep", "finance")],
        "safe_trpo.record": ["safe_trpo.algo", "safe_trpo.run", "torch"],
        "safe_trpo.report": ["safe_trpo.algo", "safe_trpo.run"],
        "safe_trpo.review": ["safe_trpo.algo", "safe_trpo.run"],
    }
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            for package, banned in forbidden.items():
                if _in(module, package) and any(_in(target, b) for b in banned):
                    found.append(f"{module} -> {target} ({package} may not import it)")
            if _in(module, "envs") and _in(target, "safe_trpo") and target != "safe_trpo.errors":
                found.append(f"{module} -> {target} (envs import only safe_trpo.errors)")
    return found


def long_files(root: Path, folders: Iterable[str] = LINE_LIMITED) -> list[str]:
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            n = len(path.read_text().splitlines())
            if n > MAX_LINES:
                found.append(f"{path.relative_to(root)}: {n} lines")
    return found


def packages_without_docstring(root: Path, packages: Iterable[str] = SOURCE_PACKAGES
                               ) -> list[str]:
    found = []
    for package in packages:
        for init in sorted((root / package).rglob("*/__init__.py")):  # its subpackages
            doc = ast.get_docstring(ast.parse(init.read_text()))
            if not doc or len(doc.split()) < 20:  # a paragraph, not a title
                found.append(str(init.relative_to(root)))
    return found


def top_level_modules(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "safe_trpo").glob("*.py"))


# ----------------------------------------------------------------------------- the real tree


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(ROOT)


def test_no_import_cycles() -> None:
    # Annotation-only imports count here: a cycle through them is still two modules that
    # each need the other (the three cycles of the old flat layout were of that kind).
    graph = build_graph(ROOT, with_typing=True)
    assert len(graph) > 40  # the walk found the modules
    assert find_cycles(graph) == []


def test_dependencies_point_one_way(graph: Graph) -> None:
    assert "torch" in graph["safe_trpo.algo.trpo"]  # third-party imports are seen
    assert direction_violations(graph) == []


def test_no_file_over_400_lines() -> None:
    assert long_files(ROOT) == []


def test_at_most_8_modules_directly_in_the_package() -> None:
    modules = top_level_modules(ROOT)
    assert "cli.py" in modules and len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_every_package_says_what_lives_there() -> None:
    assert {p for p in SUBPACKAGES if (ROOT / "safe_trpo" / p / "__init__.py").is_file()} \
        == set(SUBPACKAGES)
    assert packages_without_docstring(ROOT) == []


def test_tests_mirror_the_subpackages() -> None:
    assert {p for p in SUBPACKAGES if (ROOT / "tests" / p).is_dir()} == set(SUBPACKAGES)


# ----------------------------------------------------------------------------- the checks fail


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checks_catch_each_kind_of_violation(tmp_path: Path) -> None:
    doc = '"""' + "word " * 25 + '"""\n'
    root = _tree(tmp_path, {
        "safe_trpo/__init__.py": doc,
        "safe_trpo/errors.py": "",
        "safe_trpo/algo/__init__.py": doc,
        "safe_trpo/algo/a.py": "from safe_trpo.algo import b\n",
        "safe_trpo/algo/b.py": "def f():\n    from . import a\n",  # a lazy, relative cycle
        "safe_trpo/algo/c.py": "def f():\n    from safe_trpo.record.log import write\n",
        "safe_trpo/record/__init__.py": '"""Too short."""\n',
        "safe_trpo/record/log.py": "from typing import TYPE_CHECKING\nimport torch.nn\n"
                                   "if TYPE_CHECKING:\n    from safe_trpo.run import x\n",
        "safe_trpo/run/__init__.py": doc,
        "safe_trpo/run/x.py": "import safe_trpo.algo.c\n" + "\n" * MAX_LINES,
        "envs/__init__.py": doc,
        "envs/e.py": "from safe_trpo.errors import UserError\nfrom safe_trpo.algo import a\n",
    })
    graph = build_graph(root)
    assert find_cycles(graph) == [["safe_trpo.algo.a", "safe_trpo.algo.b"]]
    assert find_cycles(build_graph(root, with_typing=True)) == [
        ["safe_trpo.algo.a", "safe_trpo.algo.b"],
        ["safe_trpo.algo.c", "safe_trpo.record.log", "safe_trpo.run.x"]]
    assert direction_violations(graph) == [
        "envs.e -> safe_trpo.algo.a (envs import only safe_trpo.errors)",
        "safe_trpo.algo.c -> safe_trpo.record.log (safe_trpo.algo may not import it)",
        "safe_trpo.record.log -> torch.nn (safe_trpo.record may not import it)",
    ]  # and the TYPE_CHECKING import of run is not counted
    assert long_files(root, ["safe_trpo"]) == [f"safe_trpo/run/x.py: {MAX_LINES + 1} lines"]
    assert packages_without_docstring(root) == ["safe_trpo/record/__init__.py"]


def main() -> None:
    """Print each subpackage with its modules' line counts, the edges between subpackages,
    and the cycles."""
    graph = build_graph(ROOT)

    def package_of(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "safe_trpo" and len(parts) > 2 or (
            len(parts) == 2 and (ROOT / "safe_trpo" / parts[1]).is_dir()) else (
            "envs" if parts[0] == "envs" else "safe_trpo (top level)")

    by_package: dict[str, list[str]] = {}
    for module in graph:
        by_package.setdefault(package_of(module), []).append(module)
    for package, modules in sorted(by_package.items()):
        lines = {m: len(_path(m).read_text().splitlines()) for m in modules}
        uses = sorted({package_of(t) for m in modules for t in internal(graph)[m]} - {package})
        print(f"{package}: {len(modules)} modules, {sum(lines.values())} lines, "
              f"largest {max(lines.values())}; imports {', '.join(uses) or 'nothing internal'}")
        print("    " + ", ".join(f"{m.rpartition('.')[2] or m}={n}"
                                 for m, n in sorted(lines.items())))
    print(f"modules: {len(graph)}; cycles: {len(find_cycles(graph))} "
          f"({len(find_cycles(build_graph(ROOT, with_typing=True)))} counting imports under "
          "TYPE_CHECKING); "
          f"direction violations: {len(direction_violations(graph))}; "
          f"files over {MAX_LINES} lines: {len(long_files(ROOT))}")


def _path(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


if __name__ == "__main__":
    main()
