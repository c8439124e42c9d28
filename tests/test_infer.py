"""volseg infer: geometry of every output, orientation invariance, DICOM input, batch isolation, resume."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from typer.testing import CliRunner

from volseg.cli import app
from volseg.data.manifest import read_manifest
from volseg.inference.inputs import CaseInput, collect_inputs, select_part
from volseg.inference.outputs import RunOutputs
from volseg.inference.zoo_segmenter import ZooSegmenter
from volseg.pretrained import resolve_model

from .conftest import shared_path
from .helpers import REPO, tiny_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def test_cases():
    return [c for c in read_manifest(REPO / "data_manifest.csv") if c.split == "test"]


def _infer(*args):
    return runner.invoke(app, ["infer", *map(str, args)])


def _rows(path):
    return list(csv.DictReader(open(path, encoding="utf-8")))


def test_outputs_keep_each_inputs_grid_and_evaluate(run_dir, test_cases, tmp_path):
    result = _infer(REPO / "data_manifest.csv", "--split", "test", "--model", run_dir, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    for case in test_cases:
        source, output = nib.load(case.image), nib.load(tmp_path / "out" / f"{case.case_id}_seg.nii.gz")
        assert output.shape == source.shape
        assert np.allclose(output.affine, source.affine, atol=1e-5)
        assert output.get_data_dtype() == np.uint8
    rows = _rows(tmp_path / "out" / "volseg_run.csv")
    assert [r["status"] for r in rows] == ["ok"] * len(test_cases)
    result = runner.invoke(
        app,
        ["evaluate", "--pred", tmp_path / "out", "--manifest", REPO / "data_manifest.csv", "-o", tmp_path / "m.csv"],
    )
    assert result.exit_code == 0, result.output
    assert "Dice" in result.output and len(_rows(tmp_path / "m.csv")) == 2 * len(test_cases)


def _reoriented(src, dst, transform):
    """Save the same scan with its voxel axes flipped/permuted and the affine adjusted (same world)."""
    img = nib.load(src)
    ornt = {"LPS": [[0, -1], [1, -1], [2, 1]], "PIL": [[1, -1], [2, 1], [0, -1]]}[transform]
    ornt = np.asarray(ornt, dtype=float)
    data = nib.orientations.apply_orientation(np.asarray(img.dataobj), ornt)
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape)
    nib.save(nib.Nifti1Image(data, affine), dst)


@pytest.mark.parametrize("transform", ["LPS", "PIL"])
def test_orientation_invariance_in_world_space(run_dir, test_cases, tmp_path, transform):
    src = test_cases[0].image
    (tmp_path / "in").mkdir()
    shutil.copyfile(src, tmp_path / "in" / "ras.nii.gz")
    _reoriented(src, tmp_path / "in" / "other.nii.gz", transform)
    assert _infer(tmp_path / "in", "--model", run_dir, "-o", tmp_path / "out").exit_code == 0
    ras = nib.as_closest_canonical(nib.load(tmp_path / "out" / "ras_seg.nii.gz"))
    other = nib.load(tmp_path / "out" / "other_seg.nii.gz")
    assert not np.allclose(other.affine, ras.affine)
    other = nib.as_closest_canonical(other)
    assert np.allclose(other.affine, ras.affine, atol=1e-5)
    a, b = np.asarray(ras.dataobj), np.asarray(other.dataobj)
    assert (a > 0).sum() > 0, "the model predicts nothing; the test would be vacuous"
    for value in (1, 2):
        inter = np.logical_and(a == value, b == value).sum()
        total = (a == value).sum() + (b == value).sum()
        assert total == 0 or 2 * inter / total >= 0.99


def test_dicom_series_output_lies_on_the_series_grid(run_dir, tmp_path):
    series = shared_path("data", "totalsegmentator_example", "example_ct_dicom")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - Modality: CT\n", encoding="utf-8"
    )  # the test model is an MR model: take the CT anyway
    result = _infer(series, "--model", run_dir, "-o", tmp_path / "out", "--series-rules", rules)
    assert result.exit_code == 0, result.output
    (row,) = _rows(tmp_path / "out" / "volseg_run.csv")
    assert row["case_id"].startswith("dcm-") and row["status"] == "ok" and str(series) in row["input"]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
    reference = reader.Execute()
    output = sitk.ReadImage(str(tmp_path / "out" / f"{row['case_id']}_seg.nii.gz"))
    assert output.GetSize() == reference.GetSize()
    assert np.allclose(output.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    assert np.allclose(output.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    assert np.allclose(output.GetDirection(), reference.GetDirection(), atol=1e-6)


def _bad_inputs(folder, good):
    folder.mkdir()
    for case in good:
        shutil.copyfile(case.image, folder / case.image.name)
    data = good[0].image.read_bytes()
    (folder / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    (folder / "notes.nii.gz").write_text("not an image", encoding="utf-8")
    img = nib.load(good[0].image)
    nib.save(nib.Nifti1Image(np.stack([np.asarray(img.dataobj)] * 2, -1), img.affine), folder / "fourd.nii.gz")


def test_bad_cases_fail_alone_without_partial_outputs(run_dir, test_cases, tmp_path):
    _bad_inputs(tmp_path / "in", test_cases[:3])
    result = _infer(tmp_path / "in", "--model", run_dir, "-o", tmp_path / "out")
    assert result.exit_code == 1
    rows = {r["case_id"]: r for r in _rows(tmp_path / "out" / "volseg_run.csv")}
    for case in test_cases[:3]:
        assert rows[case.case_id]["status"] == "ok"
        assert (tmp_path / "out" / f"{case.case_id}_seg.nii.gz").is_file()
    for bad, reason in (("truncated", "truncated"), ("notes", "not a NIfTI"), ("fourd", "4D")):
        assert rows[bad]["status"] == "failed" and reason in rows[bad]["error"], rows[bad]
        assert bad in rows[bad]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{c.case_id}_seg.nii.gz" for c in test_cases[:3]] + ["volseg_run.csv", "statistics.csv", "statistics.json"]
    )


def test_single_input_without_output_folder(run_dir, test_cases, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _infer(test_cases[0].image, "--model", run_dir)
    assert result.exit_code == 0, result.output
    expected = tmp_path / f"{test_cases[0].case_id}_seg.nii.gz"
    assert str(expected) in result.output and expected.is_file()
    assert not (tmp_path / "volseg_run.csv").exists()


def test_existing_outputs_need_resume_or_overwrite(run_dir, test_cases, tmp_path):
    args = (test_cases[0].image, "--model", run_dir, "-o", tmp_path / "out")
    assert _infer(*args).exit_code == 0
    again = _infer(*args)
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert _infer(*args, "--resume").exit_code == 0
    assert _rows(tmp_path / "out" / "volseg_run.csv")[-1]["status"] == "skipped"  # the last line is the state
    assert _infer(*args, "--overwrite").exit_code == 0
    assert _infer(*args, "--resume", "--overwrite").exit_code == 2


def test_parts_split_a_cohort_without_overlap(test_cases):
    cases = collect_inputs([REPO / "data_manifest.csv"], split="test")
    parts = [select_part(cases, 3, k) for k in range(3)]
    ids = [c.case_id for part in parts for c in part]
    assert sorted(ids) == sorted(c.case_id for c in test_cases) and len(ids) == len(set(ids))


@pytest.mark.parametrize("done_at_kill, delay", [(1, 0.0), (2, 0.13), (4, 0.31)])
def test_kill_then_resume_finishes_without_redoing(run_dir, test_cases, tmp_path, done_at_kill, delay):
    """SIGKILL mid-batch at three different moments (after 1, 2, 4 outputs, plus a delay that lands the kill
    inside the next case's work), then --resume: every case done once, no partial file under a final name."""
    (tmp_path / "in").mkdir()
    for case in test_cases[:6]:
        shutil.copyfile(case.image, tmp_path / "in" / case.image.name)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "volseg",
        "infer",
        str(tmp_path / "in"),
        "--model",
        str(run_dir),
        "-o",
        str(out),
        "--tta",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("hippocampus_*.nii.gz"))) < done_at_kill:
        time.sleep(0.02)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("hippocampus_*_seg.nii.gz")}
    assert done_at_kill <= len(done_before) < 6, "the kill must land mid-batch"
    for p in done_before:
        nib.load(out / p).get_fdata()  # every final-named file is complete
    with (out / "volseg_run.csv").open("a", encoding="utf-8") as f:
        f.write("hippocampus_torn,/in/x.nii")  # a line torn by the kill: no newline, too few fields
    result = subprocess.run([*cmd, "--resume"], capture_output=True, encoding="utf-8")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _rows(out / "volseg_run.csv")  # append-only: one line per case, whichever run wrote it
    assert sorted(r["case_id"] for r in lines) == sorted(c.case_id for c in test_cases[:6])
    rows = {r["case_id"]: r["status"] for r in lines}
    assert all(rows[name.removesuffix("_seg.nii.gz")] in ("ok", "skipped") for name in done_before)
    assert all(v == "ok" for k, v in rows.items() if f"{k}_seg.nii.gz" not in done_before)
    for name, mtime in done_before.items():
        assert (out / name).stat().st_mtime_ns == mtime


