"""Benchmarks are not timed tests: the suite only checks that each runs on a tiny setting and reports."""

import json
import subprocess
import sys

from .helpers import REPO


def _run(script, *args, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args, "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_model_benchmark_runs_tiny(tmp_path):
    _run("models.py", "--quick", "--models", "unet", "r2unet", tmp_path=tmp_path)
    report = json.loads((tmp_path / "models.json").read_text())
    assert report["matmul_gflops_per_s"] > 0
    kinds = {(r["kind"], r["model"]) for r in report["rows"]}
    assert kinds == {("volseg", "unet"), ("monai", "unet"), ("volseg", "r2unet")}
    unet = next(r for r in report["rows"] if r == {**r, "kind": "volseg", "model": "unet"})
    assert unet["gflop"] > 0 and unet["forward_s"] > 0 and "train_step_vs_monai" in unet
    assert "| unet | volseg |" in (tmp_path / "models.md").read_text()


def test_whole_volume_benchmark_runs_tiny(tmp_path):
    _run("whole_volume.py", "--quick", "--backends", "torch", tmp_path=tmp_path)
    report = json.loads((tmp_path / "whole_volume.json").read_text())
    ours = report["rows"][1]
    assert set(ours["stages"]) == {"read", "preprocess", "network", "stitching", "postprocess", "invert", "write"}
    assert ours["dice_vs_monai"] >= 0.99  # same weights, same overlap: same labels
