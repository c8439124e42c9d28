"""The 3 mm nnU-Net CT model the speed benchmarks run: the one ``benchmarks/nnunet_models.py`` trains
(``runs/nnunet_models/.../Dataset931_AbdomenCT3mm``) where present, else a stand-in with that model's plan (3 mm,
patch 112x112x128, PlainConvUNet 32-320, 4 organ labels, the bundled CT's median shape) and seeded weights:
seconds depend on the architecture and the scan, not on the weights. And the TCIA Philips CT as NIfTI, as a
user's file."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VOLSEG_SHARED", REPO.parent / "shared"))
PHILIPS = SHARED / "data/tcia_pancreatic_ct_cbct_seg_cb001/planning_ct"
TRAINED_3MM = REPO / "runs/nnunet_models/nnUNet_results/Dataset931_AbdomenCT3mm"


def stand_in_3mm(folder: Path) -> Path:
    """An nnU-Net folder with Dataset931_AbdomenCT3mm's plan and seeded weights."""
    from tests.nnunet_folder import write_model_folder

    labels = {"background": 0, "liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4}
    model = write_model_folder(
        folder,
        folds=("all",),
        labels=labels,
        dataset_name="Dataset931_AbdomenCT3mm",
        patch=(112, 112, 128),
        spacing=(3.0, 3.0, 3.0),
        features=(32, 64, 128, 256, 320),
    )
    plans = json.loads((model / "plans.json").read_text())
    plans["original_median_shape_after_transp"] = [112, 101, 122]  # the bundled CT's, as nnU-Net planned it
    plans["configurations"]["3d_fullres"]["median_image_size_in_voxels"] = [112, 101, 122]
    (model / "plans.json").write_text(json.dumps(plans, indent=2))
    return model


def nnunet_model(asked: Path | None, work: Path) -> tuple[Path, str]:
    """The model folder and where it came from."""
    if asked is not None:
        return asked, "given with --nnunet-model"
    trained = sorted(TRAINED_3MM.glob("*__3d_fullres"))
    if trained:
        return trained[0], "trained by benchmarks/nnunet_models.py"
    return stand_in_3mm(work / "nnunet"), "stand-in: Dataset931_AbdomenCT3mm's plan, seeded weights"


def philips_nifti(work: Path) -> Path | None:
    """The Philips CT written once as NIfTI with SimpleITK, or None when ../shared is absent."""
    if not PHILIPS.is_dir():
        return None
    import SimpleITK as sitk

    path = work / "philips_ct.nii.gz"
    if not path.is_file():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(PHILIPS)))
        sitk.WriteImage(reader.Execute(), str(path))
    return path
