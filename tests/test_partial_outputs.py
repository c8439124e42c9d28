"""Every requested output that can be made is made (issue 32): a case whose DICOM SEG cannot be written still
gets its NIfTI and statistics and ends ``partial`` (exit 3), with the reason in the run record's note; a series
without a FrameOfReferenceUID gets a SEG with a new frame of reference, noted, checked by dciodvfy.

Synthetic series cover it without ../shared. Where ../shared is present: the archive of issue 32 item 1 (the
3D-IRCADb CT, no FrameOfReferenceUID, plus the bundled TotalSegmentator DICOM, empty SeriesInstanceUID), and
a real clinical Philips CT from TCIA beside its radiotherapy RTSTRUCT (CC BY 4.0; Hong et al., Sci Data 9:637,
2022, DOI 10.7937/TCIA.ESHQ-4D90) through NIfTI + SEG + statistics. Those real series are copied into a
temporary folder only: 3D-IRCADb is CC BY-NC-ND and never enters the repository, and 10+ slices of the TCIA
CT (about 0.5 MB each) would not fit the few hundred KB a test fixture may add to the repository.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import zipfile
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from typer.testing import CliRunner

from volseg.cli import app
from volseg.dicom.archive import NonImageSeries, discover_series
from volseg.dicom.seg import NEW_FRAME_OF_REFERENCE, build_seg
from volseg.dicom.source import new_frame_of_reference, read_source_datasets

from .bad_inputs import dicom_series
from .conftest import shared_path
from .helpers import REPO
from .test_archive import _dciodvfy_errors, _seg_as_index_array

runner = CliRunner()
UID = "1.2.826.0.1.3680043.2.1125.32."
NO_SERIES_UID = "the source series has an empty SeriesInstanceUID, so a SEG cannot reference it"


def _tags(n: int, frame_of_reference: bool = True) -> dict:
    return {
        "0020|000d": f"{UID}1.{n}",
        "0010|0020": f"P{n}",
        "0020|0052": f"{UID}3.{n}" if frame_of_reference else "",
    }  # "": present, empty


def _drop_frame_of_reference(folder: Path) -> Path:
    """The element gone altogether, as in 3D-IRCADb's slices."""
    for file in folder.iterdir():
        ds = pydicom.dcmread(file)
        del ds.FrameOfReferenceUID
        ds.save_as(file)
    return folder


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "volseg_run.csv").open(encoding="utf-8")))


def _state(out: Path) -> dict[str, dict]:
    return {r["case_id"]: r for r in _rows(out)}  # the last row of a case is its state


def _case_id(folder: Path) -> str:
    (series,) = discover_series([folder])[0]
    return series.case_id


def _infer(*args) -> object:
    return runner.invoke(app, ["infer", *map(str, args), "--model", "abdomen-ct"])


