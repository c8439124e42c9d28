"""What a call to a lent GPU machine carries, measured: the files git tracks (they all travel) plus the wheels
``benchmarks/gpu_wheels.sh`` put in ``.gpu_wheels/``, against the 64 MiB a call may carry.

    python benchmarks/gpu_carry.py    # run by gpu_wheels.sh; writes results/gpu_carry.{json,md}
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.record import REPO, provenance, write  # noqa: E402

LIMIT_MIB = 64
WHEELS = REPO / ".gpu_wheels"


def tracked_bytes() -> tuple[int, int]:
    """(files, bytes) of what git tracks plus untracked files it does not ignore: the tree that travels."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    paths = [REPO / p for p in listed.decode().split("\0") if p]
    return len(paths), sum(p.stat().st_size for p in paths if p.is_file())


def main() -> None:
    made = provenance(__file__)
    files, tree = tracked_bytes()
    wheels = {p.name: p.stat().st_size for p in sorted(WHEELS.glob("*.whl"))}
    total = tree + sum(wheels.values())
    result = {
        "tree_files": files,
        "tree_mib": round(tree / 2**20, 1),
        "wheels_mib": {name: round(size / 2**20, 2) for name, size in wheels.items()},
        "total_mib": round(total / 2**20, 1),
        "limit_mib": LIMIT_MIB,
        "fits": total < LIMIT_MIB * 2**20,
    }
    lines = [
        "# What a call to the GPU machine carries",
        "",
        "| part | MiB |",
        "|---|---|",
        f"| the working tree ({files} files) | {result['tree_mib']} |",
        *(f"| {name} | {mib} |" for name, mib in result["wheels_mib"].items()),
        f"| **all** (limit {LIMIT_MIB}) | **{result['total_mib']}** |",
    ]
    print(write(REPO / "benchmarks" / "results", "gpu_carry", result, lines, made))
    if not wheels:
        raise SystemExit(f"no wheels in {WHEELS}: run bash benchmarks/gpu_wheels.sh")
    if not result["fits"]:
        raise SystemExit(f"{result['total_mib']} MiB would not travel (limit {LIMIT_MIB} MiB)")


if __name__ == "__main__":
    main()
