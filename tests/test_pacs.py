"""`volseg pacs` against a real Orthanc (tests/orthanc.py): pull, segment, push the SEG, resume, faults.

One Orthanc is started for the whole test session on a free loopback port and stopped at the end (the
``pacs`` and ``empty_pacs`` fixtures of conftest.py); each test empties it first. Where Orthanc or its
DICOMweb plugin is missing the tests skip and say why, and fail under CI=true.
"""

import csv
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from volseg.cli import app

from . import orthanc
from .bad_inputs import dicom_series

runner = CliRunner()
UID = "1.2.826.0.1.3680043.2.1125.4."
PLANTED = {
    "0010|0010": "Doe^Planted",
    "0010|0020": "PLANTED123",
    "0010|0030": "19010101",
    "0008|0080": "Planted General Hospital",
    "0008|0050": "ACCPLANTED77",
}


def _upload_ct(pacs, folder, n: int, study: str, series: str, slices: int = 12, tags=None):
    tags = {"0020|000d": f"{UID}{study}", "0020|0052": f"{UID}9.{n}", **(tags or {})}
    pacs.upload(
        sorted(dicom_series(folder / f"s{n}", series_uid=f"{UID}{series}", slices=slices, tags=tags, seed=n).iterdir())
    )
    return f"{UID}{study}", f"{UID}{series}"


def _record(out):
    return list(csv.DictReader((out / "volseg_pacs.csv").open(encoding="utf-8")))


def _segs(pacs, study_uid):
    return pacs.segs_of_study(study_uid)


def _pacs(url, out, *extra):
    return runner.invoke(app, ["pacs", url, "--model", "abdomen-ct", "-o", str(out), *map(str, extra)])


def test_round_trip_stores_one_seg_per_series_and_a_second_run_does_nothing(empty_pacs, tmp_path):
    pacs = empty_pacs
    series = [_upload_ct(pacs, tmp_path, 1, "1.1", "2.1"), _upload_ct(pacs, tmp_path, 2, "1.2", "2.2")]
    pacs.upload(
        sorted(
            dicom_series(
                tmp_path / "mr", series_uid=f"{UID}2.3", slices=12, tags={"0020|000d": f"{UID}1.3", "0008|0060": "MR"}
            ).iterdir()
        )
    )
    out = tmp_path / "out"
    result = _pacs(pacs.dicomweb, out)
    assert result.exit_code == 0, result.output
    rows = _record(out)
    assert [(r["series_uid"], r["status"]) for r in rows] == [(s, "ok") for _, s in series]  # MR not queried
    for (study_uid, series_uid), row in zip(series, rows):
        (seg,) = _segs(pacs, study_uid)
        assert seg["StudyInstanceUID"] == study_uid and seg["SOPInstanceUID"] == row["seg_uid"]
        assert seg["ReferencedSeriesSequence"][0]["SeriesInstanceUID"] == series_uid
        assert seg["Manufacturer"] == "volseg"
    again = _pacs(pacs.dicomweb, out)
    assert again.exit_code == 0, again.output
    assert all(len(_segs(pacs, study)) == 1 for study, _ in series)
    assert "2 series found: 2 skipped" in again.output
    assert len(_record(out)) == 2  # nothing appended for series already done