def test_a_seg_that_cannot_be_made_leaves_the_nifti_and_a_missing_frame_of_reference_gets_a_new_one(tmp_path):
    archive = tmp_path / "ARCHIVE"
    good = dicom_series(archive / "good", series_uid=f"{UID}2.1", slices=12, tags=_tags(1))
    no_for = _drop_frame_of_reference(
        dicom_series(archive / "no_for", series_uid=f"{UID}2.2", slices=12, tags=_tags(2), seed=4)
    )
    no_uid = dicom_series(archive / "no_uid", series_uid="", slices=12, tags=_tags(3), seed=5)
    assert "FrameOfReferenceUID" not in pydicom.dcmread(next(no_for.iterdir()), stop_before_pixels=True)
    ids = {name: _case_id(folder) for name, folder in (("good", good), ("no_for", no_for), ("no_uid", no_uid))}
    out = tmp_path / "out"
    result = _infer(archive, "-o", out, "--output-format", "nifti,dicom-seg", "--report")
    assert result.exit_code == 3, result.output
    text = " ".join(result.output.split())
    assert "3 of 3 cases done, 1 partial" in text and f"partial {ids['no_uid']}: dicom-seg not written" in text

    rows = _state(out)
    # nothing left out (the tiny synthetic CTs are far smaller than the model's training CT: a warning says so)
    good = rows[ids["good"]]
    assert good["status"] == "ok" and "not written" not in good["note"] and "frame of reference" not in good["note"]
    # no FrameOfReferenceUID: a SEG all the same, on a new frame of reference, and the note says so
    row = rows[ids["no_for"]]
    assert row["status"] == "ok" and row["note"].startswith(f"dicom-seg: {NEW_FRAME_OF_REFERENCE}"), row
    (series,) = discover_series([no_for])[0]
    seg_path = out / f"{ids['no_for']}_seg.dcm"
    assert _dciodvfy_errors(seg_path) == []
    seg = hd.seg.segread(seg_path)
    assert seg.FrameOfReferenceUID == new_frame_of_reference(read_source_datasets(series.files))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == f"{UID}2.2"
    nifti = np.asarray(nib.load(out / f"{ids['no_for']}_seg.nii.gz").dataobj)
    assert np.array_equal(_seg_as_index_array(seg_path, series.files), np.searchsorted([0, 1, 2, 3, 4], nifti))
    assert _dciodvfy_errors(out / f"{ids['good']}_seg.dcm") == []
    # empty SeriesInstanceUID: no SEG can reference it; the NIfTI and the statistics are written, the note says why
    row = rows[ids["no_uid"]]
    assert row["status"] == "partial" and row["error"] == "", row
    assert row["note"].startswith(
        f"dicom-seg not written: {NO_SERIES_UID} (NIfTI output works; or fix the series' UIDs)"
    )
    assert row["output"] == str(out / f"{ids['no_uid']}_seg.nii.gz")
    assert sorted(p.name for p in out.glob(f"{ids['no_uid']}*")) == [f"{ids['no_uid']}_seg.nii.gz"]
    stats = list(csv.DictReader((out / "statistics.csv").open(encoding="utf-8")))
    assert sorted({r["case_id"] for r in stats}) == sorted(ids.values()) and len(stats) == 3 * 4

    # the review page shows the partial case with its labels and says what is missing
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r"window\.REPORT = (\{.*?\});</script>", page, re.S).group(1).replace("<\\/", "</"))
    case = next(c for c in data["cases"] if c["id"] == ids["no_uid"])
    assert case["status"] == "partial" and case["data"] and case["flags"][0]["kind"] == "partial"
    assert "dicom-seg not written" in case["flags"][0]["text"] and str(archive) not in page

    # --resume: a partial case is finished (its missing output cannot be made from this input); the record
    # keeps its partial row as the case's state
    again = _infer(archive, "-o", out, "--output-format", "nifti,dicom-seg", "--resume")
    assert again.exit_code == 0, again.output
    assert len(_rows(out)) == 3 and _state(out)[ids["no_uid"]]["status"] == "partial"

    # nothing requested can be made: the case fails, and nothing is written
    only_seg = _infer(no_uid, "-o", tmp_path / "seg_only", "--output-format", "dicom-seg")
    assert only_seg.exit_code == 1, only_seg.output
    (row,) = _rows(tmp_path / "seg_only")
    assert row["status"] == "failed" and NO_SERIES_UID in row["error"] and row["output"] == ""
    assert not list((tmp_path / "seg_only").glob("dcm-*"))


def test_a_nifti_input_asked_for_a_seg_too_is_partial(tmp_path):
    scan = tmp_path / "scan.nii.gz"
    volume = np.random.default_rng(0).normal(40, 20, (48, 48, 24)) - 1000 * (np.arange(48) < 6)[:, None, None]
    nib.save(nib.Nifti1Image(volume.astype(np.int16), np.diag([0.9, 0.9, 2.0, 1.0])), scan)
    out = tmp_path / "out"
    result = _infer(scan, "-o", out, "--output-format", "nifti,dicom-seg")
    assert result.exit_code == 3, result.output
    (row,) = _rows(out)
    assert row["status"] == "partial" and row["note"].startswith("dicom-seg not written: ")
    assert "dicom-seg output needs a DICOM series input" in row["note"]
    assert (out / "scan_seg.nii.gz").is_file() and not (out / "scan_seg.dcm").exists()


