"""Pancreas CT recipe: MSD Task07_Pancreas folder -> manifest -> plan -> train -> infer -> evaluate.

Full run (one GPU, about a day for 3D):
    python pipelines/pancreas_ct.py /data/Task07_Pancreas runs/pancreas_3d --dims 3
Every step is a `volseg` command; re-running resumes training and skips finished predictions.
`--plan-set key=value` options reach `volseg plan` (e.g. another label map); `--set key=value` options
reach `volseg train` (e.g. tiny widths and patches for a CPU smoke run, as tests/test_pipelines.py does).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def volseg(*args: str) -> None:
    cmd = [sys.executable, "-m", "volseg", *map(str, args)]
    print("+ volseg " + shlex.join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="MSD Task07_Pancreas folder (dataset.json, imagesTr, labelsTr)")
    parser.add_argument("run", type=Path, help="folder for the manifest, config, run and predictions")
    parser.add_argument("--dims", type=int, choices=(2, 3), default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--memory-gb", type=float, default=16.0, help="training memory budget for planning")
    parser.add_argument("--test-split", default="test", help="manifest split to predict and evaluate")
    parser.add_argument(
        "--plan-set",
        dest="plan_overrides",
        action="append",
        default=[],
        help="config override before planning, e.g. data.label_remap={7: 1}",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="train-time config override")
    args = parser.parse_args()

    run = args.run
    run.mkdir(parents=True, exist_ok=True)
    base = REPO / "configs" / f"pancreas_ct_{args.dims}d.yaml"
    manifest, config = run / "manifest.csv", run / "plan.yaml"
    if not manifest.exists():
        volseg(
            "manifest",
            args.source,
            "-o",
            manifest,
            "--val-fraction",
            args.val_fraction,
            "--test-fraction",
            args.test_fraction,
        )
    volseg("check", manifest)
    volseg(
        "plan",
        manifest,
        "-o",
        config,
        "--config",
        base,
        "--modality",
        "CT",
        "--memory-gb",
        args.memory_gb,
        "--labels",
        "1=pancreas",
        *[item for o in args.plan_overrides for item in ("--set", o)],
    )
    train = ["train", "--config", config, "--manifest", manifest, "--output", run / "train", "--device", args.device]
    train += [item for o in args.overrides for item in ("--set", o)]
    volseg(*train, *(["--resume"] if (run / "train" / "last.pt").exists() else []))
    volseg(
        "infer",
        manifest,
        "--split",
        args.test_split,
        "--model",
        run / "train",
        "-o",
        run / "pred",
        "--device",
        args.device,
        "--resume",
        "--qc",
    )
    volseg(
        "evaluate",
        "--pred",
        run / "pred",
        "--manifest",
        manifest,
        "--split",
        args.test_split,
        "--config",
        config,
        "-o",
        run / "test_metrics.csv",
    )


if __name__ == "__main__":
    main()
