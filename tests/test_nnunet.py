"""nnU-Net v2 model folders run by volseg: the same labels as nnU-Net's own predictor, voxel for voxel.

The golden labels in tests/data/nnunet_tiny were made by ``nnUNetv2_predict_from_modelfolder`` (nnU-Net 2.8.1,
``benchmarks/nnunet_golden.py``) on tiny model folders and five synthetic CTs chosen to exercise every step
(anisotropic spacing and separate-z resampling, a rotated direction, an image smaller than a patch, a zero
border cropped away, a transposed plan, torch resampling, two folds, mirroring).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from volseg.cli import app
from volseg.inference.inputs import CaseInput
from volseg.nnunet.checkpoint import load_nnunet_checkpoint
from volseg.nnunet.model_folder import Labels, ModelFolder, NnunetFolderError
from volseg.nnunet.segmenter import NnunetSegmenter

from .helpers import REPO
from .nnunet_folder import write_model_folder

GOLDEN = REPO / "tests" / "data" / "nnunet_tiny"
VARIANTS = ("plain", "torch_resampling", "transposed")
IMAGES = sorted((GOLDEN / "images").glob("*_0000.nii.gz"))
runner = CliRunner()


def model(variant: str = "plain") -> Path:
    return GOLDEN / "models" / variant / "Dataset900_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres"


def case_of(image: Path) -> CaseInput:
    return CaseInput(image.name[: -len("_0000.nii.gz")], (image,))


def golden(variant: str, tta: bool, case: str) -> np.ndarray:
    return np.asarray(nib.load(GOLDEN / "nnunet" / variant / ("tta" if tta else "no_tta") / f"{case}.nii.gz").dataobj)


@pytest.mark.parametrize("tta", [False, True], ids=["no_tta", "tta"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_labels_equal_nnunet_predict_voxel_for_voxel(variant, tta):
    segmenter = NnunetSegmenter(model(variant), tta=tta)
    assert len(IMAGES) == 5
    for image in IMAGES:
        case = case_of(image)
        labels, _ = segmenter.predict(segmenter.load(case))
        expected = golden(variant, tta, case.case_id)
        assert labels.shape == expected.shape
        assert np.array_equal(labels, expected), f"{case.case_id}: {(labels != expected).sum()} voxels differ"
        assert set(np.unique(labels)) <= {0, 1, 2}


def test_cli_writes_nnunet_labels_on_the_scans_grid(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["infer", str(GOLDEN / "images"), "--model", str(model()), "-o", str(out), "--backend", "torch"]
    )
    assert result.exit_code == 0, result.output
    assert "nnU-Net 3d_fullres, folds 0,1" in result.output
    for image in IMAGES:
        case = case_of(image).case_id
        written, source = nib.load(out / f"{case}_seg.nii.gz"), nib.load(image)
        assert np.array_equal(np.asarray(written.dataobj), golden("plain", False, case))
        assert np.allclose(written.affine, source.affine) and written.shape == source.shape
    rows = (out / "volseg_run.csv").read_text().splitlines()
    assert len(rows) == 6 and all(",ok," in r for r in rows[1:])
    stats = (out / "statistics.csv").read_text()
    assert "liver" in stats and "spleen" in stats


def test_cli_runs_an_nnunet_folder_without_importing_monai(tmp_path):
    """MONAI's import is 2.5 s of a single case's start-up, and nnU-Net folders need none of it: a fresh
    interpreter segments a case with QC and statistics, writes nnU-Net's labels, and never imports it, nor
    SimpleITK for a NIfTI case (a lent GPU machine gets no SimpleITK wheel: docs/gpu.md)."""
    import subprocess
    import sys

    out = tmp_path / "out"
    code = (
        "import sys; from volseg.cli.app import main; sys.argv = ['volseg'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "found = sorted(m for m in sys.modules if m.split('.')[0] in ('monai', 'SimpleITK'))\n"
        "assert not found, found[:3]"
    )
    args = ["infer", str(IMAGES[0]), "--model", str(model()), "-o", str(out), "--backend", "torch", "--qc"]
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, encoding="utf-8", errors="replace", cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr
    case = case_of(IMAGES[0]).case_id
    assert np.array_equal(np.asarray(nib.load(out / f"{case}_seg.nii.gz").dataobj), golden("plain", False, case))
    assert (out / "statistics.csv").exists() and any(out.rglob("*.png"))


def test_dataset_folder_and_fold_choice(tmp_path):
    """The dataset folder holding one model folder is accepted; --folds 0 is fold 0 alone."""
    image = GOLDEN / "images" / "iso_0000.nii.gz"
    both = NnunetSegmenter(model())
    alone = NnunetSegmenter(model(), folds=["0"])
    labels_both, _ = both.predict(both.load(case_of(image)))
    labels_alone, _ = alone.predict(alone.load(case_of(image)))
    assert np.array_equal(labels_both, golden("plain", False, "iso"))
    assert not np.array_equal(labels_alone, labels_both)  # the second fold changes the ensemble
    result = runner.invoke(
        app, ["infer", str(image), "--model", str(model().parent), "--folds", "0", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(nib.load(tmp_path / "o" / "iso_seg.nii.gz").dataobj), labels_alone)


def test_missing_checkpoint_and_cascade_are_one_line_errors(tmp_path):
    result = runner.invoke(app, ["infer", str(IMAGES[0]), "--model", str(model()), "--checkpoint", "best"])
    assert result.exit_code == 2
    assert "no checkpoint_best.pth for fold(s) any (present: none)" in result.output.replace("\n", " ")
    folder = shutil.copytree(model(), tmp_path / "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres")
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    (folder / "plans.json").write_text(json.dumps(plans))
    for fold in ("0", "1"):
        checkpoint = torch.load(folder / f"fold_{fold}" / "checkpoint_final.pth", weights_only=False)
        checkpoint["init_args"]["configuration"] = "3d_cascade_fullres"
        torch.save(checkpoint, folder / f"fold_{fold}" / "checkpoint_final.pth")
    with pytest.raises(NnunetFolderError, match="cascade"):
        ModelFolder.open(folder)


class _Planted:
    """What a malicious checkpoint carries: unpickling it would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_loads_without_running_code(tmp_path):
    real = load_nnunet_checkpoint(model() / "fold_0" / "checkpoint_final.pth")
    assert isinstance(real["_best_ema"], np.float64) and real["init_args"]["device"] == torch.device("cpu")
    folder = shutil.copytree(model(), tmp_path / "Dataset900_Tiny" / model().name)
    marker = tmp_path / "pwned"
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
    checkpoint["logging"]["extra"] = _Planted(marker)
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    result = runner.invoke(app, ["infer", str(IMAGES[0]), "--model", str(folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    line = result.output.strip().replace("\n", " ")
    assert "fold_0/checkpoint_final.pth: refused, it holds posix.system" in line
    assert not marker.exists()
    checkpoint["logging"]["extra"] = pickle.PickleError("an unexpected class")  # not code, still not allowed
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(ValueError, match="refused, it holds pickle.PickleError"):
        load_nnunet_checkpoint(folder / "fold_0" / "checkpoint_final.pth")


def test_plans_may_only_name_torch_layers(tmp_path):
    folder = shutil.copytree(model(), tmp_path / "m" / model().name)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "os.system"
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(NnunetFolderError, match="'os.system' is not a torch.nn layer"):
        NnunetSegmenter(folder)


def test_plans_from_before_nnunet_2_4_build_the_same_network(tmp_path):
    """Old plans name the UNet class and widths instead of an 'architecture' entry (TotalSegmentator's do)."""
    folder = shutil.copytree(model(), tmp_path / "m" / model().name)
    plans = json.loads((folder / "plans.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    kwargs = cfg.pop("architecture")["arch_kwargs"]
    cfg.update(
        UNet_class_name="PlainConvUNet",
        UNet_base_num_features=kwargs["features_per_stage"][0],
        unet_max_num_features=kwargs["features_per_stage"][-1],
        conv_kernel_sizes=kwargs["kernel_sizes"],
        pool_op_kernel_sizes=kwargs["strides"],
        n_conv_per_stage_encoder=kwargs["n_conv_per_stage"],
        n_conv_per_stage_decoder=kwargs["n_conv_per_stage_decoder"],
        num_pool_per_axis=[1, 1, 1],
    )
    (folder / "plans.json").write_text(json.dumps(plans))
    segmenter = NnunetSegmenter(folder)
    image = GOLDEN / "images" / "aniso_0000.nii.gz"
    labels, _ = segmenter.predict(segmenter.load(case_of(image)))
    assert np.array_equal(labels, golden("plain", False, "aniso"))


def test_region_labels_follow_regions_class_order():
    dataset = {
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing": 3, "ignore": 4},
        "regions_class_order": [1, 2, 3],
    }
    labels = Labels.from_dataset(dataset, Path("dataset.json"))
    assert labels.regions == [(1, 2, 3), (2, 3), (3,)] and labels.heads == 3
    assert labels.names == {1: "whole tumor", 2: "tumor core", 3: "enhancing"} and labels.ignore == 4
    plain = Labels.from_dataset({"labels": {"background": 0, "liver": 1, "spleen": 2}}, Path("d.json"))
    assert plain.values == [0, 1, 2] and plain.heads == 3 and plain.regions is None


def test_nibabel_reorienting_reader_matches_a_canonical_input(tmp_path):
    """NibabelIOWithReorient plans see every scan in RAS: the labels of a flipped, permuted scan are the labels
    of its RAS-canonical copy, mapped back onto the scan's own grid."""
    folder = write_model_folder(tmp_path / "m", folds=("0",))
    plans = json.loads((folder / "plans.json").read_text())
    plans["image_reader_writer"] = "NibabelIOWithReorient"
    (folder / "plans.json").write_text(json.dumps(plans))
    source = nib.load(GOLDEN / "images" / "rotated_0000.nii.gz")
    canonical = nib.as_closest_canonical(source)
    nib.save(canonical, tmp_path / "canonical_0000.nii.gz")
    segmenter = NnunetSegmenter(folder)
    labels, _ = segmenter.predict(segmenter.load(CaseInput("rotated", (GOLDEN / "images" / "rotated_0000.nii.gz",))))
    plans["image_reader_writer"] = "SimpleITKIO"
    (folder / "plans.json").write_text(json.dumps(plans))
    plain = NnunetSegmenter(folder)
    on_canonical, _ = plain.predict(plain.load(CaseInput("canonical", (tmp_path / "canonical_0000.nii.gz",))))
    back = nib.orientations.apply_orientation(
        on_canonical,
        nib.orientations.ornt_transform(
            nib.orientations.io_orientation(canonical.affine), nib.orientations.io_orientation(source.affine)
        ),
    )
    assert labels.shape == source.shape and np.array_equal(labels, back)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_cpu_backends_give_nnunets_labels(backend):
    """The network exported once to ONNX (fp32) and run by OpenVINO or ONNX Runtime: still nnU-Net's labels."""
    pytest.importorskip(backend, reason=f"{backend} is not installed (pip install 'volseg[{backend}]')")
    segmenter = NnunetSegmenter(model(), backend=backend, tta=True)
    assert segmenter.backend == backend
    for image in IMAGES[:3]:
        case = case_of(image)
        labels, _ = segmenter.predict(segmenter.load(case))
        assert np.array_equal(labels, golden("plain", True, case.case_id))


def test_bf16_runs_where_the_cpu_has_it_and_is_refused_where_it_does_not(monkeypatch):
    """--precision bf16: OpenVINO at bf16 inference precision on a CPU with native bf16 (labels close to fp32's);
    one line, before any work, where the CPU would emulate it."""
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'volseg[openvino]')")
    from volseg.errors import VolsegError
    from volseg.runtime import backends

    monkeypatch.setattr(backends, "native_bf16", lambda: False)
    with pytest.raises(VolsegError, match="no native bf16"):
        NnunetSegmenter(model(), backend="openvino", precision="bf16")
    with pytest.raises(VolsegError, match="through OpenVINO"):
        NnunetSegmenter(model(), backend="torch", precision="bf16")
    monkeypatch.setattr(backends, "native_bf16", lambda: True)
    segmenter = NnunetSegmenter(model(), backend="openvino", precision="bf16")
    assert segmenter.precision == "bf16"
    case = case_of(IMAGES[0])
    labels, _ = segmenter.predict(segmenter.load(case))
    expected = golden("plain", False, case.case_id)
    assert labels.shape == expected.shape and (labels == expected).mean() > 0.98


def _totalsegmentator_home(home: Path, parts: dict[int, dict], spacing: float, trainer: str) -> Path:
    """TotalSegmentator 2.x's weights layout with tiny part models (their labels named as TotalSegmentator's)."""
    root = home / "nnunet" / "results"
    for i, (dataset_id, labels) in enumerate(parts.items()):
        write_model_folder(
            root,
            seed=10 + i,
            labels={"background": 0, **labels},
            mirror_axes=None,
            dataset_name=f"Dataset{dataset_id}_TotalSegmentator_part{i + 1}",
            trainer=trainer,
            spacing=(spacing,) * 3,
        )
    return home


def test_totalsegmentator_task_runs_and_merges_its_parts(tmp_path, monkeypatch):
    from volseg.nnunet.totalseg import TotalSegmentatorSegmenter

    parts = {
        291: {"spleen": 1, "liver": 2},
        292: {"vertebrae_L1": 1},
        293: {"heart": 1},
        294: {"gluteus_maximus_left": 1},
        295: {"rib_left_1": 1, "liver": 2},
    }
    monkeypatch.setenv(
        "TOTALSEG_HOME_DIR", str(_totalsegmentator_home(tmp_path / "ts", parts, 1.5, "nnUNetTrainerNoMirroring"))
    )
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    segmenter = TotalSegmentatorSegmenter("total", backend="torch")
    if segmenter.task.names is None:  # no totalsegmentator package: numbered in part order by dataset.json names
        assert dict(segmenter.info.labels) == {
            1: "spleen",
            2: "liver",
            3: "vertebrae_L1",
            4: "heart",
            5: "gluteus_maximus_left",
            6: "rib_left_1",
        }
    assert segmenter.step == 0.8 and len(segmenter.parts) == 5
    image = GOLDEN / "images" / "rotated_0000.nii.gz"
    labels, _ = segmenter.predict(segmenter.load(case_of(image)))
    assert labels.shape == nib.load(image).shape
    assert set(np.unique(labels)) <= {0, *segmenter.info.labels}
    assert len(np.unique(labels)) > 2
    result = runner.invoke(
        app, ["infer", str(image), "--model", "totalsegmentator:total_fast", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "totalseg_download_weights -t total_fast" in result.output.replace("\n", " ")


def test_totalsegmentator_resamples_the_scan_as_its_default_resampling_order(tmp_path, monkeypatch):
    """TotalSegmentator 2.18.0 zooms the canonical scan with ``--resampling_order`` 1 (default), not 3: with order 3
    the 1.5 mm grid of the bundled CT differed in 10.1 M of 11.0 M voxels (benchmarks/results/totalseg_parity.md).
    What the part models see is the order-1 zoom, truncated to int32, then nnU-Net's CT normalization."""
    from scipy import ndimage

    from volseg.nnunet.preprocess import preprocess
    from volseg.nnunet.totalseg import TotalSegmentatorSegmenter

    parts = {297: {"spleen": 1, "liver": 2}}
    monkeypatch.setenv(
        "TOTALSEG_HOME_DIR",
        str(_totalsegmentator_home(tmp_path / "ts", parts, 3.0, "nnUNetTrainer_4000epochs_NoMirroring")),
    )
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    scan = np.random.default_rng(5).integers(-200, 300, size=(20, 18, 9)).astype(np.int16)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(scan, affine), tmp_path / "scan_0000.nii.gz")
    segmenter = TotalSegmentatorSegmenter("total_fast", backend="torch")
    data = segmenter.load(case_of(tmp_path / "scan_0000.nii.gz"))
    zoom = np.array([0.8, 0.8, 2.5]) / 3.0
    expected = ndimage.zoom(scan.astype(np.float64), zoom, mode="nearest", order=1).astype(np.int32)
    spacing = [3.0, 3.0, 3.0]
    wanted = preprocess(expected.transpose(2, 1, 0)[None], spacing, segmenter.parts[0].model).data
    assert np.asarray(data["prepared"][0].data).shape == np.asarray(wanted).shape
    assert np.array_equal(np.asarray(data["prepared"][0].data), np.asarray(wanted))


@pytest.mark.parametrize(
    "current,new,shape",
    [
        ([0.8, 0.8, 3.0], [0.4, 0.4, 1.0], (60, 80, 27)),  # separate z: in-plane linear, nearest along z
        ([3.0, 0.8, 0.8], [3.0, 1.6, 1.6], (9, 20, 15)),  # separate along the first axis, z unchanged
        ([1.0, 1.0, 1.0], [0.5, 0.6, 0.4], (60, 67, 23)),  # one trilinear pass
        ([1.0, 1.0, 1.0], [1.9, 2.2, 1.7], (16, 18, 5)),  # downsampling
    ],
)
def test_fast_logit_resampling_matches_nnunets_skimage_path(current, new, shape):
    """Logits go back to the scan's shape through torch in float64; nnU-Net uses skimage and scipy. The float16
    results may differ by one unit in the last place, never in which class is largest."""
    from volseg.nnunet.preprocess import resample_exact, resample_skimage, separate_z

    logits = (
        np.random.default_rng(3).normal(size=(4, 30, 40, 9) if shape[0] != 9 else (4, 9, 40, 30)).astype(np.float16)
    )
    fast = resample_skimage(logits, shape, current, new, order=1, order_z=0, force_separate_z=None)
    do_separate, axis = separate_z(current, new)
    exact = resample_exact(logits, np.array(shape), do_separate, axis, 1, 0, np.float16)
    assert fast.shape == exact.shape == (4, *shape) and fast.dtype == np.float16
    assert np.abs(fast.astype(float) - exact.astype(float)).max() <= 2e-3
    assert (fast != exact).mean() < 1e-3
    assert np.array_equal(fast.argmax(0), exact.argmax(0))


@pytest.mark.parametrize(
    "current,new,shape",
    [
        ([0.8, 0.8, 3.0], [0.4, 0.4, 1.0], (60, 80, 27)),
        ([3.0, 0.8, 0.8], [3.0, 1.6, 1.6], (9, 20, 15)),
        ([1.0, 1.0, 1.0], [0.5, 0.6, 0.4], (60, 67, 23)),
        ([1.0, 1.0, 1.0], [1.9, 2.2, 1.7], (16, 18, 5)),
        ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], None),  # no resampling at all
    ],
)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_fused_logits_to_classes_are_the_argmax_of_the_resampled_logits(current, new, shape, dtype):
    """Logits back to the scan go channel by channel into a running maximum (two channels at a time); the
    classes must be those of resampling every channel and taking the first largest, ties included."""
    from volseg.nnunet.preprocess import linear_argmax, resample_skimage

    size = (5, 30, 40, 9) if shape is None or shape[0] != 9 else (5, 9, 40, 30)
    logits = np.round(np.random.default_rng(5).normal(size=size) * 2).astype(dtype)  # coarse: many ties
    shape = shape or size[1:]
    resampled = resample_skimage(logits, shape, current, new, order=1, order_z=0, force_separate_z=None)
    first_of_ties = np.argmax(resampled.astype(np.float32), axis=0)
    assert (np.sort(resampled, axis=0)[-1] == np.sort(resampled, axis=0)[-2]).any()  # ties are exercised
    classes = linear_argmax(logits, shape, current, new, force_separate_z=None)
    assert classes.shape == tuple(shape) and classes.dtype == np.uint8
    assert np.array_equal(classes, first_of_ties)


@pytest.mark.parametrize(
    "source,target",
    [((20, 31, 17), (9, 40, 33)), ((40, 64, 64), (23, 30, 91)), ((3, 50, 50), (9, 20, 21)), ((7, 5, 3), (7, 5, 3))],
)
def test_threaded_cubic_resize_is_skimages_bit_for_bit(source, target):
    """nnU-Net resamples a scan with skimage's order-3 resize; volseg filters its spline lines on two threads,
    and must get the very same numbers (a changed scipy that breaks this fails here, not on a patient)."""
    from skimage.transform import resize

    from volseg.nnunet.preprocess import _cubic_resize

    image = np.random.default_rng(7).normal(size=source) * 300.0
    expected = resize(image, target, 3, mode="edge", anti_aliasing=False)
    assert np.array_equal(_cubic_resize(image, target), expected)


def test_int8_twin_lives_in_the_cache_and_auto_takes_it_only_when_it_agrees(tmp_path, monkeypatch):
    """`volseg export NNUNET_FOLDER --precision int8`: the nnU-Net folder is not written to; the twin holds
    copies of the plans and dataset.json, one int8 model per fold and its measured agreement."""
    pytest.importorskip("nncf", reason="nncf is not installed (pip install 'volseg[openvino]')")
    import openvino as ov

    from volseg.nnunet.int8 import twin_folder
    from volseg.runtime.quantize import IR_NAME, write_record
    from volseg.runtime.quantize import RECORD_NAME as RECORD

    monkeypatch.setenv("VOLSEG_CACHE", str(tmp_path / "cache"))
    folder = shutil.copytree(model(), tmp_path / "Dataset900_Tiny" / model().name)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    manifest = tmp_path / "m.csv"
    rows = [f"{case_of(i).case_id},{i},,{'train' if n < 2 else 'val'}" for n, i in enumerate(IMAGES[:3])]
    manifest.write_text("case_id,image,label,split\n" + "\n".join(rows) + "\n")
    result = runner.invoke(app, ["export", str(folder), "--precision", "int8", "--calibration", str(manifest)])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # the user's folder is untouched
    segmenter = NnunetSegmenter(folder, backend="openvino", precision="auto")
    twin = twin_folder(segmenter.model)
    assert twin.parent.parent == tmp_path / "cache"
    assert {p.name for p in twin.iterdir()} == {"plans.json", "dataset.json", RECORD, "fold_0", "fold_1"}
    record = json.loads((twin / RECORD).read_text())
    assert record["agreement"]["cases"] == 1 and set(record["agreement"]["dice_vs_fp32_min"]) == {"liver", "spleen"}
    assert record["keep_fp32"] == ["last"]
    convolutions = [
        op
        for op in ov.Core().read_model(str(twin / "fold_0" / IR_NAME)).get_ordered_ops()
        if op.get_type_name() == "Convolution"
    ]
    fp32 = [op.input_value(1).get_node().get_type_name() == "Constant" for op in convolutions]  # else int8 + scale
    assert fp32 == [False] * (len(convolutions) - 1) + [True]  # the convolution that writes the logits stays fp32
    worst = min(record["agreement"]["dice_vs_fp32_min"].values())
    assert segmenter.precision == ("int8" if worst >= 0.99 else "fp32")
    record["agreement"]["dice_vs_fp32_min"] = {"liver": 0.995, "spleen": 0.993}  # as a well-trained model measures
    write_record(twin, record)
    int8 = NnunetSegmenter(folder, backend="openvino", precision="auto")
    assert int8.precision == "int8"
    labels, _ = int8.predict(int8.load(case_of(IMAGES[0])))
    expected = golden("plain", False, case_of(IMAGES[0]).case_id)
    for value in (1, 2):
        both = ((labels == value) & (expected == value)).sum()
        assert 2 * both / ((labels == value).sum() + (expected == value).sum()) > 0.8
    assert NnunetSegmenter(folder, backend="torch", precision="auto").precision == "fp32"


def test_calibration_tops_up_a_case_of_few_tiles_with_other_views():
    """A scan that is one or two tiles of the model still gives the requested number of calibration windows,
    each a patch of the model's preprocessed input, not copies of one tile."""
    from volseg.nnunet.int8 import calibration_windows

    segmenter = NnunetSegmenter(model(), backend="torch")
    patch = tuple(segmenter.model.configuration["patch_size"])
    windows = calibration_windows(segmenter, [case_of(IMAGES[0])], count=20)  # the scan is 8 tiles
    assert len(windows) == 20 and all(w.shape == (1, segmenter.model.channels, *patch) for w in windows)
    distinct = {w.tobytes() for w in windows}
    assert len(distinct) >= 16


def test_filling_holes_after_cropping_gives_nnunets_mask():
    """nnU-Net fills the non-zero mask's holes, then crops to its box; volseg crops first and fills only when
    normalisation uses the mask. Same box, same mask, on shapes with holes, cavities open to the box and islands."""
    from scipy.ndimage import binary_fill_holes

    from volseg.nnunet.preprocess import filled_in_box, nonzero_bbox

    rng = np.random.default_rng(7)
    for _ in range(20):
        data = np.zeros((1, 24, 20, 22), np.float32)
        for _ in range(rng.integers(1, 4)):  # hollow boxes, some cut open
            lo = rng.integers(1, 10, 3)
            hi = lo + rng.integers(4, 10, 3)
            data[(0, *[slice(a, b) for a, b in zip(lo, hi)])] = 1
            data[(0, *[slice(a + 1, b - 1) for a, b in zip(lo, hi)])] = 0
            if rng.random() < 0.5:
                data[0, lo[0] + 1 : hi[0] - 1, lo[1] + 1 : hi[1] - 1, lo[2]] = 0  # open one face
        data[0] += (rng.random(data.shape[1:]) < 0.02).astype(np.float32)  # islands and specks
        nnunet_mask = binary_fill_holes(data[0] != 0)
        bbox, mask = nonzero_bbox(data)
        box = tuple(slice(a, b) for a, b in bbox)
        hit = [np.flatnonzero(nnunet_mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        assert bbox == [[int(h[0]), int(h[-1]) + 1] for h in hit]
        assert np.array_equal(filled_in_box(mask[box]), nnunet_mask[box])


def test_bf16_agreement_of_an_nnunet_folder_is_recorded_in_the_cache_and_auto_takes_it(tmp_path, monkeypatch):
    """`volseg export NNUNET_FOLDER --precision bf16 --check M`: the agreement goes to the model's cache folder
    (the nnU-Net folder is not written to); --precision auto takes bf16 where it agrees and the CPU has it."""
    from volseg.nnunet.int8 import twin_folder
    from volseg.runtime import backends
    from volseg.runtime.quantize import BF16_RECORD_NAME

    monkeypatch.setenv("VOLSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(backends, "native_bf16", lambda: True)
    folder = shutil.copytree(model(), tmp_path / "Dataset900_Tiny" / model().name)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,image,label,split\n{case_of(IMAGES[0]).case_id},{IMAGES[0]},,val\n")
    result = runner.invoke(app, ["export", str(folder), "--precision", "bf16", "--check", str(manifest)])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    fp32 = NnunetSegmenter(folder, backend="openvino", precision="fp32")
    record = json.loads((twin_folder(fp32.model) / BF16_RECORD_NAME).read_text())
    assert record["folds"] == fp32.model.folds and record["agreement"]["cases"] == 1
    record["agreement"]["dice_vs_fp32_min"] = {"liver": 0.999, "spleen": 0.998}
    (twin_folder(fp32.model) / BF16_RECORD_NAME).write_text(json.dumps(record))
    assert NnunetSegmenter(folder, backend="openvino", precision="auto").precision == "bf16"
    assert NnunetSegmenter(folder, backend="torch", precision="auto").precision == "fp32"
