"""Hospital archives in: series found from headers in any layout, picked by rules, faults named; DICOM SEG
and statistics out.

The archive mixes, per layout: CT study 1 (a 12-slice axial CT, a localizer sharing its SeriesInstanceUID,
a second 10-slice reconstruction), CT study 2 (another patient's CT) and an MR study with two series.
With the CT model's default rules exactly the two CTs are segmented; every other series has a row saying
why not. Where ../shared is present its DICOM series join the archive.
"""

import csv
import hashlib
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from volseg.cli import app
from volseg.data import io
from volseg.dicom.archive import discover_series
from volseg.dicom.seg import SegError, build_seg, write_seg
from volseg.dicom.series_rules import default_rules, load_rules, select
from volseg.inference.qc import PALETTE

from .bad_inputs import dicom_series
from .conftest import missing_tool
from .helpers import REPO

runner = CliRunner()
UID = "1.2.826.0.1.3680043.2.1125."
SAGITTAL = (0, 0, -1, 1, 0, 0, 0, -1, 0)  # LPS: along a row +y (posterior), down a column -z, slices along -x
NEGATED_COLUMNS = (1, 0, 0, 0, -1, 0, 0, 0, -1)
SHARED = REPO.parent / "shared" / "data"


def _study(n: int, patient: str) -> dict:
    return {"0020|000d": f"{UID}1.{n}", "0010|0020": patient, "0020|0052": f"{UID}3.{n}"}


def _write_series(root: Path) -> dict[str, Path]:
    """Every series of the archive, each in its own staging folder (the layouts rearrange the files)."""
    made = {
        "ct_a": dicom_series(root / "ct_a", series_uid=f"{UID}2.10", slices=12, tags=_study(1, "A"), prefix="a"),
        "localizer_a": dicom_series(
            root / "localizer_a",
            series_uid=f"{UID}2.10",
            slices=1,
            size=(40, 24),
            direction=(1, 0, 0, 0, 0, 1, 0, -1, 0),
            prefix="loc",
            tags={**_study(1, "A"), "0008|0008": "ORIGINAL\\PRIMARY\\LOCALIZER"},
        ),
        "recon_a": dicom_series(
            root / "recon_a",
            series_uid=f"{UID}2.11",
            slices=10,
            spacing=(0.9, 0.9, 2.4),
            tags=_study(1, "A"),
            prefix="r",
        ),
        "ct_b": dicom_series(
            root / "ct_b", series_uid=f"{UID}2.20", slices=12, tags=_study(2, "B"), prefix="b", seed=3
        ),
        "mr_t1": dicom_series(
            root / "mr_t1", series_uid=f"{UID}2.30", slices=12, prefix="t1", tags={**_study(3, "C"), "0008|0060": "MR"}
        ),
        "mr_t2": dicom_series(
            root / "mr_t2", series_uid=f"{UID}2.31", slices=12, prefix="t2", tags={**_study(3, "C"), "0008|0060": "MR"}
        ),
    }
    return made


def _layout(kind: str, staged: dict[str, Path], archive: Path) -> Path:
    """nested patient/study/series folders, one flat folder without extensions, or one folder per patient."""
    patient = {
        "ct_a": "patA",
        "localizer_a": "patA",
        "recon_a": "patA",
        "ct_b": "patB",
        "mr_t1": "patC",
        "mr_t2": "patC",
    }
    nested = {
        "ct_a": "patA/study1/ct",
        "localizer_a": "patA/study1/ct",
        "recon_a": "patA/study1/recon",
        "ct_b": "patB/study1/Study1",
        "mr_t1": "patC/study1/Study3/t1",
        "mr_t2": "patC/study1/Study3/t2",
    }
    for name, folder in staged.items():
        target = archive / {"nested": nested[name], "flat": ".", "per_patient": patient[name]}[kind]
        target.mkdir(parents=True, exist_ok=True)
        for i, file in enumerate(sorted(folder.iterdir())):
            stem = f"{name}_{i:03d}" if kind == "flat" else file.stem
            flat_name = "IM" + hashlib.md5(stem.encode()).hexdigest()[:10]  # no extension, order unrelated
            shutil.copy(file, target / (flat_name if kind == "flat" else file.name))
    return archive


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    return _write_series(tmp_path_factory.mktemp("staged"))


