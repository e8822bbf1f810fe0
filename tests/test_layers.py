"""Imports only point down: the import graph of src/mlxtune, read with `ast`, has no circle and
no import that climbs from a lower floor to a higher one.

Every import counts: at module level, inside functions (the lazy ones), under TYPE_CHECKING, and
the names that `mlxtune.api` resolves lazily from its `_NAMES` table. The registry's
`DEFAULT_PLUGINS` are not imports: built-ins are loaded by name, the way third-party plugins are.

A floor holds top-level modules and packages of mlxtune (a package is one unit: its files may
import each other, without a circle). A unit may import only units on lower floors; a new module
or package must be given a floor here, where a reader sees the whole house at once.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mlxtune"

# bottom to top; "__init__" is the package's own front (mlxtune.load_recipe, run_recipe, ask)
FLOORS: tuple[tuple[str, ...], ...] = (
    # depends on nothing of ours
    ("errors", "safe_yaml", "repetition", "hookspecs", "device", "version"),
    ("records", "json_constraint", "shipped", "pair_shape"),
    ("components", "tokens", "cache"),
    # component kinds and the registry
    ("sampling", "plugins", "formatters", "retrieve", "track", "extract", "reviews"),
    ("gguf",),  # model file formats: GGUF and Ollama, read and written
    ("models",),  # resolving and loading a model, the tiny model
    ("adapters", "backends"),
    ("train",),  # the loop, the mlx trainer, its planner, launches and chunk sizes
    ("recipe_schema", "api"),
    ("recipe",),
    ("plan", "selection"),  # a recipe's memory plan; what to load from a recipe or flags
    ("asking", "exporting", "summarize"),
    ("serve", "stages"),
    ("pipeline",),
    ("evaluate",),
    ("curate",),
    ("doctor", "ui"),
    ("cli",),
    ("__init__",),
    ("__main__",),
)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def assigned(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The mlxtune modules that `name` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(head + ([node.module] if node.module else []))
            # `from pkg import sub` imports the submodule; `from pkg import name` the package
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        elif (
            name == "mlxtune.api"
            and isinstance(node, ast.AnnAssign | ast.Assign)
            and "_NAMES" in {t.id for t in assigned(node) if isinstance(t, ast.Name)}
            and isinstance(node.value, ast.Dict)
        ):
            targets = [v.value for v in node.value.values if isinstance(v, ast.Constant)]
        for target in targets:
            if target == "mlxtune" or target.startswith("mlxtune."):
                resolved = resolve(target)
                if resolved and resolved != name:
                    found.add(resolved)
    return found


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


@cache
def house() -> dict[str, set[str]]:
    """src/mlxtune's graph, read once for the tests below."""
    return graph()


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def floor_of() -> dict[str, int]:
    return {u: level for level, units in enumerate(FLOORS, 1) for u in units}


def climbing(edges: dict[str, set[str]]) -> list[str]:
    floors = floor_of()
    found = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            a, b = unit(source), unit(target)
            level_a, level_b = floors.get(a, 0), floors.get(b, 0)
            if a != b and level_a <= level_b:
                found.append(f"{source} (floor {level_a}) -> {target} (floor {level_b})")
    return found


def test_the_graph_reads_lazy_imports_and_the_api_table():
    edges = house()
    # a function-level import (a run loads its model lazily)
    assert "mlxtune.models.loading" in edges["mlxtune.train.mlx_run"]
    assert "mlxtune.train.loop" in edges["mlxtune.api"]  # api.py's lazy `_NAMES` table
    assert "mlxtune.hookspecs" in edges["mlxtune.plugins"]  # `from . import hookspecs`


def test_every_unit_has_a_floor():
    floors = floor_of()
    missing = sorted({unit(m) for m in modules()} - set(floors))
    assert not missing, f"give these a floor in tests/test_layers.py FLOORS: {missing}"


def test_no_circle():
    found = circles(house())
    assert not found, "modules that import each other: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_climbs_a_floor():
    found = climbing(house())
    assert not found, "imports that climb:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"a.py": "from . import b", "b.py": "def f():\n    from . import a\n"}, [["a", "b"]]),
        ({"a.py": "from . import b", "b.py": "x = 1"}, []),
    ],
)
def test_circles_are_found_in_lazy_imports(tmp_path, files, expected):
    root = tmp_path / "mlxtune"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    found = [[m.removeprefix("mlxtune.") for m in c] for c in circles(graph(root))]
    assert found == expected
