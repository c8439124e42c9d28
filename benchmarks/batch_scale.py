"""Batch runs at archive scale: does a 10,000-case batch cost 10x a 1,000-case one, with flat memory?

A tiny 3D U-Net (widths 4-8-16, random weights) segments a tiny scan (24^3) listed N times in a manifest
under N case ids, through the same ``run_batch`` as ``volseg infer`` (run record, statistics, atomic
label maps), in a fresh process per size. Reported per size: wall time, seconds per case over the first
and the last 10 % of cases (linear growth means equal), bytes of ``volseg_run.csv`` and
``statistics.csv`` per case, and the process's resident memory after 10 % and after 100 % of the cases
(flat memory means equal) and its peak.

    python benchmarks/batch_scale.py [--sizes 1000 10000] [--out benchmarks/results]

Writes batch_scale.json and batch_scale.md. Outputs go to a temporary folder, removed afterwards.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402

SIDE = 24


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="utf-8") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def make_inputs(folder: Path, cases: int) -> tuple[Path, Path]:
    """A tiny model checkpoint and a manifest listing one tiny scan ``cases`` times."""
    import nibabel as nib
    import torch

    from volseg.config import load_config
    from volseg.runtime.checkpoint import FORMAT, build_network, save_atomic

    folder.mkdir(parents=True, exist_ok=True)
    scan = folder / "scan.nii.gz"
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.normal(0, 1, (SIDE,) * 3).astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0])), scan)
    cfg = load_config(
        None,
        [
            "model.features=[4, 8, 16]",
            "model.dims=3",
            "preprocess.spacing=null",
            f"sampling.patch_size_3d={[SIDE] * 3}",
            "data.labels={1: a, 2: b}",
        ],
    )
    torch.manual_seed(0)
    model = save_atomic(
        {
            "format": FORMAT,
            "model": build_network(cfg).state_dict(),
            "config": cfg.to_dict(),
            "label_names": dict(cfg.data.labels),
            "epoch": 0,
        },
        folder / "tiny.pt",
    )
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", "image", "label", "split"])
        writer.writerows([f"case_{i:06d}", str(scan), "", "test"] for i in range(cases))
    return model, manifest


def run_size(cases: int, folder: Path) -> dict:
    """One batch of ``cases`` in this process (call it in a fresh one)."""
    from volseg.inference.batch import BatchOptions, run_batch
    from volseg.inference.inputs import collect_inputs
    from volseg.inference.label_statistics import STATISTICS_CSV
    from volseg.inference.outputs import RunOutputs
    from volseg.inference.run_record import RUN_CSV
    from volseg.inference.zoo_segmenter import ZooSegmenter

    model, manifest = make_inputs(folder, cases)
    inputs = collect_inputs([manifest])
    segmenter = ZooSegmenter(model, "cpu", backend="torch")
    out = folder / "out"
    marks, memory, done = [], {}, 0
    tenth = max(1, cases // 10)

    def on_case(result) -> None:
        nonlocal done
        done += 1
        marks.append(time.perf_counter())
        if done == tenth:
            memory["after_10pct_mb"] = rss_mb()

    started = time.perf_counter()
    results = run_batch(inputs, RunOutputs(out), segmenter, BatchOptions(), on_case=on_case)
    wall = time.perf_counter() - started
    memory["after_100pct_mb"] = rss_mb()
    failed = sum(r.status != "ok" for r in results)
    first = (marks[tenth - 1] - started) / tenth
    last = (marks[-1] - marks[-tenth - 1]) / tenth
    return {
        "cases": cases,
        "failed": failed,
        "wall_s": round(wall, 1),
        "s_per_case": round(wall / cases, 4),
        "s_per_case_first_10pct": round(first, 4),
        "s_per_case_last_10pct": round(last, 4),
        "run_record_bytes": (out / RUN_CSV).stat().st_size,
        "run_record_bytes_per_case": round((out / RUN_CSV).stat().st_size / cases, 1),
        "statistics_bytes": (out / STATISTICS_CSV).stat().st_size,
        "rss_after_10pct_mb": round(memory["after_10pct_mb"], 1),
        "rss_after_100pct_mb": round(memory["after_100pct_mb"], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size in this process
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_size(args.one, args.folder)))
        return
    made = provenance(__file__)
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(size), "--folder", tmp],
                capture_output=True,
                encoding="utf-8",
                check=True,
            )
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    result = {"rows": rows}
    lines = [
        "# Batch runs at archive scale",
        "",
        f"`{made['command']}`: a {SIDE}^3 scan listed N times, tiny 3D U-Net (4-8-16), `run_batch` as "
        "`volseg infer` runs it (run record, statistics, label maps), one fresh process per size.",
        "",
        "| cases | failed | wall s | s/case | s/case first 10 % | s/case last 10 % | run record bytes/case | "
        "RSS after 10 % MB | RSS after 100 % MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['cases']} | {r['failed']} | {r['wall_s']} | {r['s_per_case']} | {r['s_per_case_first_10pct']} | "
            f"{r['s_per_case_last_10pct']} | {r['run_record_bytes_per_case']} | {r['rss_after_10pct_mb']} | "
            f"{r['rss_after_100pct_mb']} | {r['peak_rss_mb']} |"
            for r in rows
        ],
    ]
    print(write(args.out, "batch_scale", result, lines, made))


if __name__ == "__main__":
    main()
