"""The suite's golden nnU-Net predictions: tiny model folders in nnU-Net's layout and the labels that nnU-Net's
own predictor gives them, so `tests/test_nnunet.py` checks volseg against nnU-Net without nnU-Net installed.

    python benchmarks/nnunet_golden.py [--venv runs/nnunet_venv] [--out tests/data/nnunet_tiny]

Writes three model variants (``tests/nnunet_folder.py``: default resampling, torch resampling, a transposed
plan with anisotropic target spacing; folds 0 and 1 each), five synthetic CT-like images (anisotropic,
isotropic, smaller than a patch, zero border, rotated), and ``nnUNetv2_predict_from_modelfolder``'s labels for
each with mirroring on and off. nnU-Net (``nnunetv2==2.8.1``) runs in its own virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.nnunet_env import FOLDERS, ensure, versions  # noqa: E402
from benchmarks.record import provenance  # noqa: E402
from tests.nnunet_folder import write_model_folder  # noqa: E402

VARIANTS = {
    "plain": {},
    "torch_resampling": {"resampling": "resample_torch_fornnunet"},
    "transposed": {"transpose": (2, 0, 1), "spacing": (3.0, 1.0, 1.0)},
}


def ct_like(shape, rng, zero_border=False) -> np.ndarray:
    """Air around an ellipsoid body (~40 HU) holding a brighter organ (~150 HU), with noise."""
    image = np.full(shape, -1000, np.float32)
    grid = np.indices(shape).astype(float)
    centre = [s / 2 for s in shape]
    body = sum(((grid[i] - centre[i]) / (0.4 * shape[i])) ** 2 for i in range(3)) < 1
    image[body] = 40 + rng.normal(0, 20, body.sum())
    organ = sum(((grid[i] - centre[i] * (0.8 if i == 0 else 1)) / (0.15 * shape[i])) ** 2 for i in range(3)) < 1
    image[organ] = 150 + rng.normal(0, 20, organ.sum())
    if zero_border:
        image[:4], image[-3:], image[:, :5] = 0, 0, 0
    return image.astype(np.int16)


def write_images(folder: Path) -> None:
    rng = np.random.default_rng(1)
    rotation = np.eye(4)
    rotation[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, -1.0]]) @ np.diag([0.9, 1.1, 2.5])
    cases = {
        "aniso": (ct_like((48, 44, 14), rng), np.diag([0.8, 0.8, 3.0, 1])),
        "iso": (ct_like((30, 34, 28), rng), np.diag([1.5, 1.5, 1.5, 1])),
        "small": (ct_like((12, 14, 9), rng), np.diag([2.0, 2.0, 2.0, 1])),
        "zeroborder": (ct_like((40, 40, 30), rng, zero_border=True), np.diag([1.2, 1.2, 1.2, 1])),
        "rotated": (ct_like((36, 30, 16), rng), rotation),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, (image, affine) in cases.items():
        affine = affine.copy()
        affine[:3, 3] += [1.5, -2.0, 3.0]
        nib.save(nib.Nifti1Image(image, affine), folder / f"{name}_0000.nii.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=REPO / "runs" / "nnunet_venv")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "nnunet_tiny")
    args = parser.parse_args()
    made = provenance(__file__)
    bin_dir = ensure(args.venv)  # nnUNetv2_predict_from_modelfolder needs no trainer of volseg's
    write_images(args.out / "images")
    env = {**os.environ, **dict.fromkeys(FOLDERS, str(args.out / "unused"))}  # set, never read
    for name, plan_args in VARIANTS.items():
        folder = write_model_folder(args.out / "models" / name, folds=("0", "1"), **plan_args)
        for tta in (False, True):
            out = args.out / "nnunet" / name / ("tta" if tta else "no_tta")
            command = [
                bin_dir / "nnUNetv2_predict_from_modelfolder",
                "-i",
                args.out / "images",
                "-o",
                out,
                "-m",
                folder,
                "-f",
                "0",
                "1",
                "-device",
                "cpu",
                "-npp",
                "1",
                "-nps",
                "1",
            ]
            subprocess.run(
                [str(c) for c in command + ([] if tta else ["--disable_tta"])],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            for extra in ("dataset.json", "plans.json", "predict_from_raw_data_args.json"):
                (out / extra).unlink(missing_ok=True)
    version = versions(bin_dir / "python", ["nnunetv2"])["nnunetv2"]
    made_by = {"nnunetv2": version, "provenance": made}  # the provenance every benchmark writes (record.py)
    (args.out / "made_by.json").write_text(json.dumps(made_by, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