def test_qc_pictures_with_attention_maps(test_cases, tmp_path):
    run = tiny_run(tmp_path, 3, "model.name=attunet")
    result = _infer(test_cases[0].image, "--model", run, "-o", tmp_path / "out", "--qc-attention")
    assert result.exit_code == 0, result.output
    png = tmp_path / "out" / f"{test_cases[0].case_id}_qc.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(png).shape[:2]
    assert height > width / 3 * 1.5  # two rows: labels and attention


def test_attention_qc_refused_for_models_without_gates(run_dir, test_cases, tmp_path):
    result = _infer(test_cases[0].image, "--model", run_dir, "-o", tmp_path / "out", "--qc-attention")
    assert result.exit_code == 2 and "no attention gates" in result.output


def test_a_hung_read_times_out_and_the_batch_goes_on(run_dir, test_cases, tmp_path):
    import threading

    from volseg.inference.batch import BatchOptions, run_batch
    from volseg.inference.inputs import CaseInput
    from volseg.inference.zoo_segmenter import ZooSegmenter

    segmenter = ZooSegmenter(run_dir, "cpu")
    release = threading.Event()
    load = segmenter.load

    def hanging_load(case, check=None):
        if case.case_id == test_cases[1].case_id:
            release.wait(60)  # a stalled network share
        return load(case, check)

    segmenter.load = hanging_load
    cases = [CaseInput(c.case_id, c.images) for c in test_cases[:3]]
    try:
        results = run_batch(cases, RunOutputs(tmp_path / "out"), segmenter, BatchOptions(case_timeout=1.0))
    finally:
        release.set()
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert "did not finish within 1 s" in results[1].error and test_cases[1].image.name in results[1].error
    assert not (tmp_path / "out" / f"{test_cases[1].case_id}_seg.nii.gz").exists()


