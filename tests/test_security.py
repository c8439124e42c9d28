"""Untrusted checkpoints and patient data.

- A checkpoint whose pickle would run code on load is refused with a clear message, and a marker file
  proves the code never ran (while the same file, loaded unsafely, does run it: the test is not vacuous).
- Every ``torch.load`` in volseg passes ``weights_only=True``.
- A checkpoint from another model, or with keys missing, says what does not match and names the file.
- DICOM patient identity (name, ID, birth date, institution, physicians, accession number...) never reaches
  any output of `volseg infer` or `volseg check`: label maps (headers included), run CSV, QC picture,
  probabilities, review page (its volumes decoded), console, log records, or anything written to the process's stdout/stderr.
"""

import ast
import base64
import copy
import gzip
import io
import logging
import os
import re
import zipfile
from pathlib import Path

import nibabel as nib
import pytest
import SimpleITK as sitk
import torch
from PIL import Image
from typer.testing import CliRunner

from volseg.cli import app
from volseg.runtime.checkpoint import CheckpointError, load_checkpoint, load_model, save_atomic

from .bad_inputs import dicom_series, write_manifest
from .helpers import REPO, tiny_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def payload(run_dir):
    """The tiny run's checkpoint contents, to derive broken and hostile checkpoints from."""
    return load_checkpoint(run_dir / "best.pt")


# ----------------------------------------------------------------------------------- hostile checkpoints


class RunsCode:
    """Unpickling this object calls ``func(*args)``: what a hostile checkpoint carries."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


HOW = {
    "os.system": lambda marker: RunsCode(os.system, (f"touch '{marker}'",)),
    "exec": lambda marker: RunsCode(exec, (f"import pathlib; pathlib.Path({str(marker)!r}).touch()",)),
}


def _hostile(path: Path, marker: Path, how: str, payload: dict) -> Path:
    """A checkpoint that looks like volseg's (format marker, weights, config) plus a code-running object."""
    torch.save({**payload, "history": [HOW[how](marker)]}, path)  # saved, never loaded here
    assert not marker.exists()
    return path


@pytest.mark.parametrize("how", sorted(HOW))
def test_hostile_checkpoint_would_run_code_when_loaded_unsafely(tmp_path, payload, how):
    """Control: the crafted file really runs code under a plain ``torch.load``."""
    path = _hostile(tmp_path / "evil.pt", tmp_path / "ran", how, payload)
    torch.load(path, weights_only=False)
    assert (tmp_path / "ran").exists()


@pytest.mark.parametrize("how", sorted(HOW))
def test_hostile_checkpoint_is_refused_and_runs_nothing(tmp_path, payload, how):
    marker = tmp_path / "ran"
    path = _hostile(tmp_path / "evil.pt", marker, how, payload)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: refused, it holds Python objects beyond tensors and plain data")
    assert "\n" not in message
    with pytest.raises(CheckpointError, match="refused"):
        load_model(path)
    assert not marker.exists()


def test_infer_and_train_refuse_a_hostile_checkpoint(tmp_path, payload):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    run.mkdir()
    path = _hostile(run / "last.pt", marker, "os.system", payload)
    result = runner.invoke(
        app,
        [
            "infer",
            str(REPO / "data_manifest.csv"),
            "--split",
            "test",
            "--model",
            str(path),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {path}: refused") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    result = runner.invoke(app, ["train", "--output", str(run), "--resume", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert f"error: {path}: refused" in result.output
    assert not marker.exists()


def test_every_torch_load_in_volseg_is_weights_only():
    calls = []
    for source in (REPO / "volseg").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), str(source))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "load"
                and getattr(node.func.value, "id", None) == "torch"
            ):
                safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
                calls.append((f"{source.relative_to(REPO)}:{node.lineno}", safe))
    assert calls, "no torch.load found: the scan is broken"
    assert [where for where, safe in calls if not safe] == []


# ---------------------------------------------------------------------------------- mismatched checkpoints


def _edit(payload, drop=(), labels=None, **model):
    """A copy of ``payload`` with ``config.model`` keys (or ``config.data.labels``) replaced, weights dropped."""
    p = copy.deepcopy(payload)
    p["config"]["model"].update(model)
    if labels is not None:
        p["config"]["data"]["labels"] = labels
    for key in drop:
        p["model"].pop(key)
    return p


