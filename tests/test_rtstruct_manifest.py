"""``volseg manifest ARCHIVE --structures ...``: a training manifest from CT series and their RTSTRUCTs.

Synthetic archives: tiny CT series (tests/bad_inputs.py ``dicom_series``: a bright ellipsoid on a noisy background)
with an RTSTRUCT of the ellipsoid written by volseg.dicom.rtstruct_write, its name spelled differently per case. Then
every per-case problem (one line naming the file and the structure, the case left out, the rest written), and
manifest -> plan -> train -> infer -> evaluate end to end. Real: the TCIA planning CT's lungs (skipped when
../shared is absent).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from volseg.cli import app
from volseg.data.check import check_manifest
from volseg.data.io import read_image, read_label
from volseg.data.manifest import declared_labels, read_manifest
from volseg.dicom.archive import discover_series
from volseg.dicom.rtstruct_manifest import DEFAULT_STRUCTURES, parse_structures
from volseg.dicom.rtstruct_read import read_structures
from volseg.dicom.rtstruct_write import write_rtstruct

from .bad_inputs import dicom_series, mask
from .conftest import shared_path

SIZE, SLICES, SPACING = (24, 24), 12, (1.5, 1.5, 2.5)
STRUCTURES = "liver=Liver|LIVER|Liver_.*;spleen=Spleen|SPLEEN"
runner = CliRunner()


def blob() -> np.ndarray:
    """The label of dicom_series' ellipsoid as (X=column, Y=row, Z=slice)."""
    return (mask((SLICES, SIZE[1], SIZE[0])) > 0).astype(np.uint8).transpose(2, 1, 0)


def ct_case(
    archive: Path, n: int, names: dict[int, str], labels: np.ndarray | None = None, rt_folder: str | None = None
) -> tuple[Path, Path]:
    """Patient ``n``: a CT series in ARCHIVE/pN/ct and its RTSTRUCT (``names``: value -> ROI name) in
    ARCHIVE/pN/``rt_folder`` (default: beside the CT slices)."""
    ct = archive / f"p{n}" / "ct"
    tags = {"0020|000d": f"1.2.826.0.1.3680043.2.1125.1.{n}", "0020|0052": f"1.2.826.0.1.3680043.2.1125.3.{n}"}
    dicom_series(
        ct, series_uid=f"1.2.826.0.1.3680043.2.1125.2.{n}", slices=SLICES, spacing=SPACING, size=SIZE, tags=tags, seed=n
    )
    files = list(discover_series([ct])[0][0].files)
    if labels is None:
        labels = blob()
    rt = (archive / f"p{n}" / rt_folder if rt_folder else ct) / "rtstruct.dcm"
    rt.parent.mkdir(parents=True, exist_ok=True)
    write_rtstruct(labels, files, names, "test", rt)
    return ct, rt


def test_structures_text_and_tg263_defaults():
    patterns = parse_structures(STRUCTURES)
    assert list(patterns) == ["liver", "spleen"]
    assert all(patterns["liver"].fullmatch(n) for n in ("Liver", "LIVER", "liver", "Liver_NS", "liver_1"))
    assert not patterns["liver"].fullmatch("Liver-PTV") and not patterns["spleen"].fullmatch("Spleen_PRV")
    defaults = parse_structures(None)
    assert list(defaults) == list(DEFAULT_STRUCTURES)
    for name in (
        "Liver",
        "Spleen",
        "Kidney_L",
        "Kidney_R",
        "Lung_L",
        "Lung_R",
        "Heart",
        "Stomach",
        "Bowel_Small",
        "Pancreas",
        "Bladder",
        "SpinalCord",
        "Esophagus",
        "Brain",
    ):
        assert defaults[name].fullmatch(name), name
    for roi, label in (
        ("LUNG_L", "Lung_L"),
        ("Lung_Left", "Lung_L"),
        ("L_Lung", "Lung_L"),
        ("Lt Lung", "Lung_L"),
        ("Left Lung", "Lung_L"),
        ("LUNG_R", "Lung_R"),
        ("R_Lung", "Lung_R"),
        ("Kidney_Rt", "Kidney_R"),
        ("lkidney", "Kidney_L"),
        ("Spinal_Cord", "SpinalCord"),
        ("SmallBowel", "Bowel_Small"),
        ("Oesophagus", "Esophagus"),
    ):
        assert [n for n, p in defaults.items() if p.fullmatch(roi)] == [label], roi
    for roi in ("Lungs", "Lung_L_PRV", "GTV", "Liver-GTV", "BODY"):
        assert not any(p.fullmatch(roi) for p in defaults.values()), roi
    for bad in ("liver", "liver=", "=Liver", "liver=(", "liver=a;liver=b", "my liver=x"):
        with pytest.raises(ValueError):
            parse_structures(bad)