def test_full_disk_marks_the_case_failed_with_the_file_named(run_dir, test_cases, tmp_path, monkeypatch):
    import errno

    from volseg.data import io

    def full_disk(image, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "_save_nifti", full_disk)  # the label map's writer
    result = _infer(test_cases[0].image, "--model", run_dir, "-o", tmp_path / "out")
    assert result.exit_code == 1
    (row,) = _rows(tmp_path / "out" / "volseg_run.csv")
    assert row["status"] == "failed"
    assert f"{test_cases[0].case_id}_seg.nii.gz: cannot write (No space left on device)" in row["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "statistics.json",
        "volseg_run.csv",
    ]  # no partial file


def test_infer_without_model_uses_the_shipped_default(test_cases, tmp_path, monkeypatch):
    from volseg.pretrained import DEFAULT, model_file

    MODEL_FILE = model_file(DEFAULT)
    monkeypatch.chdir(tmp_path)
    result = _infer(test_cases[0].image, "--backend", "torch")
    assert result.exit_code == 0, result.output
    assert str(MODEL_FILE) in result.output  # the user sees which model ran
    output = nib.load(tmp_path / f"{test_cases[0].case_id}_seg.nii.gz")
    reference = nib.load(test_cases[0].label)
    labels, truth = np.asarray(output.dataobj), np.asarray(reference.dataobj)
    for value in (1, 2):
        overlap = (
            2
            * np.logical_and(labels == value, truth == value).sum()
            / ((labels == value).sum() + (truth == value).sum())
        )
        assert overlap > 0.75, (value, overlap)


