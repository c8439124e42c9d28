"""volseg.data.io: geometry-true reading (NIfTI, NRRD/MHA, DICOM series), atomic label writing, one-line errors."""

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.transforms import LoadImage

from volseg.data import io
from volseg.data.io import (
    ImageReadError,
    grid_mismatch,
    read_case_image,
    read_image,
    read_label,
    same_grid,
    write_label,
)
from volseg.data.manifest import Case

from .conftest import shared_path

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SHAPE = (9, 7, 5)


def _oblique() -> np.ndarray:
    """~20 degree rotation about an off-axis direction, anisotropic spacing, non-zero origin."""
    angle = np.deg2rad(20)
    axis = np.array([1.0, 2.0, 3.0]) / np.sqrt(14)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 1.3, 2.5])
    affine[:3, 3] = [-41.5, 12.25, 33.0]
    return affine


AFFINES = {
    "ras": np.diag([1.0, 1.0, 1.0, 1.0]),
    "lps": np.array([[-0.8, 0, 0, 50.0], [0, -0.8, 0, 60.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]]),
    "oblique": _oblique(),
}


def _nifti(path, data, affine=AFFINES["ras"], sform_code=2, qform_code=1):
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=sform_code)
    image.set_qform(affine, code=qform_code)
    nib.save(image, path)
    return path


def _volume(dtype=np.float32, shape=SHAPE):
    return np.arange(np.prod(shape)).reshape(shape).astype(dtype)


def _raw_header(path):
    """The header exactly as stored on disk (nibabel's loaded header hides scl_slope/inter)."""
    with gzip.open(path) as f:
        return nib.Nifti1Header.from_fileobj(f)


# ---------------------------------------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("codes", [(2, 1), (1, 0)])
def test_nifti_label_round_trip_keeps_grid_and_header(tmp_path, name, codes):
    affine = AFFINES[name]
    source = _nifti(tmp_path / "scan.nii.gz", _volume(np.int16), affine, *codes)
    image = read_image(source)
    assert image.shape == (1, *SHAPE) and image.dtype == torch.float32
    label = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 4).astype(np.int64)

    out = write_label(label, image, tmp_path / "seg.nii.gz")

    reloaded = nib.load(out)
    assert reloaded.shape == SHAPE
    assert np.allclose(reloaded.affine, affine, atol=1e-5)
    assert (int(reloaded.header["sform_code"]), int(reloaded.header["qform_code"])) == codes
    assert reloaded.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(reloaded.dataobj), label)
    raw = _raw_header(out)
    assert (float(raw["scl_slope"]), float(raw["scl_inter"])) == (1.0, 0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz", "seg.nii.gz"]  # no temp file left


def test_labels_above_255_are_uint16(tmp_path):
    image = read_image(_nifti(tmp_path / "scan.nii.gz", _volume()))
    label = np.zeros(SHAPE, np.int32)
    label[0, 0, 0] = 300
    out = write_label(label, image.meta, tmp_path / "seg.nii")  # a plain meta dict works too
    assert nib.load(out).get_data_dtype() == np.uint16
    assert np.asarray(nib.load(out).dataobj)[0, 0, 0] == 300


def test_read_matches_monai_loadimage(tmp_path):
    path = _nifti(tmp_path / "scan.nii.gz", _volume(np.int16), AFFINES["oblique"])
    ours = read_image(path)
    theirs = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    assert torch.equal(ours.as_tensor(), theirs.as_tensor())
    assert torch.allclose(ours.affine, theirs.affine.to(torch.float64))
    assert ours.affine.dtype == torch.float64
    assert np.array_equal(ours.meta["original_affine"], nib.load(path).affine)
    assert list(ours.meta["spatial_shape"]) == list(SHAPE)
    assert ours.meta["filename_or_obj"] == str(path) and ours.meta["space"] == "RAS"


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.float64])
def test_any_dtype_becomes_float32_with_header_scaling(tmp_path, dtype):
    data = (_volume() % 3).astype(dtype)  # e.g. float32 labels stored as 0.0/1.0/2.0
    image = nib.Nifti1Image(data, np.eye(4))
    nib.save(image, tmp_path / "plain.nii.gz")
    assert torch.equal(read_image(tmp_path / "plain.nii.gz")[0], torch.from_numpy(data.astype(np.float32)))
    if np.issubdtype(dtype, np.integer):
        image.header.set_slope_inter(2.0, -5.0)
        nib.save(image, tmp_path / "scaled.nii.gz")
        expected = data.astype(np.float32) * 2 - 5
        assert torch.equal(read_image(tmp_path / "scaled.nii.gz")[0], torch.from_numpy(expected))


