"""The shape of src/, read with `ast`: no import cycle, no private name imported across modules, the
report's layers (load <- judge <- render <- cli) and its public API, and small modules."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
MAX_LINES = 300
# Modules allowed over MAX_LINES, each with its reason (none is the goal).
LONG_MODULES = {
    # ~307 lines: one LightningDataModule with two data paths (CPU loader, device batches) and the
    # size checks that need the loaded data; the loaders and the config rules already live elsewhere.
    "ablate.data.datamodule": "one datamodule, two data paths",
}
LAYERS = ("load", "judge", "render")  # ablate.report's layers, bottom first


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None]]:
    """(module, imported name or None) of every ablate import in a module, function-level ones too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found += [(module, a.name) for a in node.names if module.startswith("ablate")]
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("ablate")]
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        for module, imported in _imports(name, path):
            target = f"{module}.{imported}" if f"{module}.{imported}" in MODULES else module
            if target in MODULES:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted({*graph, *(w for ws in list(graph.values()) for w in ws)}):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle_when_there_is_one():
    assert _cycles(defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})) == [
        ["a", "b", "c"]
    ]


def test_no_import_cycle_in_src():
    assert _cycles(_graph()) == []


def test_no_private_name_is_imported_across_modules():
    private = [
        f"{name} imports {imported} from {module}"
        for name, path in MODULES.items()
        for module, imported in _imports(name, path)
        if imported and imported.startswith("_") and not imported.startswith("__")
    ]
    assert private == []


def _layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[:2] != ["ablate", "report"]:
        return None
    return parts[2] if len(parts) > 2 and parts[2] in LAYERS else "top"


def test_the_report_layers_import_only_downwards():
    rank = {layer: i for i, layer in enumerate([*LAYERS, "top"])}
    upward = [
        f"{name} ({_layer(name)}) imports {target} ({_layer(target)})"
        for name, targets in _graph().items()
        for target in targets
        if _layer(name) in LAYERS and _layer(target) and rank[_layer(target)] > rank[_layer(name)]
    ]
    assert upward == []


def test_outside_the_report_only_its_public_packages_are_imported():
    public = {"ablate.report", *(f"ablate.report.{layer}" for layer in LAYERS)}
    inside = [
        f"{name} imports {module}"
        for name, path in MODULES.items()
        if not name.startswith("ablate.report")
        for module, _ in _imports(name, path)
        if module.startswith("ablate.report") and module not in public
    ]
    assert inside == []


def test_no_module_over_300_lines():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert set(long) <= set(LONG_MODULES), long
    assert all(n < MAX_LINES + 20 for n in long.values()), long  # an exception, not a licence
