"""ruff, configured in pyproject.toml ([tool.ruff]): the code base lints clean and is formatted as ruff formats
it. Part of the suite, so `.ci/run` (the README's test command) runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO

RUFF = Path(sys.executable).with_name("ruff")


def _ruff(*args: str) -> subprocess.CompletedProcess:
    if not RUFF.exists():
        pytest.fail(f"ruff is not installed beside {sys.executable}: ./setup.sh installs it (pip install -e '.[dev]')")
    return subprocess.run([str(RUFF), *args], cwd=REPO, capture_output=True, encoding="utf-8", errors="replace")


def test_ruff_lint_is_clean():
    run = _ruff("check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_ruff_format_leaves_every_file_as_it_is():
    run = _ruff("format", "--check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
