"""volseg's import graph, drawn from the source, has no cycle, and no import runs up a floor.

Every ``import`` and ``from ... import`` counts, at module level and inside functions alike (an import hidden
in a function is still a dependency, only a later one), relative imports resolved. Nodes are volseg's modules;
a package's ``__init__.py`` is a node of its own (``volseg.cli``), and ``from volseg.report import cases``
is an edge to the submodule ``volseg.report.cases`` when there is one, else to the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "volseg"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package (``__init__.py`` named after its package)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The volseg modules that module ``name`` (file ``path``) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y, from .. import z
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # a submodule named in the import list is the target; a function or class means its module
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import volseg.a.b.c where c is a name: volseg.a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_graph_is_drawn_from_the_source():
    graph = import_graph()
    assert "volseg.cli" in graph and "volseg.cli.app" in graph["volseg.cli"]  # __init__: own node
    assert "volseg.models.unet" in graph["volseg.models"]  # from volseg.models import unet: the submodule
    assert "volseg.training.trainer" in graph["volseg.cli.training"]  # an import inside a function counts
    assert "volseg.runtime.checkpoint" in graph["volseg.pretrained"]


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"a"}, "a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_relative_imports_are_resolved(tmp_path):
    pkg = tmp_path / "volseg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\nfrom ..a import f\n")
    (pkg / "sub" / "b.py").write_text("from .. import a\n")
    modules = module_names(pkg)
    assert imported("volseg.a", modules["volseg.a"], modules) == {"volseg.sub.b"}
    assert imported("volseg.sub", modules["volseg.sub"], modules) == {"volseg.sub.b", "volseg.a"}
    assert imported("volseg.sub.b", modules["volseg.sub.b"], modules) == {"volseg.a"}


def test_volseg_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def package_of(module: str) -> str:
    """The floor a module stands on: ``volseg.runtime.backends`` -> ``runtime``; a top-level module is its own."""
    return module.split(".")[1] if module.count(".") >= 1 else module


# floor -> the floors its modules may not import (docs/architecture.md). Direct imports: reading a DICOM series
# is reading a scan, so data.io reaches dicom's series discovery, and every floor that reads scans with it.
FLOORS = {
    "models": {"data", "files", "training", "evaluation", "runtime", "inference", "dicom", "nnunet", "report", "cli"},
    "runtime": {"inference", "dicom", "training", "report", "pretrained", "cli"},
    "dicom": {"training", "cli"},
    "training": {"inference", "report", "cli"},
    "data": {"models", "runtime", "training", "inference", "report", "cli"},
    "serve": {"training", "report", "cli"},
}


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_no_import_runs_up_a_floor(floor):
    graph = import_graph()
    climbs = {
        f"{module} -> {dep}"
        for module in graph
        if package_of(module) == floor
        for dep in graph[module]
        if package_of(dep) in FLOORS[floor]
    }
    assert not climbs, sorted(climbs)


def test_models_import_nothing_of_volseg_but_config_and_errors():
    graph = import_graph()
    allowed = {"volseg.config", "volseg.errors"}
    found = {f"{m} -> {d}" for m in graph if package_of(m) == "models" for d in graph[m] if package_of(d) != "models"}
    assert {f.split(" -> ")[1] for f in found} <= allowed, sorted(found)


def test_nothing_but_the_entry_point_imports_the_command_line():
    graph = import_graph()
    users = {m for m in graph if package_of(m) != "cli" for d in graph[m] if package_of(d) == "cli"}
    assert users == {"volseg.__main__"}, sorted(users)


def test_volseg_has_its_five_top_level_modules():
    """The floor plan is seen from ``ls volseg/``: packages by idea, and only what every floor shares on top."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "config.py", "errors.py", "version.py"], top
