"""End-to-end recipes on real data at tiny scale."""

import csv
import subprocess
import sys

import nibabel as nib
import numpy as np

from .conftest import shared_path
from .helpers import REPO


def test_pancreas_recipe_on_the_totalsegmentator_ct(tmp_path):
    """The CT branch on real abdominal anatomy: HU planning, resampling, sliding window, written back on
    the CT's grid. Pancreas is label 7 of TotalSegmentator's (model-generated) map, the one class here."""
    ts = shared_path("data", "totalsegmentator_example")
    src = tmp_path / "Task07_like"
    for sub in ("imagesTr", "labelsTr"):
        (src / sub).mkdir(parents=True)
    pairs = {"ct_full": ("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz"),
             "ct_crop": ("example_ct_sm.nii.gz", "example_seg.nii.gz")}
    for case, (image, label) in pairs.items():
        (src / "imagesTr" / f"{case}.nii.gz").symlink_to(ts / image)
        (src / "labelsTr" / f"{case}.nii.gz").symlink_to(ts / label)
    run = tmp_path / "run"
    tiny = ["model.features=[4, 8, 16]", "sampling.patch_size_3d=[32, 32, 32]", "sampling.batch_size_3d=2",
            "train.epochs=1", "train.iterations_per_epoch=2", "train.num_workers=0", "data.cache=memory"]
    cmd = [sys.executable, str(REPO / "pipelines" / "pancreas_ct.py"), str(src), str(run), "--device", "cpu",
           "--val-fraction", "0.5", "--test-fraction", "0", "--test-split", "val",
           "--plan-set", "data.label_remap={7: 1}", *[a for o in tiny for a in ("--set", o)]]
    result = subprocess.run(cmd, capture_output=True, encoding="utf-8", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    plan = (run / "plan.yaml").read_text(encoding="utf-8")
    assert "normalization: ct" in plan and "label_remap:\n    7: 1" in plan
    (row,) = list(csv.DictReader(open(run / "pred" / "volseg_run.csv", encoding="utf-8")))
    assert row["status"] == "ok"
    case = row["case_id"]
    source = nib.load(src / "imagesTr" / f"{case}.nii.gz")
    output = nib.load(run / "pred" / f"{case}.nii.gz")
    assert output.shape == source.shape and np.allclose(output.affine, source.affine, atol=1e-5)
    assert set(np.unique(np.asarray(output.dataobj))) <= {0, 1}
    metrics = list(csv.DictReader(open(run / "test_metrics.csv", encoding="utf-8")))
    assert [m["label"] for m in metrics] == ["pancreas"]
    assert (run / "pred" / f"{case}_qc.png").is_file()
