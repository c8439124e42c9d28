"""The documentation stays true to the code: README.md and docs/*.md.

- every `volseg` command line shown (fenced shell blocks and inline code) names a real subcommand and only
  options that subcommand has, with the CLI itself (typer's click command) as the source of truth;
- every relative link and image points to a file that exists, and an anchor into a Markdown page names
  one of its headings;
- README.md stays short and opens with the two commands CI runs.

Fast (no model, no data) and independent of ../shared.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from volseg.cli import app

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]

README_MAX_BYTES = 12_000  # "about 10 KB": the reference material lives in docs/

FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "zsh", "text"}
OPTION = re.compile(r"(?<![\w-])(--[A-Za-z0-9][\w-]*|-[A-Za-z])(?![\w-])")


# ---------------------------------------------------------------------------------------------------
# the CLI


@cache
def cli_commands() -> dict[str, set[str]]:
    """{subcommand: its option names (long and short)} from typer's click command."""
    group = typer.main.get_command(app)
    commands = {}
    for name, command in group.commands.items():
        names = {"--help"}
        for param in command.params:
            if param.param_type_name == "option":
                names.update(param.opts)
                names.update(param.secondary_opts)
        commands[name] = names
    return commands


@cache
def top_level_options() -> set[str]:
    group = typer.main.get_command(app)
    names = {"--help"}
    for param in group.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def test_cli_introspection_matches_help():
    """The introspected options are the ones `--help` shows (guards the introspection itself)."""
    commands = cli_commands()
    assert {"demo", "infer", "train", "evaluate", "plan", "check", "pacs", "export", "report", "models"} <= set(
        commands
    )
    runner = CliRunner()
    env = {"COLUMNS": "250", "TERMINAL_WIDTH": "250", "NO_COLOR": "1"}
    for name, options in commands.items():
        result = runner.invoke(app, [name, "--help"], env=env)
        assert result.exit_code == 0, (name, result.output)
        shown = set(re.findall(r"--[a-z0-9][a-z0-9-]*", result.output))
        missing = {o for o in options if o.startswith("--")} - shown
        assert not missing, f"volseg {name} --help does not show {sorted(missing)}"


# ---------------------------------------------------------------------------------------------------
# command lines in the docs


@dataclass(frozen=True)
class Shown:
    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def _strip_comment(line: str) -> str:
    # a shell comment starts at a '#' at the line's start or after whitespace
    return re.sub(r"(^|\s)#.*$", "", line).rstrip()


def _fenced_lines(path: Path):
    """(line number, text) of every command line inside fenced shell blocks, continuations joined."""
    lang = None
    pending, start = "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            if lang is None:
                lang = fence.group(2).lower()
            else:
                if pending:
                    yield start, pending
                lang, pending = None, ""
            continue
        if lang is None or lang not in SHELL_LANGS:
            continue
        text = _strip_comment(line)
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1].strip() + " "
            continue
        full = (pending + text.strip()).strip()
        pending = ""
        if full:
            yield start, full


def _inline_code(path: Path):
    """(line number, text) of every inline code span outside fenced blocks (spans may wrap lines)."""
    text = path.read_text(encoding="utf-8")
    prose, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            prose.append("")
            continue
        prose.append("" if in_fence else line)
    joined = "\n".join(prose)
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", joined):
        number = joined.count("\n", 0, match.start()) + 1
        yield number, " ".join(match.group(1).split())


def shown_commands() -> list[Shown]:
    shown = []
    for path in PAGES:
        page = str(path.relative_to(REPO))
        for number, text in [*_fenced_lines(path), *_inline_code(path)]:
            for segment in re.split(r"&&|;\s", text):
                if re.search(r"(^|[\s/])volseg(\s|$)", segment):
                    shown.append(Shown(page, number, segment.strip()))
    return shown


