"""Training throughput with 1 vs N processes under torchrun (gloo on CPU, NCCL on GPUs).

Usage: python benchmarks/ddp_throughput.py [--nproc 2] [--iterations 20] [--out benchmarks/results]
Trains the same model for a fixed number of steps per rank on the embedded data and reports samples/s
(global batch = per-rank batch x ranks). Writes ddp_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402


def run(nproc: int, iterations: int, batch: int, tmp: Path, device: str) -> dict:
    out = tmp / f"run_{nproc}"
    sets = [
        "model.features=[16, 32, 64, 128]",
        "sampling.patch_size_3d=[40, 56, 40]",
        f"sampling.batch_size_3d={batch}",
        "sampling.samples_per_volume=2",
        "train.epochs=2",
        f"train.iterations_per_epoch={iterations}",
        "train.val_every=1000",
        "data.cache=memory",
    ]
    if device == "cpu":
        sets.append(f"train.threads={max(1, (os.cpu_count() or 1) // nproc)}")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "volseg",
        "train",
        "--config",
        str(REPO / "configs" / "hippocampus_3d.yaml"),
        "--output",
        str(out),
        "--device",
        device,
        *[a for s in sets for a in ("--set", s)],
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    from volseg.runtime.checkpoint import load_checkpoint

    history = load_checkpoint(out / "last.pt")["history"]
    seconds = history[-1]["seconds"]  # epoch 2: caching and warm-up are behind us
    samples = iterations * batch * nproc
    return {"nproc": nproc, "seconds_per_epoch": seconds, "samples_per_second": samples / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    made = provenance(__file__)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(n, args.iterations, args.batch, Path(tmp), args.device) for n in (1, args.nproc)]
    base = rows[0]["samples_per_second"]
    for r in rows:
        r["speedup"] = r["samples_per_second"] / base
    report = {"device": args.device, "rows": rows, "wall_seconds": time.time() - started}
    lines = ["| processes | s/epoch | samples/s | speed-up |", "|---|---|---|---|"]
    lines += [
        f"| {r['nproc']} | {r['seconds_per_epoch']:.1f} | {r['samples_per_second']:.2f} | {r['speedup']:.2f}x |"
        for r in rows
    ]
    print(write(args.out, "ddp_throughput", report, lines, made))


if __name__ == "__main__":
    main()