def test_sr_and_rtstruct_are_stored_beside_the_seg_and_a_second_run_adds_nothing(empty_pacs, tmp_path):
    import highdicom as hd
    import pydicom

    pacs = empty_pacs
    study_uid, series_uid = _upload_ct(pacs, tmp_path, 5, "1.5", "2.5")
    out = tmp_path / "out"
    result = _pacs(pacs.dicomweb, out, "--sr", "--rtstruct")
    assert result.exit_code == 0, result.output
    (seg,) = _segs(pacs, study_uid)
    assert len(pacs.segs_of_study(study_uid, "SR")) == len(pacs.segs_of_study(study_uid, "RTSTRUCT")) == 1
    (sr_series,) = pacs.find("Series", {"StudyInstanceUID": study_uid, "Modality": "SR"})
    (instance,) = pacs.get(f"/series/{sr_series}")["Instances"]
    (tmp_path / "sr.dcm").write_bytes(pacs.get_bytes(f"/instances/{instance}/file"))
    report = hd.sr.srread(tmp_path / "sr.dcm")
    groups = report.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["liver", "spleen", "kidney_right", "kidney_left"]
    assert {g.referenced_segment.referenced_sop_instance_uid for g in groups} == {seg["SOPInstanceUID"]}
    assert pydicom.dcmread(tmp_path / "sr.dcm").StudyInstanceUID == study_uid
    again = _pacs(pacs.dicomweb, out, "--sr", "--rtstruct")
    assert again.exit_code == 0, again.output
    counts = [len(pacs.segs_of_study(study_uid, m)) for m in ("SEG", "SR", "RTSTRUCT")]
    assert counts == [1, 1, 1], counts


def test_sigkill_mid_run_then_rerun_leaves_exactly_one_seg_per_series(empty_pacs, tmp_path):
    pacs = empty_pacs
    series = [_upload_ct(pacs, tmp_path, n, f"1.{10 + n}", f"2.{10 + n}", slices=24) for n in range(5)]
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "volseg",
        "pacs",
        pacs.dicomweb,
        "--model",
        "abdomen-ct",
        "-o",
        str(out),
        "--backend",
        "torch",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if pacs.find("Series", {"Modality": "SEG"}):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = len(pacs.find("Series", {"Modality": "SEG"}))
    assert 1 <= stored < len(series), "the kill must land between the first and the last SEG"
    result = _pacs(pacs.dicomweb, out)
    assert result.exit_code == 0, result.output
    assert [len(_segs(pacs, study)) for study, _ in series] == [1] * len(series)


def test_unreachable_pacs_stops_with_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("VOLSEG_PACS_USER", raising=False)
    out = tmp_path / "out"
    result = _pacs("http://127.0.0.1:9/dicom-web", out)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: http://127.0.0.1:9/dicom-web")
    assert "connection failed" in result.output and not out.exists()


