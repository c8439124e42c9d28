"""What every benchmark writes beside its figures: where they came from (the command, the git commit, the date
and the machine) and the JSON and Markdown files in the results folder.

    made = provenance(__file__)  # as the benchmark starts
    ...
    print(write(args.out, "name", result, markdown_lines, made))

The JSON gets ``made`` under the key ``"provenance"``; the Markdown ends with one line saying the same.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")  # the ones inference speed depends on


def command(script: str) -> str:
    """The command line that reproduces the run (``script``: the benchmark's ``__file__``)."""
    return "python " + " ".join([Path(script).resolve().relative_to(REPO).as_posix(), *sys.argv[1:]])


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the repository, with ``+dirty`` when tracked files differ from it; None
    outside a git checkout."""
    git = ["git", "--no-optional-locks", "-C", str(REPO)]  # no index refresh: other work may be committing
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        changes = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.strip() + ("+dirty" if changes.strip() else "")


def machine() -> dict:
    """CPU model, logical cores, the CPU flags in ``CPU_FLAGS`` (present or not; empty where the CPU's flags
    cannot be read), Python and torch versions."""
    cpu, flags = None, None
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and cpu is None:
                cpu = value.strip()
            elif key in ("flags", "Features") and flags is None:
                flags = set(value.split())
    except OSError:
        pass
    try:
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = None
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "flags": {} if flags is None else {f: f in flags for f in CPU_FLAGS},
        "python": platform.python_version(),
        "torch": torch,
    }


def provenance(script: str) -> dict:
    """Where a run's figures came from: ``command`` (see :func:`command`), ``commit`` (see
    :func:`git_commit`), ``date`` (UTC, ISO 8601, now: call it as the run starts) and ``machine`` (see
    :func:`machine`)."""
    return {
        "command": command(script),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
    }


def provenance_line(made: dict) -> str:
    """``made`` (from :func:`provenance`) as one Markdown line."""
    m = made.get("machine") or {}
    flags = m.get("flags") or {}
    cpu_flags = ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in flags.items()) or "CPU flags unknown"
    return (
        f"Made by `{made.get('command')}` at commit {made.get('commit') or 'unknown'}, {made.get('date')}, on "
        f"{m.get('cpu')} ({m.get('cores')} logical cores; {cpu_flags}), Python {m.get('python')}, "
        f"torch {m.get('torch')}."
    )


def write(out: Path, name: str, result: dict, markdown_lines: list[str], made: dict) -> str:
    """``out/name.json`` (``result`` with ``made``, from :func:`provenance`, under ``"provenance"``) and
    ``out/name.md`` (``markdown_lines`` and a last line saying ``made``); returns the Markdown (to print)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({**result, "provenance": made}, indent=1), encoding="utf-8")
    text = "\n".join([*markdown_lines, "", provenance_line(made)]) + "\n"
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    return text


def timed_process(command: list[str]) -> dict:
    """Run ``command`` as its own process: wall seconds, CPU seconds (user + system) and peak RSS (MB) from its own
    rusage; a failure stops the benchmark with the end of its stderr."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed: {process.stderr.read().decode()[-500:]}")
    return {
        "wall": round(wall, 2),
        "cpu": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


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
