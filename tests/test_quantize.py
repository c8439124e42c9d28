"""INT8 (NNCF + OpenVINO): the shipped int8 twin agrees with fp32, ``auto`` uses int8 only where agreement is
recorded for this very checkpoint, and ``volseg export --precision int8`` makes and records one."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from volseg.cli import app
from volseg.data.manifest import read_manifest
from volseg.evaluation.metrics import dice
from volseg.inference.zoo_segmenter import ZooSegmenter
from volseg.pretrained import model_file
from volseg.runtime.quantize import IR_NAME, MIN_AGREEMENT, RECORD_NAME, agrees, file_digest

from .helpers import REPO, tiny_run

pytest.importorskip("openvino")
pytest.importorskip("nncf")
runner = CliRunner()
MODEL_FILE = model_file("hippocampus-mri")


@pytest.fixture(scope="module")
def test_cases():
    return [c for c in read_manifest(REPO / "data_manifest.csv") if c.split == "test"]


def test_shipped_int8_twin_belongs_to_the_shipped_model_and_agrees():
    record = json.loads((MODEL_FILE.parent / RECORD_NAME).read_text(encoding="utf-8"))
    assert record["checkpoint_sha256"] == file_digest(MODEL_FILE)
    assert record["agreement"]["cases"] == 10 and agrees(record)
    reference = record["agreement"]["dice_vs_reference"]
    for label in ("anterior", "posterior"):  # accuracy against the manual labels kept within 0.005
        assert abs(reference["int8"][label] - reference["fp32"][label]) <= 0.005


def test_auto_uses_int8_for_the_shipped_model_and_its_labels_agree_with_fp32(test_cases, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    int8 = ZooSegmenter(MODEL_FILE, "cpu", backend="auto", precision="auto")
    fp32 = ZooSegmenter(MODEL_FILE, "cpu", backend="openvino", precision="fp32")
    assert (int8.backend, int8.precision) == ("openvino", "int8")
    assert fp32.precision == "fp32"
    assert ZooSegmenter(MODEL_FILE, "cpu", backend="torch", precision="auto").precision == "fp32"
    for case in test_cases[:3]:
        a, b = int8.predict(int8.load(case))[0], fp32.predict(fp32.load(case))[0]
        for value in (1, 2):
            assert dice(a == value, b == value) >= MIN_AGREEMENT, (case.case_id, value)


def test_a_stale_or_unmeasured_int8_model_is_not_used_by_auto(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    shutil.copytree(MODEL_FILE.parent, folder)
    record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    stale = dict(record, checkpoint_sha256="0" * 64)  # made from another checkpoint
    (folder / RECORD_NAME).write_text(json.dumps(stale), encoding="utf-8")
    assert ZooSegmenter(folder / "model.pt", "cpu", backend="openvino", precision="auto").precision == "fp32"
    unmeasured = {k: v for k, v in record.items() if k != "agreement"}
    (folder / RECORD_NAME).write_text(json.dumps(unmeasured), encoding="utf-8")
    assert ZooSegmenter(folder / "model.pt", "cpu", backend="openvino", precision="auto").precision == "fp32"
    assert ZooSegmenter(folder / "model.pt", "cpu", backend="openvino", precision="int8").precision == "int8"


def test_int8_refused_off_openvino_with_one_line():
    result = runner.invoke(app, ["infer", str(REPO / "data_manifest.csv"), "--backend", "torch", "--precision", "int8"])
    assert result.exit_code == 2
    assert "int8 runs through OpenVINO" in result.output and "Traceback" not in result.output


def test_export_int8_writes_the_model_and_its_agreement_and_infer_uses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = tiny_run(tmp_path / "tiny")
    manifest = REPO / "data_manifest.csv"
    result = runner.invoke(
        app,
        [
            "export",
            str(run),
            "--precision",
            "int8",
            "-o",
            str(tmp_path / "deploy"),
            "--calibration",
            str(manifest),
            "--check",
            str(manifest),
            "--check-split",
            "test",
        ],
    )
    assert result.exit_code == 0, result.output
    deploy = tmp_path / "deploy"
    assert (deploy / IR_NAME).is_file() and (deploy / IR_NAME).with_suffix(".bin").is_file()
    record = json.loads((deploy / RECORD_NAME).read_text(encoding="utf-8"))
    assert record["checkpoint_sha256"] == file_digest(deploy / record["checkpoint"])
    assert record["agreement"]["cases"] == 10 and set(record["agreement"]["dice_vs_fp32_min"]) == {
        "anterior",
        "posterior",
    }
    assert not list(deploy.glob(".*"))  # no temporary file left behind
    out = tmp_path / "out"
    case = next(c for c in read_manifest(manifest) if c.split == "test")
    result = runner.invoke(
        app, ["infer", str(case.image), "-o", str(out), "--model", str(deploy), "--precision", "int8"]
    )
    assert result.exit_code == 0, result.output
    assert "openvino int8" in result.output and (out / f"{case.case_id}_seg.nii.gz").is_file()


def test_fp32_export_needs_an_output_file():
    result = runner.invoke(app, ["export", str(MODEL_FILE)])
    assert result.exit_code == 2 and "--output FILE.onnx" in result.output


def test_shipped_int8_twins_were_not_calibrated_on_ircadb():
    """Calibration sets the int8 model's scales: a twin calibrated on IRCADb would be an IRCADb derivative."""
    for record in (REPO / "volseg" / "pretrained").glob(f"*/{RECORD_NAME}"):
        source = json.loads(record.read_text(encoding="utf-8"))["calibration"]["source"]
        assert "ircadb" not in source.lower(), (record, source)


def test_export_bf16_records_its_agreement_and_auto_then_runs_bf16(tmp_path, monkeypatch, test_cases):
    """Issue 42: `volseg export MODEL --precision bf16 --check M` records bf16's agreement with fp32, and
    --precision auto then takes bf16 on a CPU with native bf16 (where no agreeing int8 model is)."""
    from volseg.inference.zoo_segmenter import ZooSegmenter
    from volseg.runtime import backends
    from volseg.runtime.quantize import BF16_RECORD_NAME

    monkeypatch.setattr(backends, "native_bf16", lambda: True)  # OpenVINO runs it on any CPU; the rule is tested
    run = tiny_run(tmp_path / "tiny")
    manifest = REPO / "data_manifest.csv"
    args = ["export", str(run), "--precision", "bf16", "--check", str(manifest), "--check-split", "test"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((run / BF16_RECORD_NAME).read_text(encoding="utf-8"))
    assert record["checkpoint_sha256"] == file_digest(run / "best.pt")
    worst = record["agreement"]["dice_vs_fp32_min"]
    assert record["agreement"]["cases"] == 10 and set(worst) == {"anterior", "posterior"}
    assert f"recorded in {run / BF16_RECORD_NAME}" in result.output
    auto = ZooSegmenter(run, "cpu", backend="openvino", precision="auto")
    assert auto.precision == ("bf16" if min(worst.values()) >= 0.99 else "fp32")
    record["agreement"]["dice_vs_fp32_min"] = {"anterior": 1.0, "posterior": 1.0}
    (run / BF16_RECORD_NAME).write_text(json.dumps(record), encoding="utf-8")
    assert ZooSegmenter(run, "cpu", backend="openvino", precision="auto").precision == "bf16"
    monkeypatch.setattr(backends, "native_bf16", lambda: False)
    assert ZooSegmenter(run, "cpu", backend="openvino", precision="auto").precision == "fp32"