def _case_id(folder: Path) -> str:
    (series,) = discover_series([folder])[0]
    return series.case_id


def _rows(out: Path) -> dict[str, dict]:
    return {r["case_id"]: r for r in csv.DictReader((out / "volseg_run.csv").open(encoding="utf-8"))}


@pytest.mark.parametrize("kind", ["nested", "flat", "per_patient"])
def test_archive_segments_exactly_the_series_the_rules_select(staged, tmp_path, kind):
    archive = _layout(kind, staged, tmp_path / "ARCHIVE")
    expected = {
        "ct_a": "ok",
        "ct_b": "ok",
        "recon_a": "another series of the study was preferred",
        "localizer_a": "ImageType ORIGINAL\\PRIMARY\\LOCALIZER has LOCALIZER",
        "mr_t1": "Modality 'MR' does not match 'CT'",
        "mr_t2": "Modality 'MR' does not match 'CT'",
    }
    if SHARED.is_dir():  # real series: a CT with an empty SeriesInstanceUID, a DERIVED MR, an oblique MR
        for source in (
            "totalsegmentator_example/example_ct_dicom",
            "dicom_mr_udacity_testvolumes/Study1",
            "dicom_mr_udacity_testvolumes/Study3",
        ):
            shutil.copytree(SHARED / source, archive / "real" / source)
    out = tmp_path / "out"
    result = runner.invoke(app, ["infer", str(archive), "--model", "abdomen-ct", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    ids = {name: _case_id(folder) for name, folder in staged.items()}
    for name, outcome in expected.items():
        row = rows[ids[name]]
        if outcome == "ok":
            assert row["status"] == "ok" and (out / f"{ids[name]}_seg.nii.gz").is_file(), row
        else:
            assert row["status"] == "rejected" and outcome in row["error"], (name, row)
            assert not list(out.glob(f"{ids[name]}*"))
    if SHARED.is_dir():
        assert len(rows) == len(expected) + 3
        real = [r for r in rows.values() if "/real/" in r["input"]]
        assert sum(r["status"] == "ok" for r in real) == 1  # the TotalSegmentator CT; both MR rejected
        assert all("Modality 'MR'" in r["error"] for r in real if r["status"] != "ok")
    else:
        assert len(rows) == len(expected)
    assert all(r["case_id"].startswith("dcm-") for r in rows.values())
    assert "2 of 2 cases done, 4 series not selected" in " ".join(result.output.split()) or SHARED.is_dir()


def test_series_rules_file_picks_other_series(staged, tmp_path):
    archive = _layout("nested", staged, tmp_path / "ARCHIVE")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - Modality: MR\n    SliceThickness: '< 3'\n    slices: '>= 12'\n"
        "  - Modality: CT\n    SliceThickness: [2.2, 2.6]\none_per_study: false\n",
        encoding="utf-8",
    )
    found, _ = discover_series([archive])
    chosen = select(found, load_rules(rules))
    ids = {name: _case_id(folder) for name, folder in staged.items()}
    assert {s.case_id for s in chosen.selected} == {ids["mr_t1"], ids["mr_t2"], ids["recon_a"]}
    reasons = {s.case_id: why for s, why in chosen.rejected}
    assert "SliceThickness 2 not in [2.2, 2.6]" in reasons[ids["ct_a"]]
    assert reasons[ids["ct_b"]] == "Modality 'CT' does not match 'MR'; SliceThickness 2 not in [2.2, 2.6]"

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - SliceThickness: '<< 3'\n", encoding="utf-8")
    result = runner.invoke(app, ["infer", str(archive), "--series-rules", str(bad), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.startswith(f"error: {bad}: rule 1, SliceThickness")


def test_default_rules_for_mr_take_any_plane():
    assert "plane" not in default_rules("MR").alternatives[0]
    assert default_rules("CT").alternatives[0]["plane"] == "axial"


# ------------------------------------------------------------------------------------------------ SEG


def _seg_as_index_array(seg_path: Path, files) -> np.ndarray:
    """The SEG's segment numbers per source instance, as an (X=column, Y=row, Z=slice) array."""
    seg = hd.seg.segread(seg_path)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True, skip_overlap_checks=True
    )
    return np.asarray(pixels).transpose(2, 1, 0)


def _dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        missing_tool("dciodvfy", "not installed (Debian package dicom3tools; setup.sh installs it as root)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, encoding="utf-8", errors="replace")
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("geometry", ["axial_ct", "negated_columns", "sagittal_mr"])
def test_seg_equals_the_label_map_voxel_for_voxel(tmp_path, geometry):
    direction = {"axial_ct": (1, 0, 0, 0, 1, 0, 0, 0, 1), "negated_columns": NEGATED_COLUMNS, "sagittal_mr": SAGITTAL}[
        geometry
    ]
    tags = {**_study(7, "P"), **({"0008|0060": "MR"} if geometry == "sagittal_mr" else {})}
    folder = dicom_series(
        tmp_path / geometry, series_uid=f"{UID}2.70", slices=9, size=(28, 20), direction=direction, tags=tags
    )
    (series,) = discover_series([folder])[0]
    image = io.read_image(series)
    labels = np.zeros(image.shape[1:], np.uint8)  # asymmetric along every axis: any flip shows
    labels[2:9, 3:7, 1:4] = 1
    labels[15:24, 10:18, 5:8] = 2
    names = {1: "liver", 2: "spleen", 3: "kidney_left"}  # label 3 stays empty
    nifti = io.write_label(labels, image, tmp_path / "labels.nii.gz")
    seg_path = tmp_path / "seg.dcm"
    write_seg(labels, series.files, names, "test-model", seg_path)
    from_nifti = np.asarray(nib.load(nifti).dataobj)
    assert np.array_equal(_seg_as_index_array(seg_path, series.files), from_nifti)
    seg = hd.seg.segread(seg_path)
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["liver", "spleen", "kidney_left"]
    assert (
        str(
            seg.SegmentSequence[2]
            .SegmentedPropertyTypeCodeSequence[0]
            .SegmentedPropertyTypeModifierCodeSequence[0]
            .CodeMeaning
        )
        == "Left"
    )
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    colours = [hd.color.CIELabColor.from_dicom_value(s.RecommendedDisplayCIELabValue) for s in seg.SegmentSequence]
    assert [c.to_rgb() for c in colours[:2]] == [hd.color.CIELabColor.from_string(PALETTE[v]).to_rgb() for v in (1, 2)]
    assert seg.SeriesInstanceUID != series.series_uid and seg.FrameOfReferenceUID == f"{UID}3.7"
    # world geometry: each frame lies where the NIfTI says its slice lies (LPS = RAS with x, y negated)
    affine = nib.load(nifti).affine
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in series.files].index(source)
        ras = affine @ np.array([0, 0, k, 1.0])
        lps = [-ras[0], -ras[1], ras[2]]
        assert np.allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], lps, atol=1e-3)
    assert _dciodvfy_errors(seg_path) == []


