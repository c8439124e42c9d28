"""volseg's labels against nnUNetv2_predict's on models nnU-Net itself trained (``benchmarks/nnunet_reference.py``:
a CT-like dataset with 3d_fullres folds 0+1 and 2d, and a region-based MR-like dataset with a transposed plan and
masked z-scoring), every prediction run it recorded, through torch and OpenVINO fp32.

    python benchmarks/nnunet_parity.py [--work runs/nnunet_reference] [--backends torch,openvino]

Writes benchmarks/results/nnunet_parity.{json,md}: per run and case, voxels that differ and Dice per label.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402
from volseg.inference.inputs import CaseInput  # noqa: E402
from volseg.nnunet.segmenter import NnunetSegmenter  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray, value: int) -> float:
    total = (a == value).sum() + (b == value).sum()
    return 1.0 if total == 0 else float(2 * ((a == value) & (b == value)).sum() / total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "nnunet_reference")
    parser.add_argument("--backends", default="torch,openvino")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    made = provenance(__file__)
    reference = json.loads((args.work / "reference.json").read_text())
    rows = []
    for run in reference["predictions"]:
        folds = [str(f) for f in range(int(run["folds"]))] if not isinstance(run["folds"], list) else run["folds"]
        for backend in args.backends.split(","):
            segmenter = NnunetSegmenter(run["model_folder"], tta=run["tta"], folds=folds, backend=backend)
            for image in sorted(Path(run["input_folder"]).glob("*_0000.nii.gz")):
                case = image.name[: -len("_0000.nii.gz")]
                labels, _ = segmenter.predict(segmenter.load(CaseInput(case, (image,))))
                expected = np.asarray(nib.load(Path(run["output_folder"]) / f"{case}.nii.gz").dataobj)
                values = sorted(int(v) for v in set(np.unique(expected)) | set(np.unique(labels)) if v != 0)
                rows.append(
                    {
                        "run": run["name"],
                        "backend": backend,
                        "case": case,
                        "voxels": int(expected.size),
                        "differ": int((labels != expected).sum()),
                        "dice": {str(v): round(dice(labels, expected, v), 6) for v in values},
                    }
                )
                print(rows[-1], flush=True)
    lines = [
        "# volseg vs nnUNetv2_predict on models nnU-Net trained",
        "",
        f"`{made['command']}` on {made['machine']['cpu']}; nnU-Net "
        f"{reference['versions']['nnunetv2']}; models and predictions from `{reference['command']}`.",
        "",
        "| run | backend | case | voxels differing | Dice per label |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['run']} | {r['backend']} | {r['case']} | {r['differ']} of {r['voxels']} | "
        + ", ".join(f"{k}: {v:.4f}" for k, v in r["dice"].items())
        + " |"
        for r in rows
    ]
    worst = min(min(r["dice"].values(), default=1.0) for r in rows)
    lines += [
        "",
        f"{len(rows)} case runs; {sum(r['differ'] == 0 for r in rows)} identical voxel for voxel; "
        f"worst per-label Dice {worst:.4f}.",
    ]
    print(write(args.out, "nnunet_parity", {"rows": rows, "worst_dice": worst}, lines, made))


if __name__ == "__main__":
    main()
