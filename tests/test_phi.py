"""No patient identity in anything volseg writes or prints, on the hospital path: `volseg infer` with every
output (NIfTI, DICOM SEG and SR, statistics, QC pictures, review page, run record) and `volseg pacs` against the
test Orthanc, each run as the user runs it (a separate process, DEBUG logging into a log file).

The archive plants single-component and multi-component values of PatientName, PatientID (and the
multi-valued OtherPatientIDs), InstitutionName and ReferringPhysicianName into synthetic CTs; where ../shared
is present a real Philips CT joins it (TCIA Pancreatic-CT-CBCT-SEG, CC BY 4.0), whose one-component
PatientName "Pancreas-CT-CB_001" made highdicom print it in a warning when its SEG was written (issue 32),
with its radiotherapy RTSTRUCT beside it (not an image series: no failure); every SEG also passes dciodvfy.
Then every planted value is looked for, case-insensitively, in every file under the output folders (the
NIfTI label maps gunzipped, the review page's case files base64-decoded, PNG text chunks, run records,
statistics, the log files) and in the captured stdout and stderr of both commands: none may be found.

Excluded from the search, and only they: the binary DICOM SEG and SR objects (``*.dcm``, and the SEGs stored in the
PACS). DICOM requires a SEG to copy its source's Patient and General Study modules (PatientName, PatientID,
...), so they legitimately carry the patient's identity; that they copy nothing else is checked here.
"""

import base64
import gzip
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
from PIL import Image

from . import orthanc
from .bad_inputs import dicom_series
from .conftest import SHARED, missing_tool

UID = "1.2.826.0.1.3680043.2.1125.8."
SINGLE = {  # one-component names (highdicom warns with the value), one-word IDs and institution
    "0010|0010": "Plantedsolo",  # PatientName
    "0010|0020": "PLANTEDID1",  # PatientID
    "0008|0080": "Plantedclinic",  # InstitutionName
    "0008|0090": "Plantedreferrer",  # ReferringPhysicianName
}
MULTI = {  # multi-component names, IDs with separators, several values, a long institution name
    "0010|0010": "Plantedfamily^Plantedgiven^Plantedmiddle^Dr^Jr",
    "0010|0020": "PLANTED-ID 2/77",
    "0010|1000": "PLANTEDOTHER1\\PLANTEDOTHER2",  # OtherPatientIDs
    "0008|0080": "Planted General Hospital of Plantedtown",
    "0008|0090": "Plantedref^Plantedphysician",
}
TCIA = SHARED / "data" / "tcia_pancreatic_ct_cbct_seg_cb001" / "planning_ct"
TCIA_IDENTITY = "Pancreas-CT-CB_001"  # its PatientName and PatientID
SEG_MAY_CARRY = {
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "ReferringPhysicianName",
    "PatientBirthDate",
    "AccessionNumber",
    "StudyID",
}  # the Patient and General Study modules a SEG (and an SR) copies


def _needles() -> list[str]:
    """Every planted value, whole and component by component (names split at ^, values at \\)."""
    values = [*SINGLE.values(), *MULTI.values(), TCIA_IDENTITY]
    parts = [p for v in values for p in re.split(r"[\^\\]", v) if len(p) > 3]
    return sorted({v.lower() for v in values + parts if v not in ("Dr", "Jr")})


NEEDLES = _needles()


def _archive(root: Path) -> Path:
    dicom_series(
        root / "a" / "ct",
        series_uid=f"{UID}2.1",
        slices=12,
        seed=1,
        tags={"0020|000d": f"{UID}1.1", "0020|0052": f"{UID}3.1", **SINGLE},
    )
    dicom_series(
        root / "b" / "ct",
        series_uid=f"{UID}2.2",
        slices=12,
        seed=2,
        tags={"0020|000d": f"{UID}1.2", "0020|0052": f"{UID}3.2", **MULTI},
    )
    if TCIA.is_dir():  # the real CT: 12 of its 79 slices keep the test fast; its RTSTRUCT beside it
        (root / "c").mkdir()
        for file in sorted(TCIA.iterdir())[:12]:
            shutil.copy(file, root / "c" / file.name)
        shutil.copytree(TCIA.parent / "rtstruct_planning_ct", root / "c_rtstruct")
    return root


def _volseg(log: Path, *args, env=None) -> subprocess.CompletedProcess:
    """`volseg ARGS` in a process of its own, as a user runs it, with DEBUG logging into ``log``."""
    code = (
        "import logging, sys; logging.basicConfig(filename=sys.argv[1], level=logging.DEBUG, force=True); "
        "sys.argv = ['volseg', *sys.argv[2:]]; from volseg.cli import main; main()"
    )
    env = {**os.environ, "PYTHONWARNINGS": "default", **(env or {})}  # warnings shown as a user would see them
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", code, str(log), *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        timeout=900,
    )


