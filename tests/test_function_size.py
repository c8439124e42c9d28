"""Functions a reader can hold (issue 42): no function body in volseg/ over 60 lines, and the command line only
parses: every command's body is at most 40 lines, one options object and one library call. Counted from the
source: a body's lines from its first statement after the docstring to its last."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "volseg"
MAX_FUNCTION_LINES = 60
MAX_COMMAND_LINES = 40


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the docstring
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def functions(root: Path = PACKAGE):
    """(file, function node) for every function and method of the package."""
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node


def is_command(node: ast.FunctionDef) -> bool:
    """Decorated ``@app.command()``."""
    return any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
        for d in node.decorator_list
    )


def test_the_count_is_of_the_body_less_its_docstring():
    (node,) = ast.parse('def f():\n    """doc\n    more"""\n    a = 1\n\n    return a\n').body
    assert body_lines(node) == 3


def test_no_function_in_volseg_is_longer_than_60_lines():
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({body_lines(node)} lines)"
        for path, node in functions()
        if body_lines(node) > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_every_command_body_is_at_most_40_lines():
    commands = [(path, node) for path, node in functions(PACKAGE / "cli") if is_command(node)]
    assert len(commands) >= 10  # the rule reads the real commands
    long = [f"{node.name} ({body_lines(node)} lines)" for _, node in commands if body_lines(node) > MAX_COMMAND_LINES]
    assert not long, long


@pytest.mark.parametrize("lines, ok", [(60, True), (61, False)])
def test_the_rule_fails_a_long_function(tmp_path, lines, ok):
    source = "def f():\n" + "".join(f"    x{i} = {i}\n" for i in range(lines))
    (tmp_path / "m.py").write_text(source, encoding="utf-8")
    found = [body_lines(node) for _, node in functions(tmp_path)]
    assert (found[0] <= MAX_FUNCTION_LINES) is ok


def test_no_benchmark_file_is_longer_than_500_lines():
    """The largest rooms of the house were scripts: benchmarks/ splits them into steps (render_docs into one
    renderer per page in doc_pages/, nnunet_models into train, run and tables)."""
    long = {
        p.relative_to(PACKAGE.parent).as_posix(): n
        for p in sorted((PACKAGE.parent / "benchmarks").rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not long, long
