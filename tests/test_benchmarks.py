"""Benchmarks are not timed tests: the suite only checks that the entry point runs on a tiny setting and
reports every measurement the goals are judged on."""

import json
import os
import subprocess
import sys

from .helpers import REPO

STAGES = {"read", "preprocess", "network", "stitching", "postprocess", "invert", "write"}


def assert_provenance(folder, name, script):
    """The result was written through benchmarks/record.py: command, commit, date and machine."""
    made = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))["provenance"]
    assert made["command"].startswith(f"python benchmarks/{script}")
    assert made["commit"] and made["date"].endswith("Z")
    assert made["machine"]["cores"] > 0 and made["machine"]["python"]
    last = (folder / f"{name}.md").read_text(encoding="utf-8").splitlines()[-1]
    assert last.startswith(f"Made by `{made['command']}` at commit {made['commit']}")


def test_benchmark_entry_point_runs_tiny_and_reports_each_goal(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        encoding="utf-8",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    models = json.loads((tmp_path / "models.json").read_text(encoding="utf-8"))
    assert models["matmul_gflops_per_s"] > 0
    kinds = {(r["kind"], r["model"]) for r in models["rows"]}
    assert kinds == {("default", "default model"), ("volseg", "unet"), ("monai", "unet")}
    default = [r for r in models["rows"] if r["kind"] == "default"]
    assert {r["counterpart"] for r in default} >= {"volseg torch"}
    assert all(r["gflop"] > 0 and r["patch"] == [40, 56, 40] for r in default)
    unet = next(r for r in models["rows"] if r["kind"] == "volseg")
    assert unet["gflop"] > 0 and unet["forward_s"] > 0 and "train_step_vs_monai" in unet
    assert "| unet | volseg |" in (tmp_path / "models.md").read_text(encoding="utf-8")

    whole = json.loads((tmp_path / "whole_volume.json").read_text(encoding="utf-8"))
    assert [r["kind"] for r in whole["rows"]] == ["monai", "auto", "int8"]
    assert [r["precision"] for r in whole["rows"][1:]] == ["fp32", "int8"]
    for row in whole["rows"]:
        assert set(row["stages"]) == STAGES and row["total_s"] > 0
    assert whole["rows"][0]["dice_vs_monai"] == 1.0  # the baseline against itself: the comparison is wired

    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    goals = " ".join(g["goal"] for g in summary["goals"])
    for words in (
        "2.5x faster",
        "8x faster",
        "60% of fp32 matmul",
        "10% of whole-volume",
        "peak memory",
        "unet training step",
    ):
        assert words in goals
    assert "| goal | measured | met |" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    for name, script in (("models", "models.py"), ("whole_volume", "whole_volume.py"), ("summary", "run.py")):
        assert_provenance(tmp_path, name, script)


def test_archive_discovery_reads_headers_only(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "archive_discovery.py"), "--files", "250", "--out", str(tmp_path)],
        capture_output=True,
        encoding="utf-8",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads((tmp_path / "archive_discovery.json").read_text(encoding="utf-8"))
    assert found["files"] == 250 and found["series"] == 3 and found["files_per_second"] > 0
    assert found["bytes_read_per_file"] < found["file_bytes"] / 4  # 32 KB of pixels per file stay unread
    assert "| files | series |" in (tmp_path / "archive_discovery.md").read_text(encoding="utf-8")
    assert_provenance(tmp_path, "archive_discovery", "archive_discovery.py")


def test_nnunet_engines_times_every_engine_and_a_whole_case(tmp_path):
    """benchmarks/nnunet_engines.py on the tiny nnU-Net folder: a row per engine (run or skipped with the
    reason), GFLOP per window, and a whole case's stages."""
    tiny = REPO / "tests" / "data" / "nnunet_tiny"
    folder = next((tiny / "models" / "plain").glob("Dataset*/nnUNetTrainer__*"))
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "nnunet_engines.py"),
            "--model",
            str(folder),
            "--case",
            str(tiny / "images" / "iso_0000.nii.gz"),
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
            "--nnunet-seconds",
            "9",
        ],
        capture_output=True,
        encoding="utf-8",
        timeout=600,
        env={**os.environ, "VOLSEG_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "nnunet_engines.json").read_text(encoding="utf-8"))
    engines = {r["engine"]: r for r in data["engines"]}
    assert set(engines) == {"torch fp32", "openvino fp32", "openvino bf16", "openvino int8"}
    assert engines["torch fp32"]["gflop"] > 0 and engines["openvino fp32"]["window_s"] > 0
    assert "int8 twin" in engines["openvino int8"]["skipped"]  # none was exported into this cache
    fp32 = next(r for r in data["case_runs"] if r["precision"] == "fp32")
    assert fp32["windows"] >= 1 and set(fp32["stages"]) >= {"read", "preprocess", "network", "export"}
    assert "can be more than" in (tmp_path / "nnunet_engines.md").read_text(encoding="utf-8")
    assert_provenance(tmp_path, "nnunet_engines", "nnunet_engines.py")


def test_gpu_check_runs_tiny_on_the_cpu_and_records_every_figure(tmp_path):
    """The GPU check, prepared before any GPU is lent, cannot rot: its tiny CPU run trains, infers, compares
    labels, runs the sliding window and the nnU-Net folder, and writes its record."""
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--tiny",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        encoding="utf-8",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    check = json.loads((tmp_path / "gpu_check_tiny_cpu.json").read_text(encoding="utf-8"))
    assert check["device"]["device"] == "cpu" and check["device"]["torch"]
    assert set(check["train"]) == {"attunet 3D", "unet 2D"}
    for run in check["train"].values():
        assert run["epochs"] == 1 and run["steps_per_second"] > 0 and 0 <= run["val_dice"] <= 1
        assert run["peak_gpu_memory_mb"] is None  # the CPU has none to report
    assert set(check["infer"]) == {"hippocampus", "abdomen CT", "nnunet"}
    for name, run in check["infer"].items():
        assert run["passed"] and run["median_case_s"] > 0, name
        assert run["lowest_dice_per_label"] and set(run["lowest_dice_per_label"].values()) == {1.0}, name
    assert check["infer"]["hippocampus"]["cases"] == 2 and check["infer"]["abdomen CT"]["cases"] == 1
    window = check["sliding_window"]
    assert window["windows"] >= 1 and window["windows_per_second"] > 0
    assert_provenance(tmp_path, "gpu_check_tiny_cpu", "gpu_check.py")


def test_gpu_check_label_agreement_is_monai_dice():
    """The check's Dice per label (device against CPU) is MONAI's, background left out."""
    import numpy as np
    import torch
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    sys.path.insert(0, str(REPO))
    from benchmarks.gpu_check import agreement

    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, (20, 18, 16))
    b = np.where(rng.random(a.shape) < 0.1, rng.integers(0, 3, a.shape), a)
    ours = agreement(a, b)
    theirs = compute_dice(
        one_hot(torch.as_tensor(a)[None, None], 3), one_hot(torch.as_tensor(b)[None, None], 3), include_background=False
    )[0]
    assert list(ours) == [1, 2] and np.allclose(list(ours.values()), theirs.numpy())
    assert min(ours.values()) < 0.99  # a tenth of the voxels redrawn: this pair would fail the check
