"""volseg's import graph, drawn from the source, has no cycle.

Every ``import`` and ``from ... import`` counts, at module level and inside functions alike (an import hidden
in a function is still a dependency, only a later one), relative imports resolved. Nodes are volseg's modules;
a package's ``__init__.py`` is a node of its own (``volseg.cli``), and ``from volseg.report import cases``
is an edge to the submodule ``volseg.report.cases`` when there is one, else to the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

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
    assert "volseg.train" in graph["volseg.cli.training"]  # an import inside a function counts
    assert "volseg.checkpoint" in graph["volseg.pretrained"]


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


def test_backends_imports_nothing_above_it():
    """The backends sit on the ONNX export and the int8 model (:mod:`volseg.quantize`), under inference."""
    graph = import_graph()
    below: set[str] = set()
    todo = ["volseg.backends"]
    while todo:
        for dep in graph[todo.pop()] - below:
            below.add(dep)
            todo.append(dep)
    above = {
        "volseg.infer",
        "volseg.train",
        "volseg.open_model",
        "volseg.roi",
        "volseg.demo",
        "volseg.pacs",
        "volseg.report",
        "volseg.cli",
        "volseg.nnunet.segmenter",
    }
    assert not below & above, sorted(below & above)
    assert {"volseg.onnx_export", "volseg.quantize"} <= below