def test_seg_with_every_label_empty_is_still_a_valid_seg(tmp_path):
    folder = dicom_series(tmp_path / "ct", series_uid=f"{UID}2.71", slices=4, tags=_study(8, "P"))
    (series,) = discover_series([folder])[0]
    path = tmp_path / "empty.dcm"
    write_seg(np.zeros((32, 32, 4), np.uint8), series.files, {1: "liver", 2: "spleen"}, "m", path)
    seg = hd.seg.segread(path)
    assert seg.number_of_segments == 2 and not np.asarray(seg.pixel_array).any()
    assert _dciodvfy_errors(path) == []


def test_seg_from_an_nnunet_folder_name_is_valid(tmp_path):
    """nnU-Net model names (DATASET/TRAINER__PLANS__CONFIGURATION) pass the 64 characters of a DICOM LO."""
    folder = dicom_series(tmp_path / "ct", series_uid=f"{UID}2.73", slices=3, tags=_study(10, "P"))
    (series,) = discover_series([folder])[0]
    name = "Dataset931_AbdomenCT3mm/nnUNetTrainerVolsegShort__nnUNetPlans__3d_fullres"
    path = tmp_path / "seg.dcm"
    labels = np.zeros((32, 32, 3), np.uint8)
    labels[4:9, 5:12, 1] = 1
    write_seg(labels, series.files, {1: "liver"}, name, path)
    seg = hd.seg.segread(path)
    assert str(seg.SegmentSequence[0].SegmentAlgorithmName) == f"volseg {name}"[:64]
    assert _dciodvfy_errors(path) == []