def test_every_problem_one_line_and_the_rest_go_on(tmp_path):
    archive = tmp_path / "archive"
    ct_case(archive, 1, {1: "LIVER"})  # good
    ct_case(archive, 2, {1: "Heart"})  # none of the asked structures
    labels = blob()
    labels[:, :, :6] *= 2
    ct_case(archive, 3, {1: "Liver", 2: "Liver_2"}, labels)  # two structures match one label
    ct_case(archive, 4, {1: "Liver", 3: "Spleen"})  # Spleen: no contour at all
    _, rt5 = ct_case(archive, 5, {1: "liver"})  # a contour moved 100 mm above the series
    ds = pydicom.dcmread(rt5)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    contour.ContourData = [str(float(v) + (100 if i % 3 == 2 else 0)) for i, v in enumerate(contour.ContourData)]
    ds.save_as(rt5)
    ct6, _ = ct_case(archive, 6, {1: "Liver"}, rt_folder="rt")  # its CT is not in the archive
    shutil.rmtree(ct6)
    _, rt7 = ct_case(archive, 7, {1: "Liver"})  # drawn in another frame of reference
    ds = pydicom.dcmread(rt7)
    ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = "1.2.826.0.1.3680043.2.1125.3.99"
    ds.save_as(rt7)
    _, rt8 = ct_case(archive, 8, {1: "liver"})  # a contour of two points
    ds = pydicom.dcmread(rt8)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    contour.ContourData = list(contour.ContourData)[:6]
    contour.NumberOfContourPoints = 2
    ds.save_as(rt8)
    dicom_series(archive / "p9", series_uid="1.2.826.0.1.3680043.2.1125.2.9", slices=SLICES, size=SIZE)  # no RT

    out = tmp_path / "M.csv"
    result = runner.invoke(
        app,
        [
            "manifest",
            str(archive),
            "-o",
            str(out),
            "--structures",
            STRUCTURES,
            "--val-fraction",
            "0",
            "--test-fraction",
            "0",
        ],
    )
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    expected = {
        2: "none of the asked structures (liver, spleen) is here; it has 'Heart'",
        3: "2 structures match label 'liver'",
        4: "structure 'Spleen': empty structure: it has no contour",
        5: "lies off every slice of the series",
        6: "its referenced series (1.2.826.0.1.3680043.2.1125.2.6) is not among",
        7: "structure 'Liver': frame of reference mismatch",
        8: "has 2 point(s); a closed contour needs at least 3",
    }
    for n, text in expected.items():
        hits = [line for line in lines if text in line]
        assert len(hits) == 1, (n, text, result.output)
        assert hits[0].startswith(str(archive / f"p{n}")), hits[0]
    assert "'Liver' (ROI 1), 'Liver_2' (ROI 2)" in next(line for line in lines if expected[3] in line)
    assert "structure 'liver'" in next(line for line in lines if expected[5] in line)
    assert "structure 'liver'" in next(line for line in lines if expected[8] in line)
    cases = read_manifest(out)
    assert len(cases) == 1 and cases[0].image == (archive / "p1" / "ct").resolve()
    assert "1 series without RTSTRUCT" in result.output and "6 case(s) and 1 RTSTRUCT(s) left out" in result.output
    assert declared_labels(out) == {1: "liver", 2: "spleen"}
    label = read_label(cases[0].label)
    assert np.array_equal(label[0].numpy(), blob())
    record = json.loads((tmp_path / "M.structures.json").read_text())
    assert record["cases"][cases[0].case_id]["matched"] == {"liver": "LIVER"}
    assert record["cases"][cases[0].case_id]["missing"] == ["spleen"]

    problems = [str(p) for p in check_manifest(out)]
    assert len(problems) == 7, problems
    for text in expected.values():
        assert sum(text in p for p in problems) == 1, (text, problems)
    result = runner.invoke(app, ["check", str(out)])
    assert result.exit_code == 1 and "left out of the manifest" in result.output


def test_series_sharing_a_folder_become_nifti(tmp_path):
    """Two CT series in one folder: a folder cannot be the manifest's image, so each becomes a NIfTI (same grid)."""
    archive = tmp_path / "archive"
    for n in (1, 2):
        ct, rt = ct_case(archive, n, {1: "Lung_Left"})
        for f in (*ct.iterdir(),):
            f.rename(archive / f"{n}_{f.name}")
    out = tmp_path / "sub" / "M.csv"
    result = runner.invoke(app, ["manifest", str(archive), "-o", str(out)])  # TG-263 defaults
    assert result.exit_code == 0, result.output
    cases = read_manifest(out)
    assert len(cases) == 2 and all(c.image.parent == tmp_path / "sub" / "M_images" for c in cases)
    assert declared_labels(out)[5] == "Lung_L" and len(declared_labels(out)) == len(DEFAULT_STRUCTURES)
    for case in cases:
        image, label = read_image(case.image), read_label(case.label)
        assert np.allclose(image.affine, label.affine) and image.shape == label.shape
        assert set(np.unique(label.numpy())) == {0, 5}
        assert nib.load(case.image).get_data_dtype() == np.int16
    assert "not drawn: Liver, Spleen, Kidney_L" in result.output