def _volseg_args(text: str) -> list[str] | None:
    """The arguments after the `volseg` program (volseg, .venv/bin/volseg, python -m volseg, torchrun ... -m
    volseg), or None when the line only mentions volseg."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    for i, token in enumerate(tokens):
        program = token.endswith("/volseg") or (
            token == "volseg" and (i == 0 or tokens[i - 1] in {"-m", "$", "exec", "time"})
        )
        if program:
            return tokens[i + 1 :]
    return None


def test_docs_show_command_lines():
    """The collector finds the command lines (so the next test cannot pass by finding none)."""
    shown = shown_commands()
    pages = {s.page for s in shown}
    assert "README.md" in pages and "docs/inference.md" in pages
    subcommands = {(_volseg_args(s.text) or [""])[0] for s in shown}
    assert {"demo", "infer", "train", "evaluate", "plan", "check", "pacs", "export", "report", "models"} <= subcommands
    assert any("-m volseg train" in s.text for s in shown), "torchrun lines are collected"


def test_documented_options_exist():
    commands = cli_commands()
    problems = []
    for shown in shown_commands():
        args = _volseg_args(shown.text)
        if not args:
            continue  # "volseg" on its own, e.g. in prose
        first = args[0].strip("[(")
        if first.startswith("-"):
            unknown = set(OPTION.findall(" ".join(args))) - top_level_options()
            if unknown:
                problems.append(f"{shown}\n    volseg has no option {sorted(unknown)}")
            continue
        if first in {"...", "<cmd>", "COMMAND"}:
            continue
        if first not in commands:
            problems.append(f"{shown}\n    no subcommand {first!r} (volseg has {sorted(commands)})")
            continue
        rest = " ".join(args[1:])
        rest = re.sub(r"--?[\w-]+=", lambda m: m.group(0)[:-1] + " ", rest)  # --opt=value
        unknown = sorted(set(OPTION.findall(rest)) - commands[first])
        if unknown:
            problems.append(f"{shown}\n    volseg {first} has no option {unknown}")
    assert not problems, "documented command lines the CLI does not accept:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------------
# links and images


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> set[str]:
    found, seen, in_fence = set(), {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading and not in_fence:
            slug = _slug(heading.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def _links(path: Path):
    """(line number, target) of every Markdown link and image outside code."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        for match in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
            yield number, match.group(1)
        for match in re.finditer(r"<img\s[^>]*src=\"([^\"]+)\"", line):
            yield number, match.group(1)


def test_links_and_images_resolve():
    problems, checked = [], 0
    for path in PAGES:
        page = path.relative_to(REPO)
        for number, target in _links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            destination = (path.parent / file_part).resolve() if file_part else path
            checked += 1
            if not destination.exists():
                problems.append(f"{page}:{number}: {target} -> no such file")
                continue
            if REPO not in destination.parents and destination != REPO:
                problems.append(f"{page}:{number}: {target} points outside the repository")
                continue
            if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                problems.append(f"{page}:{number}: {target} -> no heading #{anchor} in {file_part or page}")
    assert checked > 20, "the link collector finds the pages' links"
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme():
    text = README.read_text(encoding="utf-8")
    for path in sorted((REPO / "docs").glob("*.md")):
        if path.name in {"README.md", "comparison.md"}:  # the index; a generated table
            continue
        assert f"(docs/{path.name}" in text, f"README.md does not link docs/{path.name}"


# ---------------------------------------------------------------------------------------------------
# the README itself


def test_readme_is_short_and_opens_with_the_two_commands():
    data = README.read_bytes()
    assert len(data) < README_MAX_BYTES, f"README.md is {len(data)} bytes; move reference material to docs/"
    lines = data.decode("utf-8").splitlines()
    assert lines[0] == "# volseg"
    assert lines[2] == "```bash"
    assert lines[3].startswith("./setup.sh && .venv/bin/volseg demo ")
    assert lines[4].startswith("./setup.sh && .venv/bin/python -m pytest -q ")
    assert lines[5] == "```"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_at_most_two_pictures_in_readme_and_fences_closed(path):
    text = path.read_text(encoding="utf-8")
    fences = sum(1 for line in text.splitlines() if FENCE.match(line))
    assert fences % 2 == 0, f"{path.name}: a fenced block is not closed"
    if path == README:
        assert len(re.findall(r"!\[[^\]]*\]\(", text)) <= 2, "README.md: two pictures at most"


def test_architecture_page_names_every_module():
    """docs/architecture.md lists every module and package of volseg (a new one must be placed there)."""
    readme = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    package = REPO / "volseg"
    names = {p.stem for p in package.rglob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = sorted(n for n in names if not re.search(rf"(?<![\w]){re.escape(n)}(\.py|/|\b)", readme))
    assert not missing, f"docs/architecture.md misses: {missing}"