def test_wrong_credentials_are_refused_without_echoing_them(empty_pacs, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VOLSEG_PACS_PASSWORD", "Wrong-Secret-991")
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    result = _pacs(empty_pacs.dicomweb, out)
    assert result.exit_code == 2 and "HTTP 401 (credentials refused)" in result.output
    assert "Wrong-Secret-991" not in result.output + caplog.text and not out.exists()
    in_url = _pacs(f"http://volseg:{orthanc.PASSWORD}@127.0.0.1:{empty_pacs.port}/dicom-web", out)
    assert in_url.exit_code == 2 and orthanc.PASSWORD not in in_url.output


def test_pacs_errors_fail_one_series_and_the_run_goes_on(empty_pacs, tmp_path):
    pacs = empty_pacs
    good = _upload_ct(pacs, tmp_path, 1, "1.20", "2.20")
    broken = _upload_ct(pacs, tmp_path, 2, "1.21", f"2.21{orthanc.BROKEN_SERIES_SUFFIX}")  # WADO refused
    rejecting = _upload_ct(pacs, tmp_path, 3, f"1.22{orthanc.REJECTING_STUDY_SUFFIX}", "2.22")  # STOW refused
    out = tmp_path / "out"
    result = _pacs(pacs.dicomweb, out)
    assert result.exit_code == 1, result.output
    rows = {r["series_uid"]: r for r in _record(out)}
    assert rows[good[1]]["status"] == "ok"
    assert rows[broken[1]]["status"] == "failed" and "HTTP 403" in rows[broken[1]]["reason"]
    assert rows[rejecting[1]]["status"] == "failed"
    assert rows[rejecting[1]]["reason"] == "HTTP 403 (forbidden by the PACS) during STOW-RS (storing the SEG)"
    assert _segs(pacs, rejecting[0]) == [] and len(_segs(pacs, good[0])) == 1


def test_series_deleted_between_query_and_retrieve_fails_alone(empty_pacs, tmp_path):
    from volseg.dicom.pacs import PacsQuery, PacsRun, connect, credentials
    from volseg.dicom.series_rules import default_rules
    from volseg.inference.zoo_segmenter import ZooSegmenter
    from volseg.pretrained import model_file

    pacs = empty_pacs
    kept = _upload_ct(pacs, tmp_path, 1, "1.30", "2.30")
    doomed = _upload_ct(pacs, tmp_path, 2, "1.31", "2.31")
    client = connect(pacs.dicomweb, credentials())
    retrieve = client.retrieve_series

    def deleted_first(study_uid, series_uid, **kwargs):  # another user deletes it just before our retrieve
        if series_uid == doomed[1]:
            pacs.delete_series(series_uid)
        return retrieve(study_uid, series_uid, **kwargs)

    client.retrieve_series = deleted_first
    rows = PacsRun(
        client, ZooSegmenter(model_file("abdomen-ct"), "cpu"), default_rules("CT"), tmp_path / "out", PacsQuery("CT")
    ).run()
    status = {r["series_uid"]: (r["status"], r["reason"]) for r in rows}
    assert status[kept[1]] == ("ok", "")
    assert status[doomed[1]] == ("failed", "the series is no longer on the PACS (deleted after the query)")


def test_filters_and_limit(empty_pacs, tmp_path):
    pacs = empty_pacs
    for n, (date, accession) in enumerate([("20200105", "A1"), ("20210310", "A2"), ("20210420", "A3")]):
        _upload_ct(pacs, tmp_path, n, f"1.{40 + n}", f"2.{40 + n}", tags={"0008|0020": date, "0008|0050": accession})
    listing = tmp_path / "acc.txt"
    listing.write_text("A2\nA3\n", encoding="utf-8")
    out = tmp_path / "out"
    result = _pacs(pacs.dicomweb, out, "--study-date", "20210101-20211231", "--accessions-file", listing, "--limit", 1)
    assert result.exit_code == 0, result.output
    rows = _record(out)
    assert sorted(r["series_uid"] for r in rows) == [f"{UID}2.41", f"{UID}2.42"]
    assert sorted(r["status"] for r in rows) == ["deferred", "ok"]
    finish = _pacs(pacs.dicomweb, out, "--study-date", "20210101-20211231", "--accessions-file", listing)
    assert finish.exit_code == 0 and "1 ok, 1 skipped" in finish.output


def test_no_patient_identity_in_record_logs_or_nifti(empty_pacs, tmp_path, caplog):
    pacs = empty_pacs
    study_uid, _ = _upload_ct(pacs, tmp_path, 1, "1.50", "2.50", tags=PLANTED)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    result = _pacs(pacs.dicomweb, out, "--save-nifti")
    assert result.exit_code == 0, result.output
    (seg,) = _segs(pacs, study_uid)
    assert seg["PatientName"] == "Doe^Planted" and seg["PatientID"] == "PLANTED123"  # DICOM requires these
    assert "InstitutionName" not in seg
    texts = [result.output, caplog.text] + [p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file()]
    import gzip

    texts += [gzip.decompress(p.read_bytes()).decode("latin-1") for p in out.glob("*.nii.gz")]
    assert list(out.glob("*.nii.gz")) and not [
        t for t in texts for needle in ("planted", "19010101") if needle in t.lower()
    ]


def test_credentials_come_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from volseg.dicom.pacs import PacsError, credentials

    monkeypatch.setenv("VOLSEG_PACS_USER", "env-user")
    monkeypatch.setenv("VOLSEG_PACS_PASSWORD", "env-pass")
    assert credentials() == {"user": "env-user", "password": "env-pass"}
    monkeypatch.setenv("VOLSEG_PACS_TOKEN", "tok")
    assert credentials() == {"token": "tok"}
    path = tmp_path / "auth.yaml"
    path.write_text("user: file-user\npassword: file-pass\n", encoding="utf-8")
    assert credentials(path) == {"user": "file-user", "password": "file-pass"}
    path.write_text("username: x\n", encoding="utf-8")
    with pytest.raises(PacsError, match="expected 'user' and 'password', or 'token'"):
        credentials(path)
