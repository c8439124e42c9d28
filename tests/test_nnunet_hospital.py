"""An nnU-Net model folder on the hospital path: a DICOM archive to NIfTI + DICOM SEG (checked by dciodvfy)
+ statistics + the review page, and the PACS round trip, with the tiny nnU-Net folder of the golden tests."""

from __future__ import annotations

import csv

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from typer.testing import CliRunner

from volseg.cli import app
from volseg.dicom.archive import discover_series

from .bad_inputs import dicom_series
from .test_archive import _dciodvfy_errors
from .test_nnunet import model

UID = "1.2.826.0.1.3680043.2.1125.7."
runner = CliRunner()


def _ct(folder, n: int, slices: int = 12):
    tags = {"0020|000d": f"{UID}1.{n}", "0020|0052": f"{UID}3.{n}", "0010|0020": f"P{n}"}
    return dicom_series(folder, series_uid=f"{UID}2.{n}", slices=slices, tags=tags, seed=n)


def test_archive_to_nifti_seg_statistics_and_review_page(tmp_path):
    archive = tmp_path / "archive"
    _ct(archive / "a", 1)
    _ct(archive / "b", 2)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "infer",
            str(archive),
            "--model",
            str(model()),
            "-o",
            str(out),
            "--output-format",
            "nifti,dicom-seg",
            "--report",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "volseg_run.csv").open(encoding="utf-8")))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    found, _ = discover_series([archive])
    for series in found:
        nifti = np.asarray(nib.load(out / f"{series.case_id}_seg.nii.gz").dataobj)
        seg_path = out / f"{series.case_id}_seg.dcm"
        assert _dciodvfy_errors(seg_path) == []
        seg = hd.seg.segread(seg_path)
        assert [d.SegmentLabel for d in seg.SegmentSequence] == ["liver", "spleen"]
        assert [str(d.SegmentedPropertyTypeCodeSequence[0].CodeMeaning) for d in seg.SegmentSequence] == [
            "Liver",
            "Spleen",
        ]
        assert "Dataset900_Tiny/nnUNetTrainer__nnUNetPlans__3d_fullres" in str(
            seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName
        )
        uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in series.files]
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, combine_segments=True, skip_overlap_checks=True
        )
        assert np.array_equal(np.asarray(pixels).transpose(2, 1, 0), nifti)
        assert nifti.any()
    assert "liver" in (out / "statistics.csv").read_text()
    assert (out / "report" / "index.html").is_file()


def test_pacs_round_trip_with_an_nnunet_folder_stores_seg_and_rtstruct(empty_pacs, tmp_path):
    """`volseg pacs --rtstruct`: the SEG and an RTSTRUCT of the same labels go back into the study; a second run
    adds nothing. The RTSTRUCT, read back from the PACS by volseg's reader, gives the SEG's labels."""
    from volseg.dicom.rtstruct_read import read_structures

    pacs = empty_pacs
    pacs.upload(sorted(_ct(tmp_path / "s", 5).iterdir()))
    out = tmp_path / "out"
    command = ["pacs", pacs.dicomweb, "--model", str(model()), "-o", str(out), "--rtstruct", "--save-nifti"]
    command += ["--rtstruct-min-area", "0"]  # every island of the tiny model's speckled labels: an exact round trip
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    (seg,) = pacs.segs_of_study(f"{UID}1.5")
    assert seg["ReferencedSeriesSequence"][0]["SeriesInstanceUID"] == f"{UID}2.5"
    (rtstruct,) = pacs.segs_of_study(f"{UID}1.5", modality="RTSTRUCT")
    assert [r["ROIName"] for r in rtstruct["StructureSetROISequence"]] == ["liver", "spleen"]
    again = runner.invoke(app, command)
    assert again.exit_code == 0 and "1 skipped" in again.output
    assert len(pacs.segs_of_study(f"{UID}1.5")) == 1
    assert len(pacs.segs_of_study(f"{UID}1.5", modality="RTSTRUCT")) == 1
    instance = pacs.find("Instances", {"SOPInstanceUID": rtstruct["SOPInstanceUID"]})[0]
    stored = tmp_path / "rtstruct.dcm"
    stored.write_bytes(pacs.get_bytes(f"/instances/{instance}/file"))
    (series,) = discover_series([tmp_path / "s"])[0]
    (nifti,) = out.glob("*.nii.gz")
    expected = np.asarray(nib.load(nifti).dataobj)
    present = {name: value for value, name in {1: "liver", 2: "spleen"}.items() if (expected == value).any()}
    assert present
    labels = read_structures(stored, series, present)
    assert np.array_equal(np.asarray(labels[0]), expected)