def test_trailing_singleton_dimension_is_squeezed(tmp_path):
    path = _nifti(tmp_path / "scan4d.nii.gz", _volume(shape=(*SHAPE, 1)))
    image = read_image(path)
    assert image.shape == (1, *SHAPE)
    out = write_label(np.ones(SHAPE, np.uint8), image, tmp_path / "seg.nii.gz")
    assert nib.load(out).shape == SHAPE


def _one_line_error(path, expected, **kwargs):
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert expected in message, message
    return message


def test_truncated_gzip(tmp_path):
    good = _nifti(tmp_path / "good.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    blob = good.read_bytes()
    (tmp_path / "scan.nii.gz").write_bytes(blob[: len(blob) // 2])
    _one_line_error(tmp_path / "scan.nii.gz", "truncated or corrupt gzip archive")


def test_not_an_image(tmp_path):
    (tmp_path / "x.nii.gz").write_text("case_id,image\nnot,a volume\n", encoding="utf-8")
    _one_line_error(tmp_path / "x.nii.gz", "not a NIfTI/NRRD/MHA image or DICOM series")
    (tmp_path / "x.nrrd").write_text("hello\n", encoding="utf-8")
    _one_line_error(tmp_path / "x.nrrd", "not a NIfTI/NRRD/MHA image or DICOM series")
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    _one_line_error(tmp_path / "x.png", "unsupported file type")


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.nii.gz").touch()
    _one_line_error(tmp_path / "empty.nii.gz", "file is empty")
    _one_line_error(tmp_path / "absent.nii.gz", "no such file or folder")


def test_4d_and_2d_are_refused(tmp_path):
    _nifti(tmp_path / "t.nii.gz", _volume(shape=(*SHAPE, 2)))
    _one_line_error(tmp_path / "t.nii.gz", "4D image (shape (9, 7, 5, 2)), expected 3D")
    nib.save(nib.Nifti1Image(_volume(shape=(9, 7)), np.eye(4)), tmp_path / "flat.nii.gz")
    _one_line_error(tmp_path / "flat.nii.gz", "2D image (shape (9, 7)), expected 3D")


def test_enormous_header_is_refused_before_reading(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((4000, 4000, 4000))
    header.set_data_dtype(np.float32)
    path = tmp_path / "huge.nii"
    with path.open("wb") as f:  # a header claiming 238 GiB, followed by a few bytes of data
        header.write_to(f)
        f.write(b"\0" * 64)
    message = _one_line_error(path, "header claims shape (4000, 4000, 4000)")
    assert "larger than the limit" in message
    _one_line_error(_nifti(tmp_path / "small.nii.gz", _volume()), "larger than the limit", max_voxels=100)


def test_read_label_refuses_non_integral_values(tmp_path):
    data = _volume() % 3
    assert torch.equal(read_label(_nifti(tmp_path / "ok.nii.gz", data))[0], torch.from_numpy(data))
    data[1, 2, 3] = 0.5
    with pytest.raises(ImageReadError, match="non-integral"):
        read_label(_nifti(tmp_path / "bad.nii.gz", data))


def test_case_channels_must_share_a_grid(tmp_path):
    a = _nifti(tmp_path / "t1.nii.gz", _volume(), AFFINES["lps"])
    b = _nifti(tmp_path / "flair.nii.gz", _volume() * 2, AFFINES["lps"])
    image = read_case_image(Case("c", (a, b), None, "train"))
    assert image.shape == (2, *SHAPE)
    assert image.meta["filename_or_obj"] == str(a) and torch.equal(image[1], 2 * image[0])
    shifted = AFFINES["lps"].copy()
    shifted[0, 3] += 2.0
    c = _nifti(tmp_path / "t2.nii.gz", _volume(), shifted)
    with pytest.raises(ImageReadError, match=r"t2\.nii\.gz: channel grid differs from t1\.nii\.gz: origin"):
        read_case_image(Case("c", (a, c), None, "train"))


def test_same_grid_tolerates_tiny_differences_only():
    affine = AFFINES["oblique"]
    nudged = affine.copy()
    tilt = 5e-4  # radians: direction cosines off by ~5e-4, as rounded DICOM/float32 headers do
    nudged[:3, :3] = np.array([[1, -tilt, 0], [tilt, 1, 0], [0, 0, 1]]) @ affine[:3, :3]
    nudged[:3, 3] += 5e-4
    assert same_grid(affine, SHAPE, nudged, SHAPE)
    assert not same_grid(affine, SHAPE, affine, (9, 7, 6))
    flipped = affine @ np.diag([1.0, -1.0, 1.0, 1.0])
    assert "direction" in grid_mismatch(affine, SHAPE, flipped, SHAPE)
    assert "spacing" in grid_mismatch(affine, SHAPE, affine @ np.diag([1.0, 1.0, 1.1, 1.0]), SHAPE)


# ------------------------------------------------------------------------------------------ writing


def test_write_label_refuses_wrong_shape_and_suffix(tmp_path):
    image = read_image(_nifti(tmp_path / "scan.nii.gz", _volume()))
    with pytest.raises(ValueError, match=r"label shape \(9, 7, 4\) differs"):
        write_label(np.zeros((9, 7, 4), np.uint8), image, tmp_path / "seg.nii.gz")
    with pytest.raises(ValueError, match=r"\.nii or \.nii\.gz"):
        write_label(np.zeros(SHAPE, np.uint8), image, tmp_path / "seg.mha")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    image = read_image(_nifti(tmp_path / "scan.nii.gz", _volume()))

    def broken_save(img, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(io, "_save_nifti", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_label(np.zeros(SHAPE, np.uint8), image, tmp_path / "seg.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


# ------------------------------------------------------------------------------------- NRRD / MHA


def _sitk_volume():
    image = sitk.GetImageFromArray(np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7))  # (z, y, x)
    rotation = _oblique()[:3, :3] / np.linalg.norm(_oblique()[:3, :3], axis=0)
    image.SetDirection(tuple(rotation.ravel()))
    image.SetSpacing((0.5, 1.5, 3.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    return image


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_files_get_a_ras_affine(tmp_path, suffix):
    source = _sitk_volume()
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(source, str(path))
    image = read_image(path)
    assert image.shape == (1, 7, 6, 5)
    assert torch.equal(image[0], torch.from_numpy(sitk.GetArrayFromImage(source).transpose(2, 1, 0).astype(np.float32)))
    lps = np.eye(4)
    lps[:3, :3] = np.array(source.GetDirection()).reshape(3, 3) * np.array(source.GetSpacing())
    lps[:3, 3] = source.GetOrigin()
    assert np.allclose(image.affine.numpy(), LPS_TO_RAS @ lps, atol=1e-6)
    # independent check: a voxel's RAS position is ITK's LPS position with x and y negated
    x, y, z = source.TransformIndexToPhysicalPoint((6, 2, 4))
    assert np.allclose(image.affine.numpy() @ [6, 2, 4, 1], [-x, -y, z, 1], atol=1e-6)


def test_label_for_itk_source_is_nifti_with_codes_1(tmp_path):
    sitk.WriteImage(_sitk_volume(), str(tmp_path / "scan.mha"))
    image = read_image(tmp_path / "scan.mha")
    out = write_label(np.ones((7, 6, 5), np.uint8), image, tmp_path / "seg.nii.gz")
    reloaded = nib.load(out)
    assert np.allclose(reloaded.affine, image.meta["original_affine"], atol=1e-5)
    assert (int(reloaded.header["sform_code"]), int(reloaded.header["qform_code"])) == (1, 1)


def test_vector_image_is_refused(tmp_path):
    sitk.WriteImage(sitk.Image([4, 5, 6], sitk.sitkVectorFloat32, 3), str(tmp_path / "rgb.mha"))
    _one_line_error(tmp_path / "rgb.mha", "3 components per voxel")


# ------------------------------------------------------------------------------------- DICOM series

TS_CT = ("data", "totalsegmentator_example", "example_ct_dicom")
MR_CROP = ("data", "dicom_mr_udacity_testvolumes", "Study1", "13_HCropVolume")
MR_OBLIQUE = ("data", "dicom_mr_udacity_testvolumes", "Study3", "11-T1post-18670")


def _sitk_series(folder, uid=None):
    uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))[0] if uid is None else uid
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute(), files


def _lps_geometry(ras_affine):
    lps = LPS_TO_RAS @ np.asarray(ras_affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return spacing, lps[:3, :3] / spacing, lps[:3, 3]


def _assert_same_as_sitk(ours, reference):
    expected = sitk.GetArrayFromImage(reference).transpose(2, 1, 0).astype(np.float32)
    assert torch.equal(ours[0], torch.from_numpy(expected))
    spacing, direction, origin = _lps_geometry(ours.affine)
    assert np.allclose(spacing, reference.GetSpacing(), atol=1e-6)
    assert np.allclose(direction, np.array(reference.GetDirection()).reshape(3, 3), atol=1e-6)
    assert np.allclose(origin, reference.GetOrigin(), atol=1e-6)


def test_dicom_ct_series_equals_simpleitk():
    folder = shared_path(*TS_CT)
    assert sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) == ("",)  # an empty UID is still one series
    ours = read_image(folder)
    assert ours.shape == (1, 512, 512, 20)
    _assert_same_as_sitk(ours, _sitk_series(folder)[0])


def _slice_positions(image):
    """Each z slice's position along the slice normal, in our (x, y, z) voxel order."""
    normal = _lps_geometry(image.affine)[1][:, 2]
    lps = LPS_TO_RAS @ image.affine.numpy()
    corners = np.stack([lps @ [0, 0, k, 1] for k in range(image.shape[-1])])[:, :3]
    return corners @ normal


def test_dicom_slices_ordered_by_position_not_file_name():
    folder = shared_path(*MR_CROP)
    assert sorted(p.name for p in folder.iterdir())[:3] == ["1.dcm", "10.dcm", "11.dcm"]  # lexical != positional
    ours = read_image(folder)
    reference, files = _sitk_series(folder)
    _assert_same_as_sitk(ours, reference)
    positions = []
    for file in files:  # each file's own ImagePositionPatient, in the order of our z axis
        header = sitk.ImageFileReader()
        header.SetFileName(file)
        header.ReadImageInformation()
        positions.append([float(v) for v in header.GetMetaData("0020|0032").split("\\")])
    normal = _lps_geometry(ours.affine)[1][:, 2]
    along_normal = np.array(positions) @ normal
    assert np.all(np.diff(along_normal) > 0)
    assert np.allclose(_slice_positions(ours), along_normal, atol=1e-4)


def test_oblique_dicom_direction_is_preserved():
    folder = shared_path(*MR_OBLIQUE)
    ours = read_image(folder)
    reference = _sitk_series(folder)[0]
    _assert_same_as_sitk(ours, reference)
    direction = _lps_geometry(ours.affine)[1]
    assert abs(direction[1, 2]) > 0.15  # the ~11 degree tilt survived


def test_folder_with_two_series_needs_a_series_uid(tmp_path):
    crop, oblique = shared_path(*MR_CROP), shared_path(*MR_OBLIQUE)
    for folder in (crop, oblique):
        for file in folder.iterdir():
            shutil.copy(file, tmp_path / file.name)
    crop_uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(crop))[0]
    oblique_uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(oblique))[0]
    message = _one_line_error(tmp_path, "2 DICOM series")
    assert f"{crop_uid!r} (32 files" in message and f"{oblique_uid!r} (22 files" in message
    assert read_image(tmp_path, series_uid=crop_uid).shape == (1, 35, 51, 32)
    _one_line_error(tmp_path, "no DICOM series '1.2.3'", series_uid="1.2.3")


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    _, files = _sitk_series(shared_path(*MR_CROP))
    for file in files:
        shutil.copy(file, tmp_path)
    (tmp_path / Path(files[15]).name).unlink()
    _one_line_error(tmp_path, "missing slice(s)")


@pytest.mark.parametrize("image_class", [nib.Nifti1Image, nib.Nifti2Image])
def test_gzipped_nifti_read_and_written_by_igzip_match_nibabels_own(tmp_path, image_class):
    """Compressed NIfTI goes through ISA-L's igzip, not nibabel's zlib stream: the voxels, affine and header
    read must be nibabel's, and the label file written must be a gzip that nibabel (and zlib) read back."""
    import gzip

    data = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 300 - 50).astype(np.int16)
    image = image_class(data, AFFINES["ras"])
    image.header.set_slope_inter(0.5, -3.0)
    nib.save(image, tmp_path / "scan.nii.gz")
    scan = read_image(tmp_path / "scan.nii.gz")
    expected = nib.load(tmp_path / "scan.nii.gz")
    assert np.array_equal(scan.numpy()[0], expected.get_fdata(dtype=np.float32))
    assert np.allclose(scan.meta["original_affine"], expected.affine)
    labels = (data > 100).astype(np.uint8)
    write_label(labels, scan, tmp_path / "seg.nii.gz")
    written = nib.load(tmp_path / "seg.nii.gz")
    assert np.array_equal(np.asarray(written.dataobj), labels) and np.allclose(written.affine, expected.affine)
    assert gzip.decompress((tmp_path / "seg.nii.gz").read_bytes()) == written.to_bytes()


def test_c_contiguous_copies_any_layout_as_numpy_does():
    """The slab-wise copy behind label maps written and statistics taken: the same array as
    ``np.ascontiguousarray`` for every layout a label map arrives in, and C-ordered."""
    volume = np.arange(70 * 45 * 33, dtype=np.uint16).reshape(70, 45, 33) % 251
    layouts = [volume, volume.T, np.asfortranarray(volume), volume.transpose(1, 2, 0), volume[::-1, :, ::2]]
    for array in layouts:
        copied = io.c_contiguous(array)
        assert copied.flags.c_contiguous and copied.dtype == array.dtype
        assert np.array_equal(copied, np.ascontiguousarray(array))
