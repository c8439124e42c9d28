"""The region-of-interest cascade (`volseg infer --roi LABEL`): the box, the crop's geometry, agreement with
the full-volume labels on the bundled CT, and the fallback when the locator finds nothing."""

import csv

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from typer.testing import CliRunner

from volseg.cli import app
from volseg.evaluation.metrics import dice_per_label
from volseg.inference.roi import Box, crop_source, locate
from volseg.pretrained import resolve_model

from .helpers import REPO

runner = CliRunner()
CT = REPO / "data" / "abdomen_ct" / "ct.nii.gz"


def test_locate_widens_the_box_by_the_margin_in_mm_and_clips_it():
    labels = np.zeros((40, 30, 20), np.int64)
    labels[10:15, 5:8, 0:4] = 3
    affine = np.diag([2.0, 1.0, 5.0, 1.0])
    box = locate(labels, 3, affine, margin_mm=4.0)
    assert box == Box((8, 1, 0), (17, 12, 5))  # 2 voxels of 2 mm, 4 of 1 mm, 1 of 5 mm; clipped at 0
    assert box.contains(labels == 3) and not Box((11, 5, 0), (15, 8, 4)).contains(labels == 3)
    assert locate(labels, 1, affine) is None
    wide = locate(labels, 3, affine, margin_mm=4.0, min_extent_mm=(40.0, 10.0, 60.0))  # one window of context
    assert wide == Box((3, 1, 0), (23, 12, 12))  # x widened to 20 voxels about the centre, z to 12 shifted inside
    assert wide.contains(labels == 3)


def test_a_crop_keeps_every_voxel_at_its_world_position():
    affine = np.array([[0, -0.8, 0, 50], [0.7, 0, 0, -20], [0, 0, 2.5, 10], [0, 0, 0, 1.0]])
    image = MetaTensor(
        torch.arange(2 * 10 * 12 * 6, dtype=torch.float32).reshape(2, 10, 12, 6),
        affine=torch.as_tensor(affine),
        meta={"original_affine": affine, "spatial_shape": (10, 12, 6)},
    )
    box = Box((2, 3, 1), (7, 12, 4))
    crop = crop_source(image, box)
    assert tuple(crop.shape) == (2, 5, 9, 3) and tuple(crop.meta["spatial_shape"]) == (5, 9, 3)
    assert torch.equal(crop[:, 0, 0, 0], image[:, 2, 3, 1])
    np.testing.assert_allclose(crop.meta["original_affine"] @ [4, 5, 2, 1], affine @ [6, 8, 3, 1])
    np.testing.assert_allclose(np.asarray(crop.affine), crop.meta["original_affine"])


@pytest.fixture(scope="module")
def full_and_roi(tmp_path_factory):
    """abdomen-ct on the bundled CT, whole volume and as an ROI cascade for kidney_left with the locator
    shipped beside it (locator.pt, 6 mm)."""
    out = tmp_path_factory.mktemp("roi")
    model = resolve_model("abdomen-ct")
    full = runner.invoke(app, ["infer", str(CT), "--model", str(model), "-o", str(out / "full"), "--backend", "torch"])
    assert full.exit_code == 0, full.output
    roi = runner.invoke(
        app,
        ["infer", str(CT), "--model", str(model), "-o", str(out / "roi"), "--backend", "torch", "--roi", "kidney_left"],
    )
    assert roi.exit_code == 0, roi.output
    return out


def test_roi_labels_agree_with_the_full_volume_inside_a_box_that_holds_them(full_and_roi):
    full = np.asarray(nib.load(full_and_roi / "full" / "ct_seg.nii.gz").dataobj)
    roi_image = nib.load(full_and_roi / "roi" / "ct_seg.nii.gz")
    roi = np.asarray(roi_image.dataobj)
    assert roi.shape == full.shape
    np.testing.assert_allclose(roi_image.affine, nib.load(CT).affine)
    assert set(np.unique(roi)) == {0, 4}  # kidney_left alone
    kidney = full == 4
    assert kidney.sum() > 1000
    dice = dice_per_label(torch.as_tensor(roi), torch.as_tensor(np.where(kidney, 4, 0)), {4: "kidney_left"})[4]
    assert dice >= 0.98
    (row,) = csv.DictReader((full_and_roi / "roi" / "volseg_run.csv").open(encoding="utf-8"))
    assert row["status"] == "ok" and row["note"].startswith("roi kidney_left: box ")
    start, stop = (eval(part) for part in row["note"].split("box ")[1].split(" of ")[0].split("-"))
    assert Box(tuple(start), tuple(stop)).contains(kidney)
    assert Box(tuple(start), tuple(stop)).voxels() < full.size / 2  # one 80^3 window of the 122x101x112 scan


def test_roi_falls_back_to_the_whole_scan_when_the_locator_finds_nothing(tmp_path):
    air = tmp_path / "air.nii.gz"
    nib.save(nib.Nifti1Image(np.full((48, 48, 24), -1000, np.int16), np.diag([3.0, 3.0, 3.0, 1.0])), air)
    model = resolve_model("abdomen-ct")
    result = runner.invoke(
        app,
        [
            "infer",
            str(air),
            "--model",
            str(model),
            "-o",
            str(tmp_path / "out"),
            "--backend",
            "torch",
            "--roi",
            "spleen",
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader((tmp_path / "out" / "volseg_run.csv").open(encoding="utf-8"))
    assert row["note"] == "roi spleen: the locator found nothing; the whole scan was segmented"


def test_roi_refuses_a_label_the_model_does_not_have_and_a_missing_locator(tmp_path):
    model = resolve_model("abdomen-ct")
    result = runner.invoke(
        app,
        [
            "infer",
            str(CT),
            "--model",
            str(model),
            "-o",
            str(tmp_path / "a"),
            "--roi",
            "pancreas",
            "--locator",
            str(model),
        ],
    )
    assert result.exit_code == 2 and "--roi 'pancreas': the model has no such label" in result.output
    hippocampus = resolve_model("hippocampus-mri")
    result = runner.invoke(
        app, ["infer", str(CT), "--model", str(hippocampus), "-o", str(tmp_path / "b"), "--roi", "anterior"]
    )
    assert result.exit_code == 2 and "no locator model beside" in result.output