def test_unknown_label_names_need_codes_from_the_config(tmp_path):
    folder = dicom_series(tmp_path / "ct", series_uid=f"{UID}2.72", slices=3, tags=_study(9, "P"))
    (series,) = discover_series([folder])[0]
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    labels = np.ones((32, 32, 3), np.uint8)
    with pytest.raises(SegError, match="label 'duct' has no SNOMED CT code"):
        build_seg(labels, datasets, {1: "duct"}, "m")
    seg = build_seg(labels, datasets, {1: "duct"}, "m", {"duct": {"type": "SCT:69930009:Pancreatic duct"}})
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "69930009"


def test_infer_writes_seg_and_statistics_for_an_archive(staged, tmp_path):
    archive = _layout("nested", staged, tmp_path / "ARCHIVE")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["infer", str(archive), "--model", "abdomen-ct", "-o", str(out), "--output-format", "nifti,dicom-seg"]
    )
    assert result.exit_code == 0, result.output
    for name in ("ct_a", "ct_b"):
        case_id = _case_id(staged[name])
        (series,) = discover_series([staged[name]])[0]
        nifti = np.asarray(nib.load(out / f"{case_id}_seg.nii.gz").dataobj)
        seg = _seg_as_index_array(out / f"{case_id}_seg.dcm", series.files)
        assert np.array_equal(seg, np.searchsorted([0, 1, 2, 3, 4], nifti))  # segment n = n-th label value
        row = _rows(out)[case_id]
        assert row["output"] == f"{out / case_id}_seg.dcm;{out / case_id}_seg.nii.gz"
    stats = list(csv.DictReader((out / "statistics.csv").open(encoding="utf-8")))
    assert len(stats) == 2 * 4  # two cases, four labels each (empty ones included)
    case_id = _case_id(staged["ct_a"])
    image = io.read_image(discover_series([staged["ct_a"]])[0][0])[0].numpy()
    labels = np.asarray(nib.load(out / f"{case_id}_seg.nii.gz").dataobj)
    voxel_ml = 0.9 * 0.9 * 2.0 / 1000
    for row in (r for r in stats if r["case_id"] == case_id):
        mask = labels == int(row["label"])
        assert int(row["voxels"]) == mask.sum()
        assert float(row["volume_ml"]) == pytest.approx(mask.sum() * voxel_ml, abs=1e-3)
        if mask.any():
            assert float(row["mean_intensity"]) == pytest.approx(image[mask].mean(), abs=0.01)
            assert float(row["median_intensity"]) == pytest.approx(np.median(image[mask]), abs=0.01)


# ------------------------------------------------------------------------------------------ bad series


def _truncate(folder: Path) -> None:
    victim = sorted(folder.iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:1200])


def _unsupported_syntax(folder: Path) -> None:
    for file in folder.iterdir():
        ds = pydicom.dcmread(file)
        ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])  # framed as HTJ2K, which GDCM cannot decode
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
        ds.save_as(file, enforce_file_format=True)


def test_bad_series_each_fail_alone_with_one_line(tmp_path):
    archive = tmp_path / "ARCHIVE"
    good = dicom_series(archive / "good", series_uid=f"{UID}2.80", slices=12, tags=_study(10, "G"))
    bad = {
        "missing slice(s) or uneven slice spacing": dicom_series(
            archive / "gap", series_uid=f"{UID}2.81", slices=12, skip=(6,), tags=_study(11, "H")
        ),
        "gantry tilt: slices are stacked 15.0 degrees off their normal": dicom_series(
            archive / "tilt",
            series_uid=f"{UID}2.82",
            slices=12,
            tilt_deg=15,
            tags={**_study(12, "I"), "0018|1120": "15"},
        ),
        "cannot read DICOM series": dicom_series(
            archive / "truncated", series_uid=f"{UID}2.83", slices=12, tags=_study(13, "J")
        ),
        "unsupported transfer syntax 1.2.840.10008.1.2.4.201": dicom_series(
            archive / "htj2k", series_uid=f"{UID}2.84", slices=12, tags=_study(14, "K")
        ),
    }  # a series with an empty SeriesInstanceUID is not bad: NIfTI works, it ends partial (test_partial_outputs.py)
    _truncate(bad["cannot read DICOM series"])
    _unsupported_syntax(bad["unsupported transfer syntax 1.2.840.10008.1.2.4.201"])
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["infer", str(archive), "--model", "abdomen-ct", "-o", str(out), "--output-format", "nifti,dicom-seg"]
    )
    assert result.exit_code == 1, result.output
    rows = _rows(out)
    assert rows[_case_id(good)]["status"] == "ok"
    for reason, folder in bad.items():
        case_id = _case_id(folder)
        row = rows[case_id]
        assert row["status"] == "failed" and reason in row["error"] and "\n" not in row["error"], (reason, row)
        assert not list(out.glob(f"{case_id}*")) and not list(out.glob(f".{case_id}*"))