def test_two_structure_sets_of_one_series_are_pooled(tmp_path):
    archive = tmp_path / "archive"
    ct, _ = ct_case(archive, 1, {1: "Liver_NS"})
    files = list(discover_series([ct])[0][0].files)
    spleen = np.zeros_like(blob())
    spleen[1:4, 1:4, 2:5] = 1
    write_rtstruct(spleen, files, {1: "SPLEEN"}, "test", archive / "p1" / "second.dcm")
    out = tmp_path / "M.csv"
    result = runner.invoke(app, ["manifest", str(archive), "-o", str(out), "--structures", STRUCTURES])
    assert result.exit_code == 0, result.output
    (case,) = read_manifest(out)
    label = read_label(case.label)[0].numpy()
    assert np.array_equal(label, blob() + 2 * spleen)
    assert f"{case.case_id}: liver=Liver_NS, spleen=SPLEEN" in result.output


def test_no_structure_set_or_no_series_is_one_line(tmp_path):
    dicom_series(tmp_path / "archive" / "ct", slices=SLICES, size=SIZE)
    for src, text in (
        (tmp_path / "archive", "1 DICOM image series and no RTSTRUCT found"),
        (tmp_path / "empty", "no DICOM image series found (and no dataset.json"),
    ):
        src.mkdir(exist_ok=True)
        result = runner.invoke(app, ["manifest", str(src), "-o", str(tmp_path / "M.csv")])
        assert result.exit_code == 2 and text in result.output and len(result.output.strip().splitlines()) == 1, (
            result.output
        )
    assert not (tmp_path / "M.csv").exists()


def test_manifest_train_evaluate_end_to_end(tmp_path):
    """manifest -> plan -> train (a time budget, as `--minutes 2` in the docs, here 1.2 s) -> infer -> evaluate on
    4 cases whose RTSTRUCTs spell the liver LIVER, Liver_1, liver and Liver."""
    archive = tmp_path / "archive"
    for n, name in enumerate(("LIVER", "Liver_1", "liver", "Liver"), start=1):
        ct_case(archive, n, {1: name, 2: "BODY"} if n == 2 else {1: name})  # BODY: not asked for
    out = tmp_path / "M.csv"
    result = runner.invoke(
        app,
        [
            "manifest",
            str(archive),
            "-o",
            str(out),
            "--structures",
            "liver=Liver|LIVER|Liver_.*",
            "--val-fraction",
            "0.25",
            "--test-fraction",
            "0.25",
        ],
    )
    assert result.exit_code == 0, result.output
    cases = read_manifest(out)
    assert sorted(c.split for c in cases) == ["test", "train", "train", "val"]
    config = tmp_path / "cfg.yaml"
    result = runner.invoke(app, ["plan", str(out), "-o", str(config)])
    assert result.exit_code == 0, result.output
    tiny = [
        "model.features=[4, 8, 16]",
        "sampling.patch_size_3d=[16, 16, 8]",
        "sampling.batch_size_3d=2",
        "train.iterations_per_epoch=2",
        "train.threads=1",
        "data.cache=memory",
    ]
    run = tmp_path / "run"
    args = [
        "train",
        "-c",
        str(config),
        "--model",
        "unet",
        "--dims",
        "3",
        "-o",
        str(run),
        "--minutes",
        "0.02",
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, args + [a for s in tiny for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    pred = tmp_path / "pred"
    result = runner.invoke(
        app, ["infer", str(out), "--model", str(run), "-o", str(pred), "--split", "test", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(pred),
            "--manifest",
            str(out),
            "-c",
            str(config),
            "-o",
            str(tmp_path / "metrics.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert (
        len(rows) == 1
        and rows[0]["label"] == "liver"
        and rows[0]["case_id"] == next(c.case_id for c in cases if c.split == "test")
    )
    print("end to end:", rows)
    assert float(rows[0]["dice"]) > 0.3  # a few seconds of training find the bright blob (0.91 with 6 s)


def test_real_planning_ct_lungs(tmp_path):
    """The TCIA planning CT + its RTSTRUCT copied into an archive: one case, both lungs, voxel counts as the
    RTSTRUCT reader gives them."""
    source = shared_path("data", "tcia_pancreatic_ct_cbct_seg_cb001")
    archive = tmp_path / "archive"
    for part in ("planning_ct", "rtstruct_planning_ct"):
        shutil.copytree(source / part, archive / part)
    out = tmp_path / "M.csv"
    result = runner.invoke(
        app,
        [
            "manifest",
            str(archive),
            "-o",
            str(out),
            "--structures",
            "lung_left=LUNG_L;lung_right=LUNG_R",
            "--val-fraction",
            "0",
            "--test-fraction",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    cases = read_manifest(out)
    assert len(cases) == 1 and cases[0].image == (archive / "planning_ct").resolve()
    label = read_label(cases[0].label)[0].numpy()
    reference = read_structures(
        archive / "rtstruct_planning_ct" / "1-1.dcm", [archive / "planning_ct"], ["LUNG_L", "LUNG_R"]
    )[0].numpy()
    counts = {v: (int((label == v).sum()), int((reference == v).sum())) for v in (1, 2)}
    print("voxels (manifest, reader):", counts)
    for mine, theirs in counts.values():
        assert mine > 300_000 and abs(mine - theirs) <= 0.001 * theirs
    assert declared_labels(out) == {1: "lung_left", 2: "lung_right"}