def test_a_new_frame_of_reference_is_stable_and_leaves_the_sources_as_read(tmp_path):
    folder = dicom_series(tmp_path / "ct", series_uid=f"{UID}2.9", slices=4, tags=_tags(9, False))
    (series,) = discover_series([folder])[0]
    sources = read_source_datasets(series.files)
    labels = np.zeros((32, 32, 4), np.uint8)
    labels[4:9, 5:12, 1:3] = 1
    first, second = (build_seg(labels, sources, {1: "liver"}, "m") for _ in range(2))
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID  # every SEG of this series shares it
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert all(ds.FrameOfReferenceUID == "" for ds in sources)  # an empty value is no frame of reference either


def test_non_image_objects_of_an_archive_are_found_as_such(tmp_path):
    folder = dicom_series(tmp_path / "a" / "ct", series_uid=f"{UID}2.10", slices=4, tags=_tags(10))
    (series,) = discover_series([folder])[0]
    seg = build_seg(np.ones((32, 32, 4), np.uint8), read_source_datasets(series.files), {1: "liver"}, "m")
    (tmp_path / "a" / "seg").mkdir()
    seg.save_as(tmp_path / "a" / "seg" / "seg.dcm")
    (tmp_path / "a" / "notes.txt").write_text("not DICOM")
    others: list[NonImageSeries] = []
    found, skipped = discover_series([tmp_path / "a"], non_images=others)
    assert [s.case_id for s in found] == [series.case_id] and skipped == 2
    (other,) = others
    assert other.kind == "Segmentation" and other.series_uid == str(seg.SeriesInstanceUID)
    assert other.reason == "not an image series (Segmentation, 1 file): nothing to segment"
    assert other.case_id.startswith("dcm-") and other.case_id != series.case_id
    assert str(other) == f"{tmp_path / 'a' / 'seg'} (SeriesInstanceUID {seg.SeriesInstanceUID}, 1 files)"


# ----------------------------------------------------------------------------------------- ../shared data


def _ircadb(target: Path) -> Path:
    """The 3D-IRCADb CT, unzipped into a temporary folder (CC BY-NC-ND: never into the repository)."""
    archive = shared_path("data", "ircadb_3d", "3Dircadb1.1", "PATIENT_DICOM.zip")
    target.mkdir(parents=True)
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if not name.endswith("/"):
                (target / Path(name).name).write_bytes(z.read(name))
    return target


def test_issue_32_archive_gives_two_label_maps_one_seg_and_a_note(tmp_path):
    """3D-IRCADb's CT (no FrameOfReferenceUID) and the bundled TotalSegmentator DICOM (empty UIDs)."""
    archive = tmp_path / "ARCHIVE"
    ircadb = _ircadb(archive / "ircadb")
    shutil.copytree(REPO / "data" / "abdomen_ct" / "ct_dicom", archive / "totalsegmentator")
    ids = {"ircadb": _case_id(ircadb), "totalseg": _case_id(archive / "totalsegmentator")}
    out = tmp_path / "out"
    result = _infer(archive, "-o", out, "--output-format", "nifti,dicom-seg")
    assert result.exit_code == 3, result.output
    assert "2 of 2 cases done, 1 partial" in " ".join(result.output.split())
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{i}_seg.nii.gz" for i in ids.values())
    assert [p.name for p in out.glob("*.dcm")] == [f"{ids['ircadb']}_seg.dcm"]
    rows = _state(out)
    assert rows[ids["ircadb"]]["status"] == "ok" and "new frame of reference" in rows[ids["ircadb"]]["note"]
    assert rows[ids["totalseg"]]["status"] == "partial"
    assert rows[ids["totalseg"]]["note"].startswith(f"dicom-seg not written: {NO_SERIES_UID}")
    seg_path = out / f"{ids['ircadb']}_seg.dcm"
    assert _dciodvfy_errors(seg_path) == []
    (series,) = discover_series([ircadb])[0]
    nifti = np.asarray(nib.load(out / f"{ids['ircadb']}_seg.nii.gz").dataobj)
    assert np.array_equal(_seg_as_index_array(seg_path, series.files), np.searchsorted([0, 1, 2, 3, 4], nifti))
    stats = list(csv.DictReader((out / "statistics.csv").open(encoding="utf-8")))
    assert sorted({r["case_id"] for r in stats}) == sorted(ids.values()) and len(stats) == 2 * 4