def _compress_with_gdcm(file: Path, target: Path) -> None:
    """JPEG Lossless (process 14): pydicom has no encoder for it, GDCM (through SimpleITK) has."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(file))
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.KeepOriginalImageUIDOn()
    writer.UseCompressionOn()
    writer.SetCompressor("JPEG")
    writer.SetFileName(str(target))
    writer.Execute(image)


@pytest.mark.parametrize(
    "syntax",
    [pydicom.uid.RLELossless, pydicom.uid.JPEGLSLossless, pydicom.uid.JPEG2000Lossless, pydicom.uid.JPEGLosslessSV1],
)
def test_compressed_series_read_like_uncompressed(tmp_path, syntax):
    plain = dicom_series(tmp_path / "plain", series_uid=f"{UID}2.90", slices=6, tags=_study(16, "M"))
    packed = tmp_path / "packed"
    packed.mkdir()
    for file in plain.iterdir():
        if syntax == pydicom.uid.JPEGLosslessSV1:
            _compress_with_gdcm(file, packed / file.name)
            continue
        ds = pydicom.dcmread(file)
        ds.compress(syntax)
        ds.save_as(packed / file.name)
    ours = io.read_image(discover_series([packed])[0][0])
    reference = io.read_image(discover_series([plain])[0][0])
    assert str(pydicom.dcmread(next(packed.iterdir())).file_meta.TransferSyntaxUID) == syntax
    assert np.array_equal(ours.numpy(), reference.numpy()) and np.allclose(ours.affine, reference.affine)


def test_enhanced_multiframe_ct_reads_like_its_single_frames(tmp_path):
    plain = dicom_series(tmp_path / "plain", series_uid=f"{UID}2.91", slices=8, tags=_study(17, "N"))
    (series,) = discover_series([plain])[0]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(f) for f in series.files],
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    (tmp_path / "mf").mkdir()
    enhanced.save_as(tmp_path / "mf" / "ct.dcm")
    (multi,) = discover_series([tmp_path / "mf"])[0]
    assert multi.slices == 8 and multi.plane == "axial"
    ours, reference = io.read_image(multi), io.read_image(series)
    # same voxels at the same world positions (the frames may run in the other direction)
    world = lambda img: (img.affine.numpy() @ np.array([[0, 0, 0, 1], [0, 0, 7, 1]]).T).T[:, :3]  # noqa: E731
    flipped = not np.allclose(world(ours), world(reference), atol=1e-3)
    assert np.allclose(world(ours)[::-1] if flipped else world(ours), world(reference), atol=1e-3)
    assert np.array_equal(ours.numpy()[..., ::-1] if flipped else ours.numpy(), reference.numpy())


def test_check_lists_every_series_of_an_archive(staged, tmp_path):
    archive = _layout("per_patient", staged, tmp_path / "ARCHIVE")
    dicom_series(archive / "patD", series_uid=f"{UID}2.99", slices=12, skip=(5,), tags=_study(20, "D"))
    result = runner.invoke(app, ["check", str(archive), "--modality", "CT"])
    assert result.exit_code == 1, result.output  # the gapped series is a fault
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    ids = {name: _case_id(folder) for name, folder in staged.items()}
    assert len(lines) == len(staged) + 1
    assert lines[ids["ct_a"]].split(": ", 1)[1].startswith("ok")
    assert "not selected: another series of the study was preferred" in lines[ids["recon_a"]]
    assert sum("FAULT missing slice(s)" in line for line in lines.values()) == 1
    assert "7 series, 1 with faults, 4 not selected (default rules for CT)" in result.stderr