def test_tta_mirrors_only_the_axes_the_model_was_trained_mirrored_on():
    from volseg.config import load_config
    from volseg.runtime.predict import mirror_axes, probabilities_to_labels

    assert mirror_axes(load_config(None, ["model.dims=3", "augment.flip=true"])) == [0, 1, 2]
    assert mirror_axes(load_config(None, ["model.dims=3", "augment.flip=[1, 2]"])) == [1, 2]
    assert mirror_axes(load_config(None, ["model.dims=2", "sampling.slice_axis=1", "augment.flip=true"])) == [0, 2]
    assert mirror_axes(load_config(None, ["model.dims=3", "augment.flip=false"])) == []
    # the built-in CT model never saw a mirrored patient (left/right kidneys): --tta is refused, not averaged
    # into empty labels (8 mirror images, 7 of them nonsense to it, erased every organ before this check)
    with pytest.raises(ValueError, match="trained without mirroring"):
        ZooSegmenter(resolve_model("abdomen-ct"), "cpu", tta=True)
    probs = torch.rand(5, 9, 8, 7)
    probs[:, :3] = 0.25  # ties go to the first class, as with argmax
    assert torch.equal(probabilities_to_labels(probs), probs.argmax(0))


def test_segmenter_times_each_stage_of_the_case_it_runs(run_dir, test_cases):
    """The per-stage timings benchmarks/whole_volume.py reports come from the code `volseg infer` runs."""
    segmenter = ZooSegmenter(run_dir, "cpu")
    data = segmenter.load(CaseInput(test_cases[0].case_id, test_cases[0].images))
    labels, _ = segmenter.predict(data)
    assert set(data["timings"]) == {"read", "preprocess", "network", "stitching", "invert", "postprocess"}
    assert all(seconds >= 0 for seconds in data["timings"].values()) and data["timings"]["network"] > 0
    assert labels.shape == tuple(nib.load(test_cases[0].image).shape)


# ------------------------------------------------------------------------ a scan unlike the training scans

BUNDLED_CT = REPO / "data" / "abdomen_ct" / "ct.nii.gz"


def test_the_mri_model_on_a_ct_warns_in_one_line_within_a_second_before_any_window(tmp_path, caplog):
    """Issue 41: the default (MRI) model ran on the bundled CT for 404.7 s with no warning."""
    from volseg.inference.batch import BatchOptions, run_batch

    segmenter = ZooSegmenter(resolve_model("hippocampus-mri"), "cpu", backend="torch")
    first_window: list[float] = []

    def network(x):
        first_window.append(time.perf_counter())
        raise RuntimeError("stopped after the first window")  # the test needs no 400 s of windows

    segmenter.network = network
    started = time.perf_counter()
    (result,) = run_batch([CaseInput("ct", (BUNDLED_CT,))], RunOutputs(tmp_path), segmenter, BatchOptions())
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    warned = warning.created - time.time() + time.perf_counter()  # the record's wall clock, on perf_counter
    assert warned - started < 1.0 and first_window and warned < first_window[0]
    text = warning.getMessage()
    assert "\n" not in text and text.startswith(f"warning: {BUNDLED_CT}: it looks like CT (")
    assert "trained on MR" in text and "field of view, 366x303x336 mm, is 600x the training scans'" in text
    assert result.status == "failed"  # by the stopped network, not by the screening


def test_strict_refuses_a_ct_given_to_the_mri_model_with_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _infer(BUNDLED_CT, "--strict", "--backend", "torch")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {BUNDLED_CT}: refused (--strict): it looks like CT"), line
    assert not list(tmp_path.iterdir())