def test_real_clinical_ct_beside_its_rtstruct_gives_nifti_seg_and_statistics(tmp_path):
    """TCIA Pancreatic-CT-CBCT-SEG, patient Pancreas-CT-CB_001 (CC BY 4.0): the Philips planning CT and the
    RTSTRUCT drawn on it, in one archive. The RTSTRUCT is recorded as not an image series, not a failure."""
    source = shared_path("data", "tcia_pancreatic_ct_cbct_seg_cb001")
    archive = tmp_path / "ARCHIVE"
    for folder in ("planning_ct", "rtstruct_planning_ct"):
        shutil.copytree(source / folder, archive / folder)
    out = tmp_path / "out"
    result = _infer(archive, "-o", out, "--output-format", "nifti,dicom-seg")
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert all(r["status"] != "failed" for r in rows), rows
    (row,) = [r for r in rows if "/planning_ct (" in r["input"]]
    assert row["status"] == "ok" and row["note"] == "", row
    (rtstruct,) = [r for r in rows if "rtstruct_planning_ct" in r["input"]]
    assert rtstruct["status"] == "rejected", rtstruct
    assert rtstruct["error"] == "not an image series (RT Structure Set, 1 file): nothing to segment"
    others: list[NonImageSeries] = []
    (series,) = discover_series([archive], non_images=others)[0]
    assert series.slices == 79
    assert [(o.kind, len(o.files)) for o in others] == [("RT Structure Set", 1)]
    seg_path, nifti_path = out / f"{row['case_id']}_seg.dcm", out / f"{row['case_id']}_seg.nii.gz"
    assert _dciodvfy_errors(seg_path) == []
    seg = hd.seg.segread(seg_path)
    first = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID  # the CT's own frame of reference
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    nifti = np.asarray(nib.load(nifti_path).dataobj)
    assert nifti.any()
    assert np.array_equal(_seg_as_index_array(seg_path, series.files), np.searchsorted([0, 1, 2, 3, 4], nifti))
    stats = list(csv.DictReader((out / "statistics.csv").open(encoding="utf-8")))
    assert [r["name"] for r in stats] == ["liver", "spleen", "kidney_right", "kidney_left"]
    assert sum(int(r["voxels"]) for r in stats) == np.count_nonzero(nifti)


# ---------------------------------------------------------------------------------------------- the PACS


def test_pacs_stores_a_seg_for_a_series_without_a_frame_of_reference(empty_pacs, tmp_path):
    pacs = empty_pacs
    folder = dicom_series(tmp_path / "s", series_uid=f"{UID}2.20", slices=12, tags=_tags(20, False))
    pacs.upload(sorted(folder.iterdir()))
    out = tmp_path / "out"
    command = ["pacs", pacs.dicomweb, "--model", "abdomen-ct", "-o", str(out)]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    (row,) = list(csv.DictReader((out / "volseg_pacs.csv").open(encoding="utf-8")))
    assert row["status"] == "ok" and row["reason"] == NEW_FRAME_OF_REFERENCE, row
    (seg,) = pacs.segs_of_study(f"{UID}1.20")
    assert seg["SOPInstanceUID"] == row["seg_uid"]
    assert seg["ReferencedSeriesSequence"][0]["SeriesInstanceUID"] == f"{UID}2.20"
    again = runner.invoke(app, command)
    assert again.exit_code == 0 and "1 skipped" in again.output, again.output
    assert len(pacs.segs_of_study(f"{UID}1.20")) == 1
