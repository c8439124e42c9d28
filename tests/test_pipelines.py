"""End-to-end recipes on real data at tiny scale."""

import csv
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from .conftest import shared_path
from .helpers import REPO


def test_pancreas_recipe_on_the_totalsegmentator_ct(tmp_path):
    """The CT branch on real abdominal anatomy: HU planning, resampling, sliding window, written back on
    the CT's grid. Pancreas is label 7 of TotalSegmentator's (model-generated) map, the one class here."""
    ts = shared_path("data", "totalsegmentator_example")
    src = tmp_path / "Task07_like"
    for sub in ("imagesTr", "labelsTr"):
        (src / sub).mkdir(parents=True)
    pairs = {
        "ct_full": ("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz"),
        "ct_crop": ("example_ct_sm.nii.gz", "example_seg.nii.gz"),
    }
    for case, (image, label) in pairs.items():
        (src / "imagesTr" / f"{case}.nii.gz").symlink_to(ts / image)
        (src / "labelsTr" / f"{case}.nii.gz").symlink_to(ts / label)
    run = tmp_path / "run"
    tiny = [
        "model.features=[4, 8, 16]",
        "sampling.patch_size_3d=[32, 32, 32]",
        "sampling.batch_size_3d=2",
        "train.epochs=1",
        "train.iterations_per_epoch=2",
        "train.num_workers=0",
        "data.cache=memory",
    ]
    cmd = [
        sys.executable,
        str(REPO / "pipelines" / "pancreas_ct.py"),
        str(src),
        str(run),
        "--device",
        "cpu",
        "--val-fraction",
        "0.5",
        "--test-fraction",
        "0",
        "--test-split",
        "val",
        "--plan-set",
        "data.label_remap={7: 1}",
        *[a for o in tiny for a in ("--set", o)],
    ]
    result = subprocess.run(cmd, capture_output=True, encoding="utf-8", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    plan = (run / "plan.yaml").read_text(encoding="utf-8")
    assert "normalization: ct" in plan and "label_remap:\n    7: 1" in plan
    (row,) = list(csv.DictReader(open(run / "pred" / "volseg_run.csv", encoding="utf-8")))
    assert row["status"] == "ok"
    case = row["case_id"]
    source = nib.load(src / "imagesTr" / f"{case}.nii.gz")
    output = nib.load(run / "pred" / f"{case}_seg.nii.gz")
    assert output.shape == source.shape and np.allclose(output.affine, source.affine, atol=1e-5)
    assert set(np.unique(np.asarray(output.dataobj))) <= {0, 1}
    metrics = list(csv.DictReader(open(run / "test_metrics.csv", encoding="utf-8")))
    assert [m["label"] for m in metrics] == ["pancreas"]
    assert (run / "pred" / f"{case}_qc.png").is_file()


def _compare_models():
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_models", REPO / "pipelines" / "compare_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_model_comparison_reports_the_mean_and_spread_over_seeds(tmp_path):
    compare = _compare_models()

    def run(model, seed, dice):
        return {
            "model": model,
            "mode": "3D",
            "seed": seed,
            "parameters": 1000,
            "mflops_per_voxel": 2.0,
            "dice_anterior": dice,
            "dice_posterior": dice,
            "dice_mean": dice,
            "hd95_mm": 2.0,
            "epochs": 4,
            "train_minutes": 10.0,
            "first_epoch_s": 120.0,
            "steady_epoch_s": 90.0 + seed,
            "infer_seconds_per_case": 0.1,
        }

    runs = [run("unet", 0, 0.80), run("unet", 1, 0.84), run("attunet", 0, 0.85), run("attunet", 1, 0.85)]
    summary = compare.summarize(runs)
    assert [(r["model"], r["seeds"]) for r in summary] == [("attunet", 2), ("unet", 2)]  # best first
    unet = summary[1]
    assert unet["dice_mean"] == pytest.approx(0.82) and unet["dice_mean_spread"] == pytest.approx(0.02)
    assert unet["steady_epoch_s"] == pytest.approx(90.5)
    compare.write_outputs({"Equal time": runs, "Equal epochs": runs[:2]}, tmp_path)
    table = (tmp_path / "comparison.md").read_text(encoding="utf-8")
    assert "## Equal time" in table and "## Equal epochs" in table and "**0.8200** ± 0.0200" in table
    assert len(list(csv.DictReader(open(tmp_path / "comparison.csv", encoding="utf-8")))) == 6
    assert (tmp_path / "comparison.png").stat().st_size > 0