def _texts(path: Path) -> list[bytes]:
    """The file's bytes and every decoded layer a reader could show: gunzipped, unzipped, PNG text chunks,
    the review page's base64 volumes."""
    raw = path.read_bytes()
    texts = [raw]
    if raw[:2] == b"\x1f\x8b":
        texts.append(gzip.decompress(raw))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            texts += [z.read(name) for name in z.namelist()] + [" ".join(z.namelist()).encode()]
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        with Image.open(io.BytesIO(raw)) as image:
            texts.append(repr(image.info).encode())
    for blob in re.findall(rb'"([A-Za-z0-9+/=]{64,})"', raw) if path.suffix == ".js" else []:
        decoded = base64.b64decode(blob)
        texts += [decoded, gzip.decompress(decoded) if decoded[:2] == b"\x1f\x8b" else b""]
    return texts


def _found(name: str, texts: list) -> list[str]:
    lowered = [(t if isinstance(t, bytes) else t.encode("utf-8", "replace")).lower() for t in texts]
    return [f"{name}: {needle!r}" for needle in NEEDLES for text in lowered if needle.encode() in text]


def _seg_extra_identity(path: Path) -> list[str]:
    """Planted values in a SEG outside the modules DICOM makes it copy."""
    ds = pydicom.dcmread(path)
    return [
        f"{path.name}: {e.keyword}"
        for e in ds.iterall()
        if e.keyword not in SEG_MAY_CARRY and _found(e.keyword, [str(e.value)])
    ]


def test_no_patient_identity_in_any_output_log_or_console_of_infer_and_pacs(empty_pacs, tmp_path):
    archive = _archive(tmp_path / "ARCHIVE")
    inputs = sorted(p for p in archive.rglob("*") if p.is_file())
    assert _found("input", [p.read_bytes() for p in inputs])  # the planted values really are in the headers
    cases = 3 if TCIA.is_dir() else 2

    out = tmp_path / "out"
    infer = _volseg(
        tmp_path / "out" / "volseg_infer.log",
        "infer",
        archive,
        "--model",
        "abdomen-ct",
        "-o",
        out,
        "--output-format",
        "nifti,dicom-seg,sr",
        "--qc",
        "--report",
    )
    assert infer.returncode == 0, infer.stdout + infer.stderr
    assert len(list(out.glob("dcm-*_seg.dcm"))) == len(list(out.glob("dcm-*_sr.dcm"))) == cases
    assert len(list(out.glob("dcm-*.nii.gz"))) == cases
    assert {"volseg_run.csv", "statistics.csv", "statistics.json"} <= {p.name for p in out.iterdir()}
    assert len(list(out.glob("*_qc.png"))) == cases and (out / "report" / "index.html").is_file()
    assert (out / "volseg_run.csv").read_text(encoding="utf-8").count(",ok,") == cases  # the RTSTRUCT: no failure
    if shutil.which("dciodvfy") is None:
        missing_tool("dciodvfy", "not installed (Debian package dicom3tools; setup.sh installs it as root)")
    for seg in out.glob("dcm-*.dcm"):  # the real CT's SEG and SR too: valid DICOM
        check = subprocess.run(["dciodvfy", str(seg)], capture_output=True, encoding="utf-8", errors="replace")
        assert not [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")], seg

    empty_pacs.upload(inputs)
    pacs_out = tmp_path / "pacs_out"
    pacs = _volseg(
        tmp_path / "pacs_out" / "volseg_pacs.log",
        "pacs",
        empty_pacs.dicomweb,
        "--model",
        "abdomen-ct",
        "-o",
        pacs_out,
        "--save-nifti",
        "--sr",
        "--backend",
        "torch",
        env={"VOLSEG_PACS_USER": orthanc.USER, "VOLSEG_PACS_PASSWORD": orthanc.PASSWORD},
    )
    assert pacs.returncode == 0, pacs.stdout + pacs.stderr
    assert f"{cases} series found: {cases} ok" in pacs.stdout
    assert (
        len(empty_pacs.find("Series", {"Modality": "SEG"}))
        == len(empty_pacs.find("Series", {"Modality": "SR"}))
        == cases
    )

    # the DICOM libraries did warn (a one-component PatientName), and what they said was withheld
    for log in (out / "volseg_infer.log", pacs_out / "volseg_pacs.log"):
        assert "withheld a UserWarning" in log.read_text(encoding="utf-8"), log.name
    consoles = infer.stdout + infer.stderr + pacs.stdout + pacs.stderr
    assert "No bulk data URI handler" not in consoles and "7FE00010" not in consoles.upper()
    assert "unlikely to represent the intended person name" not in consoles

    written = sorted(p for folder in (out, pacs_out) for p in folder.rglob("*") if p.is_file())
    searched = [p for p in written if p.suffix != ".dcm"]  # the SEGs: see the module docstring
    assert {p.suffix for p in searched} >= {".csv", ".json", ".log", ".gz", ".png", ".html", ".js"}
    leaks = [leak for p in searched for leak in _found(str(p.relative_to(tmp_path)), _texts(p))]
    leaks += _found("infer stdout", [infer.stdout]) + _found("infer stderr", [infer.stderr])
    leaks += _found("pacs stdout", [pacs.stdout]) + _found("pacs stderr", [pacs.stderr])
    leaks += [leak for p in written if p.suffix == ".dcm" for leak in _seg_extra_identity(p)]
    assert leaks == []