@pytest.mark.parametrize(
    "make, expected",
    [
        pytest.param(
            lambda p: _edit(p, name="resunet"),
            ["weights do not match a resunet 3D model:", "missing (e.g. [", "unexpected (e.g. ["],
            id="other_model",
        ),
        pytest.param(lambda p: _edit(p, dims=2), ["weights do not match a unet 2D model:"], id="other_dims"),
        pytest.param(
            lambda p: _edit(p, features=[8, 16, 32]),
            ["weights do not fit the model: size mismatch for"],
            id="other_width",
        ),
        pytest.param(
            lambda p: _edit(p, labels={1: "a", 2: "b", 3: "c"}), ["size mismatch for head.weight"], id="other_labels"
        ),
        pytest.param(
            lambda p: {k: v for k, v in p.items() if k != "model"}, ["no model weights in checkpoint"], id="no_weights"
        ),
        pytest.param(
            lambda p: p["model"],
            ["not a volseg checkpoint (no 'volseg-checkpoint-v1' format marker)"],
            id="plain_state_dict",
        ),
        pytest.param(lambda p: {k: v for k, v in p.items() if k != "config"}, ["no config"], id="no_config"),
        pytest.param(lambda p: _edit(p, name="nosuchnet"), ["unknown model 'nosuchnet'"], id="unknown_model"),
    ],
)
def test_mismatched_checkpoint_says_what_does_not_match(tmp_path, payload, make, expected):
    path = save_atomic(make(payload), tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for text in expected:
        assert text in message, (text, message)


def test_missing_keys_are_counted_and_named(tmp_path, payload):
    dropped = sorted(payload["model"])[:2]
    path = save_atomic(_edit(payload, drop=dropped), tmp_path / "partial.pt")
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    assert str(caught.value).startswith(f"{path}: weights do not match a unet 3D model: 2 missing (e.g. [")
    assert "0 unexpected" in str(caught.value) and all(key in str(caught.value) for key in dropped)


def test_infer_with_another_models_checkpoint_exits_2_with_the_reason(tmp_path, payload):
    path = save_atomic(_edit(payload, name="resunet"), tmp_path / "other.pt")
    result = runner.invoke(
        app,
        [
            "infer",
            str(REPO / "data_manifest.csv"),
            "--split",
            "test",
            "--model",
            str(path),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {path}: weights do not match a resunet 3D model")


# -------------------------------------------------------------------------------------------- patient data


PLANTED = {
    "0010|0010": "Doe^Planted",  # PatientName
    "0010|0020": "PLANTED123",  # PatientID
    "0010|0030": "19010101",  # PatientBirthDate
    "0010|1000": "PLANTEDOTHER9",  # OtherPatientIDs
    "0010|1040": "1 Planted Street",  # PatientAddress
    "0010|2154": "5550100199",  # PatientTelephoneNumbers
    "0008|0080": "Planted General Hospital",  # InstitutionName
    "0008|0090": "Referrer^Planted",  # ReferringPhysicianName
    "0008|1050": "Reader^Planted",  # PerformingPhysicianName
    "0008|1070": "Operator^Planted",  # OperatorsName
    "0008|0050": "ACCPLANTED77",  # AccessionNumber
    "0020|0010": "STPLANTED",  # StudyID
}
NEEDLES = [b"planted", b"19010101", b"1901-01-01", b"5550100199"]  # matched case-insensitively


def _texts(path: Path) -> list[bytes]:
    """The file's bytes plus every decoded layer a reader could show: gunzipped, unzipped, PNG text chunks."""
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
    if path.suffix == ".js":  # a review page's case file: base64 NIfTI volumes
        for blob in re.findall(rb'"([A-Za-z0-9+/=]{64,})"', raw):
            decoded = base64.b64decode(blob)
            texts += [decoded, gzip.decompress(decoded) if decoded[:2] == b"\x1f\x8b" else b""]
    return texts


def _leaks(name: str, texts: list[bytes]) -> list[str]:
    return [f"{name}: {needle.decode()}" for text in texts for needle in NEEDLES if needle in text.lower()]


def _nifti_text_fields(path: Path) -> dict:
    """The NIfTI header's free-text fields and its number of extensions."""
    header = nib.load(path).header
    fields = {
        key: header[key].tobytes().rstrip(b"\0").decode("latin-1")
        for key in ("descrip", "aux_file", "intent_name", "db_name", "data_type")
    }
    return {**fields, "extensions": len(header.extensions)}


def _seg_patient_text(path: Path) -> list[str]:
    """Planted values a SEG may carry: its Patient and General Study modules, which DICOM requires it to copy."""
    import pydicom

    ds = pydicom.dcmread(path)
    allowed = {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyID", "ReferringPhysicianName"}
    found = []
    for element in ds.iterall():
        text = str(element.value).lower()
        if any(needle.decode() in text for needle in NEEDLES) and element.keyword not in allowed:
            found.append(f"{path.name}: {element.keyword}")
    return found


def test_patient_identity_never_reaches_any_output(run_dir, tmp_path, monkeypatch, caplog, capfd):
    """An archive whose folder names are not patient data, but whose headers are full of it."""
    inputs, work = tmp_path / "in", tmp_path / "work"
    series = dicom_series(inputs / "study1" / "ct", tags=PLANTED)
    gap = dicom_series(
        inputs / "study2" / "ct",
        tags={**PLANTED, "0020|000d": "1.2.826.0.1.3680043.2.1125.1.2"},
        series_uid="1.2.826.0.1.3680043.2.1125.2.9",
        skip=(4,),
    )
    header = sitk.ImageFileReader()
    header.SetFileName(str(next(series.iterdir())))
    header.ReadImageInformation()
    assert header.GetMetaData("0010|0010").strip() == "Doe^Planted"  # the planted values really are in the input
    assert _leaks("input", [p.read_bytes() for p in series.iterdir()])

    work.mkdir()
    monkeypatch.chdir(work)
    caplog.set_level(logging.DEBUG)
    out = work / "out"
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - Modality: CT\n", encoding="utf-8")  # the test model is an MR model
    result = runner.invoke(
        app,
        [
            "infer",
            str(inputs),
            "--model",
            str(run_dir),
            "-o",
            str(out),
            "--qc",
            "--save-probabilities",
            "--series-rules",
            str(rules),
            "--output-format",
            "nifti,dicom-seg",
            "--report",
        ],
    )
    assert result.exit_code == 1, result.output  # the gapped series fails, its message must be clean too
    rows = (out / "volseg_run.csv").read_text(encoding="utf-8")
    assert rows.count(",ok,") == 1 and "missing slice(s)" in rows
    manifest = write_manifest(work / "m.csv", [["ct", str(series), "", "test"], ["gap", str(gap), "", "test"]])
    checked = runner.invoke(app, ["check", str(manifest)])
    assert checked.exit_code == 1 and "missing slice(s)" in checked.output

    written = sorted(p for p in work.rglob("*") if p.is_file())
    (case_id,) = {p.name.removesuffix("_seg.nii.gz") for p in written if p.name.endswith("_seg.nii.gz")}
    assert case_id.startswith("dcm-")
    assert {p.name for p in written} >= {
        f"{case_id}_seg.nii.gz",
        f"{case_id}_seg.dcm",
        f"{case_id}_qc.png",
        f"{case_id}_probabilities.npz",
        "volseg_run.csv",
        "statistics.csv",
        "index.html",
        f"{case_id}.js",
        f"{case_id}.png",
    }  # the review page
    label = _nifti_text_fields(out / f"{case_id}_seg.nii.gz")
    assert label.pop("extensions") == 0  # no DICOM (or any) header extension rides along
    captured = capfd.readouterr()
    leaks = [leak for p in written if p.suffix != ".dcm" for leak in _leaks(str(p.relative_to(work)), _texts(p))]
    leaks += _seg_patient_text(out / f"{case_id}_seg.dcm")
    leaks += _leaks("NIfTI text fields", [repr(label).encode()])
    leaks += _leaks("infer output", [result.output.encode()]) + _leaks("check output", [checked.output.encode()])
    leaks += _leaks("log records", [caplog.text.encode()])
    leaks += _leaks("process stdout/stderr", [captured.out.encode(), captured.err.encode()])
    assert leaks == []
