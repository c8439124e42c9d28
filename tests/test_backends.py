"""Every inference backend gives the labels torch eager fp32 gives (Dice >= 0.999 per label)."""

import numpy as np
import pytest
import torch

from volseg.data.manifest import read_manifest
from volseg.evaluation.metrics import dice
from volseg.inference.zoo_segmenter import ZooSegmenter
from volseg.pretrained import model_file
from volseg.runtime.backends import choose
from volseg.runtime.checkpoint import load_model
from volseg.runtime.onnx_export import export_onnx

from .helpers import REPO

MODEL_FILE = model_file("hippocampus-mri")


@pytest.fixture(scope="module")
def cases():
    return [c for c in read_manifest(REPO / "data_manifest.csv") if c.split == "test"]


@pytest.fixture(scope="module")
def reference(cases):
    segmenter = ZooSegmenter(MODEL_FILE, "cpu", backend="torch")
    return {c.case_id: segmenter.predict(segmenter.load(c))[0] for c in cases}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backend_labels_agree_with_torch(backend, cases, reference, tmp_path, monkeypatch):
    pytest.importorskip(backend)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    segmenter = ZooSegmenter(MODEL_FILE, "cpu", backend=backend)
    assert segmenter.backend == backend
    for case in cases:
        labels = segmenter.predict(segmenter.load(case))[0]
        for value in (1, 2):
            assert dice(labels == value, reference[case.case_id] == value) >= 0.999, (backend, case.case_id, value)
    assert list((tmp_path / "volseg" / "onnx").glob("*.onnx")), "the export is cached"


def test_exported_onnx_takes_any_size(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, cfg, _ = load_model(MODEL_FILE)
    path = export_onnx(model, cfg, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 1, 35, 51, 33)
    out = session.run(None, {"image": x.numpy()})[0]
    with torch.inference_mode():
        ref = model(x).numpy()
    assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-3


def test_choose_resolves_auto_and_refuses_what_cannot_run():
    assert choose("torch", torch.device("cpu")) == "torch"
    assert choose("auto", torch.device("cpu")) in ("openvino", "onnxruntime", "torch")
    with pytest.raises(ValueError, match="'tensorrt'"):
        choose("tensorrt", torch.device("cpu"))


AGREES = {"agreement": {"dice_vs_fp32_min": {"a": 0.995, "b": 0.991}}}
DISAGREES = {"agreement": {"dice_vs_fp32_min": {"a": 0.995, "b": 0.97}}}


@pytest.mark.parametrize(
    "backend, precision, record, expected",
    [
        ("torch", "fp32", None, ("torch", "fp32")),
        ("openvino", "auto", AGREES, ("openvino", "int8")),
        ("openvino", "auto", DISAGREES, ("openvino", "fp32")),
        ("openvino", "auto", None, ("openvino", "fp32")),
        ("torch", "auto", AGREES, ("torch", "fp32")),  # int8 only through OpenVINO
        ("openvino", "int8", DISAGREES, ("openvino", "int8")),  # asked for: the caller's twin runs
        ("torch", "int8", AGREES, "int8 runs through OpenVINO"),
        ("onnxruntime", "bf16", None, "bf16 runs through OpenVINO"),
        ("openvino", "fp16", None, "precision must be one of"),
    ],
)
def test_one_precision_policy_for_every_model_family(backend, precision, record, expected):
    """volseg's zoo models and nnU-Net folders both take their engine from choose_engine (issue 42)."""
    from volseg.errors import VolsegError
    from volseg.runtime.backends import choose_engine

    if isinstance(expected, str):
        with pytest.raises(VolsegError, match=expected):
            choose_engine(backend, precision, torch.device("cpu"), record)
    else:
        assert choose_engine(backend, precision, torch.device("cpu"), record) == expected


def test_bf16_is_refused_where_the_cpu_has_no_native_bf16(monkeypatch):
    from volseg.errors import VolsegError
    from volseg.runtime import backends

    monkeypatch.setattr(backends, "native_bf16", lambda: False)
    with pytest.raises(VolsegError, match="no native bf16"):
        backends.choose_engine("auto", "bf16", torch.device("cpu"), None)
    monkeypatch.setattr(backends, "native_bf16", lambda: True)
    assert backends.choose_engine("auto", "bf16", torch.device("cpu"), None) == ("openvino", "bf16")


def test_auto_takes_bf16_only_with_a_recorded_agreement_on_a_native_bf16_cpu(monkeypatch):
    from volseg.runtime import backends

    cpu = torch.device("cpu")
    monkeypatch.setattr(backends, "native_bf16", lambda: True)
    assert backends.choose_engine("auto", "auto", cpu, None, AGREES) == ("openvino", "bf16")
    assert backends.choose_engine("auto", "auto", cpu, AGREES, AGREES) == ("openvino", "int8")  # int8 first
    assert backends.choose_engine("auto", "auto", cpu, None, DISAGREES) == ("openvino", "fp32")
    assert backends.choose_engine("torch", "auto", cpu, None, AGREES) == ("torch", "fp32")
    monkeypatch.setattr(backends, "native_bf16", lambda: False)
    assert backends.choose_engine("auto", "auto", cpu, None, AGREES) == ("openvino", "fp32")
