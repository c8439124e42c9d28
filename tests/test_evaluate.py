"""volseg evaluate agrees with MONAI's reference metrics and follows its empty-mask convention."""

import math

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from typer.testing import CliRunner

from volseg.cli import app
from volseg.evaluation.metrics import dice, label_metrics

from .helpers import REPO

SPACING = (0.7, 1.3, 3.0)


def _monai(pred, ref, spacing):
    p, r = torch.as_tensor(pred)[None, None].float(), torch.as_tensor(ref)[None, None].float()
    d = DiceMetric(include_background=True)(p, r).item()
    hd = HausdorffDistanceMetric(include_background=True, percentile=95)(p, r, spacing=list(spacing)).item()
    return d, hd


def _blob(shape, centre, radius, rng):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    noise = rng.normal(scale=0.8, size=shape)
    return (np.linalg.norm(grid - centre, axis=-1) + noise) < radius


@pytest.mark.parametrize("seed", range(4))
def test_random_masks_match_monai(seed):
    rng = np.random.default_rng(seed)
    shape = (40, 36, 20)
    ref = _blob(shape, (20, 18, 10), 9, rng)
    pred = _blob(shape, (21 + seed, 17, 10), 8 + seed, rng)
    ours = label_metrics(pred.astype(np.int64), ref.astype(np.int64), [1], SPACING)[1]
    d, hd = _monai(pred, ref, SPACING)
    assert abs(ours["dice"] - d) < 1e-6
    assert abs(ours["hd95"] - hd) < 1e-3
    assert ours["volume_ref_ml"] == pytest.approx(ref.sum() * np.prod(SPACING) / 1000)


def test_real_masks_match_monai():
    label = nib.load(REPO / "data" / "hippocampus" / "labelsTr" / "hippocampus_006.nii.gz")
    ref = np.asarray(label.dataobj).astype(np.int64)
    pred = np.where(np.roll(ref == 1, 2, axis=0), 1, 0)  # anterior shifted by 2 voxels
    pred[ref == 2] = 2  # posterior perfect
    ours = label_metrics(pred, ref, [1, 2], SPACING)
    for value in (1, 2):
        d, hd = _monai(pred == value, ref == value, SPACING)
        assert abs(ours[value]["dice"] - d) < 1e-6
        assert abs(ours[value]["hd95"] - hd) < 1e-3
    assert ours[2]["dice"] == 1.0 and ours[2]["hd95"] == 0.0


def test_empty_mask_convention():
    empty, blob = np.zeros((8, 8, 8), np.int64), np.zeros((8, 8, 8), np.int64)
    blob[2:5, 2:5, 2:5] = 1
    both_empty = label_metrics(empty, empty, [1], (1, 1, 1))[1]
    assert both_empty["dice"] == 1.0 and both_empty["hd95"] == 0.0
    missed = label_metrics(empty, blob, [1], (1, 1, 1))[1]
    assert missed["dice"] == 0.0 and math.isnan(missed["hd95"]) and math.isnan(missed["msd"])
    assert dice(blob, blob) == 1.0


def test_evaluate_cli_writes_csv_and_summary(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    for i in range(3):
        ref = np.zeros((20, 20, 10), np.uint8)
        ref[5:15, 5:15, 2:8] = 1
        pred = np.roll(ref, i, axis=0)
        affine = np.diag([*SPACING, 1.0])
        nib.save(nib.Nifti1Image(ref, affine), tmp_path / "ref" / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image(pred, affine), tmp_path / "pred" / f"c{i}.nii.gz")
    result = CliRunner().invoke(
        app,
        ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "-o", str(tmp_path / "m.csv")],
    )
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "m.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("case_id,label,value,dice,hd95,msd") and len(rows) == 4
    summary = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert '"dice"' in summary and '"median"' in summary
    assert "label_1" in result.output


def test_evaluate_reports_a_prediction_off_the_reference_grid(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), tmp_path / "ref" / "a.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 5), np.uint8), np.eye(4)), tmp_path / "pred" / "a.nii.gz")
    result = CliRunner().invoke(
        app,
        ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "-o", str(tmp_path / "m.csv")],
    )
    assert result.exit_code == 1
    assert "a.nii.gz" in result.output and "grid" in result.output