def test_strict_refuses_such_a_case_in_a_batch_and_segments_the_others(tmp_path, test_cases):
    """In a folder the refused case is recorded (status refused, exit 1) and the MRI cases are segmented."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(BUNDLED_CT, folder / "ct.nii.gz")
    shutil.copyfile(test_cases[0].image, folder / test_cases[0].image.name)
    result = _infer(folder, "--strict", "--backend", "torch", "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    rows = {r["case_id"]: r for r in _rows(tmp_path / "out" / "volseg_run.csv")}
    assert rows["ct"]["status"] == "refused" and "looks like CT" in rows["ct"]["error"]
    assert rows[test_cases[0].case_id]["status"] == "ok" and rows[test_cases[0].case_id]["note"] == ""
    assert not (tmp_path / "out" / "ct_seg.nii.gz").exists()


def test_a_model_records_its_training_scans_and_an_mri_case_is_not_flagged(run_dir, test_cases):
    from volseg.data.scan_screen import TrainingScans, mismatch
    from volseg.runtime.checkpoint import load_checkpoint

    recorded = TrainingScans.from_dict(load_checkpoint(run_dir / "last.pt")["training_scans"])
    assert recorded.modality == "MR" and 30 < recorded.extent_mm[0] < 45  # hippocampus crops are ~35x50x35 mm
    image = nib.load(test_cases[0].image)
    assert mismatch(recorded, np.asarray(image.dataobj), image.affine) == ""


def test_outputs_never_take_the_name_of_the_scan(tmp_path, test_cases):
    """Issue 41: with -o the scans' own folder, the label map was named exactly like the scan."""
    folder = tmp_path / "scans"
    folder.mkdir()
    scan = folder / test_cases[0].image.name
    shutil.copyfile(test_cases[0].image, scan)
    before = scan.read_bytes()
    result = _infer(scan, "-o", folder, "--backend", "torch", "--qc")
    assert result.exit_code == 0, result.output
    assert scan.read_bytes() == before
    case = test_cases[0].case_id
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [scan.name, f"{case}_seg.nii.gz", f"{case}_qc.png", "volseg_run.csv", "statistics.csv", "statistics.json"]
    )


def test_qc_picture_names_the_case_and_every_label_in_its_colour(tmp_path, monkeypatch):
    """Issue 41: the picture had no legend, no label names and no case id."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from volseg.data.io import Scan
    from volseg.inference.qc import save_qc

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    image = np.random.default_rng(0).normal(size=(1, 30, 30, 20)).astype(np.float32)
    labels = np.zeros((30, 30, 20), np.uint8)
    labels[5:12, 5:12, 5:12], labels[15:25, 15:25, 8:14] = 1, 2
    scan = Scan(image, {"original_affine": np.diag([0.8, 0.8, 2.0, 1.0])})
    names = {1: "liver", 2: "spleen", 3: "kidney_left"}
    path = save_qc(scan, labels, tmp_path / "c_qc.png", None, names, {2: "#00ff00"}, "case_7: abdomen")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (figure,) = figures
    assert figure._suptitle.get_text() == "case_7: abdomen"
    (legend,) = figure.legends
    entries = {t.get_text(): to_hex(h.get_facecolor()) for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert entries == {"1 liver": "#ff7f0e", "2 spleen": "#00ff00", "3 kidney_left (not found)": "#d62728"}


def test_a_trained_run_and_the_viewer_install_print_no_warning(run_dir, test_cases, tmp_path):
    """Issue 41: using a trained run printed torch's ONNX exporter warnings (a fresh cache: the export runs),
    and set-up printed runpy's warning about volseg.report.viewer."""
    env = {**os.environ, "VOLSEG_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "default"}
    infer = [sys.executable, "-m", "volseg", "infer", str(test_cases[0].image), "--model", str(run_dir)]
    segmented = subprocess.run([*infer, "-o", str(tmp_path / "out")], capture_output=True, encoding="utf-8", env=env)
    assert segmented.returncode == 0, segmented.stderr
    assert segmented.stderr == "", segmented.stderr
    viewer = subprocess.run([sys.executable, "-m", "volseg.report.viewer"], capture_output=True, encoding="utf-8")
    assert "Warning" not in viewer.stderr and "warning" not in viewer.stderr, viewer.stderr
