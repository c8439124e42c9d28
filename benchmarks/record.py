"""What every benchmark writes beside its figures: the machine, the exact command, and the JSON and
Markdown files in the results folder."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def provenance(script: str) -> dict:
    """The machine and the command line that reproduces the run (``script``: the benchmark's __file__)."""
    return {
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "command": "python " + " ".join([Path(script).resolve().relative_to(REPO).as_posix(), *sys.argv[1:]]),
    }


def write(out: Path, name: str, result: dict, markdown_lines: list[str]) -> str:
    """``out/name.json`` and ``out/name.md``; returns the Markdown (to print)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    text = "\n".join(markdown_lines) + "\n"
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    return text


def seconds_per_call(call: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Wall seconds of ``repeats`` calls after one untimed warm-up call; ``sync`` waits for queued device
    work (CUDA is asynchronous), so each time covers the whole call."""
    call()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return times
