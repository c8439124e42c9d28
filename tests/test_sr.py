"""DICOM SR measurement reports (TID 1500): written beside the SEG they reference, valid for dciodvfy, read back
by highdicom with every figure equal to ``statistics.csv``."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from typer.testing import CliRunner

from volseg.cli import app
from volseg.data import io
from volseg.dicom.archive import discover_series
from volseg.dicom.seg import write_seg
from volseg.dicom.sr import write_sr
from volseg.inference.label_statistics import label_statistics

from .bad_inputs import dicom_series
from .conftest import missing_tool, shared_path

UID = "1.2.826.0.1.3680043.2.1125.8."
STATISTICS = {
    "Mean": "mean_intensity",
    "Standard Deviation": "std_intensity",
    "Minimum": "min_intensity",
    "Maximum": "max_intensity",
}


def dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        missing_tool("dciodvfy", "not installed (Debian package dicom3tools; setup.sh installs it as root)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, encoding="utf-8", errors="replace")
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def check_report(sr_path: Path, seg_path: Path, rows: list[dict], unit: str) -> None:
    """The SR holds one group per statistics row, each referencing its segment of the SEG, figures equal."""
    assert dciodvfy_errors(sr_path) == []
    report = hd.sr.srread(sr_path)
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    segments = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    groups = report.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [r["name"] for r in rows]
    for group, row in zip(groups, rows):
        referenced = group.referenced_segment
        assert referenced.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert segments[referenced.referenced_segment_numbers[0]] == row["name"]
        figures = {}
        for m in group.get_measurements():
            key = "volume_ml" if m.name == codes.SCT.Volume else STATISTICS[m.derivation.meaning]
            figures[key] = (m.value, m.unit.value)
        assert figures.pop("volume_ml") == (float(row["volume_ml"]), "ml")
        if int(row["voxels"]) == 0:
            assert figures == {}
        else:
            assert figures == {key: (float(row[key]), unit) for key in STATISTICS.values()}
    assert report.PatientID == seg.PatientID and report.StudyInstanceUID == seg.StudyInstanceUID
    assert report.Manufacturer == "volseg"


def statistics_rows(out: Path, case_id: str) -> list[dict]:
    with (out / "statistics.csv").open(encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["case_id"] == case_id]


def test_infer_writes_the_sr_and_the_seg_it_references(tmp_path):
    folder = dicom_series(
        tmp_path / "ct", series_uid=f"{UID}2.1", slices=12, tags={"0020|000d": f"{UID}1.1", "0010|0020": "P1"}
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["infer", str(folder), "--model", "abdomen-ct", "-o", str(out), "--output-format", "sr"]
    )
    assert result.exit_code == 0, result.output
    assert "CASE_seg.dcm is written too" in result.output
    (sr_path,) = out.glob("*_sr.dcm")
    case_id = sr_path.name[: -len("_sr.dcm")]
    check_report(sr_path, out / f"{case_id}_seg.dcm", statistics_rows(out, case_id), "[hnsf'U]")


def test_an_mr_report_gives_the_scans_own_units(tmp_path):
    folder = dicom_series(
        tmp_path / "mr", series_uid=f"{UID}2.2", slices=6, tags={"0020|000d": f"{UID}1.2", "0008|0060": "MR"}
    )
    (series,) = discover_series([folder])[0]
    image = io.read_image(series)
    labels = np.zeros(image.shape[1:], np.uint8)
    labels[3:9, 4:10, 1:4] = 1
    names = {1: "anterior", 2: "posterior"}  # posterior stays empty: its volume only
    rows = label_statistics(labels, np.asarray(image)[0], image.meta["original_affine"], names)
    write_seg(labels, series.files, names, "m", tmp_path / "seg.dcm")
    write_sr(tmp_path / "seg.dcm", series.files, rows, "m", tmp_path / "sr.dcm")
    check_report(tmp_path / "sr.dcm", tmp_path / "seg.dcm", rows, "1")
    group = hd.sr.srread(tmp_path / "sr.dcm").content.get_volumetric_roi_measurement_groups()[0]
    (site,) = group.finding_sites
    assert site.value == codes.SCT.Hippocampus and site.topographical_modifier == codes.SCT.Anterior


def test_the_philips_ct_gets_seg_rtstruct_and_sr_whose_figures_are_the_statistics(tmp_path):
    ct = shared_path("data", "tcia_pancreatic_ct_cbct_seg_cb001", "planning_ct")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["infer", str(ct), "--model", "abdomen-ct", "-o", str(out), "--output-format", "nifti,dicom-seg,rtstruct,sr"],
    )
    assert result.exit_code == 0, result.output
    (sr_path,) = out.glob("*_sr.dcm")
    case_id = sr_path.name[: -len("_sr.dcm")]
    assert {p.name for p in out.glob(f"{case_id}_*")} == {
        f"{case_id}_{s}" for s in ("seg.dcm", "sr.dcm", "rtstruct.dcm", "seg.nii.gz")
    }
    rows = statistics_rows(out, case_id)
    assert len(rows) == 4 and any(int(r["voxels"]) for r in rows)
    check_report(sr_path, out / f"{case_id}_seg.dcm", rows, "[hnsf'U]")


def test_an_sr_without_its_seg_is_not_written_and_says_why(tmp_path):
    folder = dicom_series(tmp_path / "ct", series_uid=f"{UID}2.3", slices=12, tags={"0020|000d": " "})
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["infer", str(folder), "--model", "abdomen-ct", "-o", str(out), "--output-format", "nifti,sr"]
    )
    assert result.exit_code == 3, result.output  # partial: the label map only
    (row,) = csv.DictReader((out / "volseg_run.csv").open(encoding="utf-8"))
    assert (
        row["status"] == "partial"
        and "sr not written: sr output: the SEG it would reference was not written" in row["note"]
    )
    assert not list(out.glob("*.dcm"))
