"""The built-in abdomen-ct model on real CT: by name from the CLI, NIfTI and DICOM input on the source grid,
body crop on vs off, every backend vs torch eager, and the demo. Also: nothing derived from 3D-IRCADb
(CC BY-NC-ND) is ever committed."""

import subprocess
import zipfile

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from volseg.cli import app
from volseg.data import io
from volseg.data.manifest import read_manifest
from volseg.data.transforms import preprocess
from volseg.evaluation.metrics import dice
from volseg.inference.zoo_segmenter import ZooSegmenter
from volseg.pretrained import model_file, resolve_model

from .conftest import shared_path
from .helpers import REPO

runner = CliRunner()
CT_DATA = REPO / "data" / "abdomen_ct"
ORGANS = {1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left"}


@pytest.fixture(scope="module")
def cases():
    return {c.case_id: c for c in read_manifest(CT_DATA / "manifest.csv")}


@pytest.fixture(scope="module")
def segmenter():
    return ZooSegmenter(model_file("abdomen-ct"), "cpu", backend="torch")


@pytest.fixture(scope="module")
def reference(segmenter, cases):
    """torch eager labels of both bundled CTs (the training CT and the unseen contrast DICOM slab)."""
    return {case_id: segmenter.predict(segmenter.load(case))[0] for case_id, case in cases.items()}


def _organ_dice(a: np.ndarray, b: np.ndarray, organs=ORGANS) -> dict[str, float]:
    return {name: dice(a == value, b == value) for value, name in organs.items()}


def test_built_in_models_resolve_by_name():
    assert resolve_model("abdomen-ct") == model_file("abdomen-ct")
    assert resolve_model(None) == model_file("hippocampus-mri")
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "abdomen-ct" in result.output and "hippocampus-mri (default)" in result.output
    assert "1 liver, 2 spleen, 3 kidney_right, 4 kidney_left" in result.output


def test_infer_by_name_on_a_dicom_series_and_its_nifti_gives_the_same_labels_on_the_source_grid(tmp_path, cases):
    series = cases["ts_ct_dicom"].images[0]
    image = io.read_image(series)
    nifti = tmp_path / "slab.nii.gz"
    nib.save(nib.Nifti1Image(image[0].numpy(), image.affine.numpy()), nifti)
    outputs = {}
    for name, source in (("dicom", series), ("nifti", nifti)):
        result = runner.invoke(
            app, ["infer", str(source), "--model", "abdomen-ct", "-o", str(tmp_path / name), "--backend", "torch"]
        )
        assert result.exit_code == 0, result.output
        assert "abdomen-ct/model.pt" in result.output
        assert "abdomen-ct is a demonstration trained on one patient's CT, not for use on patients" in result.output
        (output,) = (tmp_path / name).glob("*.nii.gz")
        outputs[name] = nib.load(output)
        assert outputs[name].shape == tuple(image.shape[1:])
        assert np.allclose(outputs[name].affine, image.affine.numpy(), atol=1e-4)
    dicom, nifti_labels = (np.asarray(outputs[k].dataobj) for k in ("dicom", "nifti"))
    assert set(np.unique(dicom)) <= {0, 1, 2, 3, 4}
    assert all(d >= 0.999 for d in _organ_dice(dicom, nifti_labels).values())


def test_labels_fit_the_training_ct(reference, cases):
    truth = io.read_label(cases["ts_ct"].label)[0].numpy()
    scores = _organ_dice(reference["ts_ct"], truth)
    assert all(d > 0.9 for d in scores.values()), scores  # measured 0.95-0.97


def test_body_crop_keeps_the_labels(segmenter, reference, cases):
    """The crop skips the air around the body; aligned to the sliding windows, it changes no organ voxel."""
    segmenter.cfg.preprocess.crop_foreground = False
    segmenter.chain = preprocess(segmenter.cfg)
    try:
        for case_id, case in cases.items():
            labels = segmenter.predict(segmenter.load(case))[0]
            scores = _organ_dice(labels, reference[case_id])
            assert all(d == 1.0 for d in scores.values()), (case_id, scores)
    finally:
        segmenter.cfg.preprocess.crop_foreground = True
        segmenter.chain = preprocess(segmenter.cfg, window_overlap=segmenter.overlap)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backends_agree_with_torch_eager(backend, reference, cases):
    segmenter = ZooSegmenter(model_file("abdomen-ct"), "cpu", backend=backend)
    for case_id, case in cases.items():
        scores = _organ_dice(segmenter.predict(segmenter.load(case))[0], reference[case_id])
        assert all(d >= 0.999 for d in scores.values()), (backend, case_id, scores)


def test_demo_ct_prints_per_organ_dice(tmp_path):
    result = runner.invoke(app, ["demo", "--task", "ct", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "abdomen-ct/model.pt" in result.output
    for organ in ORGANS.values():
        assert organ in result.output
    assert "mean Dice over 1 test case(s)" in result.output and "mean Dice over 1 train case(s)" in result.output
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| ts_ct_dicom | test |" in report and "| ts_ct | train |" in report
    assert (tmp_path / "ts_ct_qc.png").is_file()


# ------------------------------------------------------------------------------- the IRCADb license guard

IRCADB_GRID = ((512, 512, 129), (0.57, 0.57, 1.6))


def _tracked_files() -> list:
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / name for name in listing.decode().split("\0") if name]


def _ircadb_uids(tmp_path) -> set[str]:
    """Study and series UIDs of IRCADb patient 1's series (image and masks), from the zips in ../shared."""
    folder = shared_path("data", "ircadb_3d", "3Dircadb1.1")
    uids = set()
    for archive in ("PATIENT_DICOM.zip", "MASKS_DICOM.zip"):
        with zipfile.ZipFile(folder / archive) as z:
            first_per_series = {n.rsplit("/", 1)[0]: n for n in reversed(z.namelist()) if not n.endswith("/")}
            for name in first_per_series.values():
                path = tmp_path / "slice"
                path.write_bytes(z.read(name))
                reader = sitk.ImageFileReader()
                reader.SetFileName(str(path))
                reader.ReadImageInformation()
                uids |= {reader.GetMetaData(tag).strip("\0 ") for tag in ("0020|000d", "0020|000e")}
    return uids


def test_no_ircadb_volume_or_series_is_committed(tmp_path):
    """No tracked volume has IRCADb patient 1's grid; no tracked DICOM file carries its UIDs."""
    uids = _ircadb_uids(tmp_path)
    assert uids, "no UIDs read from the IRCADb zips"
    offenders = []
    for path in _tracked_files():
        if path.name.endswith((".nii", ".nii.gz", ".nrrd", ".mha")):
            image = sitk.ReadImage(str(path))
            grid = (image.GetSize(), tuple(round(s, 2) for s in image.GetSpacing()))
            if grid == IRCADB_GRID:
                offenders.append(str(path))
        elif path.is_file() and path.stat().st_size > 132 and path.read_bytes()[128:132] == b"DICM":
            data = path.read_bytes()
            if any(uid.encode() in data for uid in uids):
                offenders.append(str(path))
    assert not offenders, f"IRCADb-derived files are tracked (CC BY-NC-ND: never redistribute): {offenders}"


def test_shipped_models_were_not_trained_on_ircadb():
    """The pipeline records each shipped model's training cases in its card; none may be IRCADb's."""
    for card in (REPO / "volseg" / "pretrained").glob("*/MODEL_CARD.md"):
        trained_on = [
            line for line in card.read_text(encoding="utf-8").splitlines() if line.startswith("- **Training cases**")
        ]
        assert trained_on, f"{card}: no '- **Training cases**' line"
        assert "ircad" not in trained_on[0].lower(), trained_on[0]
        for weights in card.parent.glob("*.pt"):  # the locator too: every shipped weight file is accounted for
            assert weights.name in card.read_text(encoding="utf-8"), f"{card}: says nothing of {weights.name}"
