"""The bad-input corpus: functions that write every kind of broken scan, manifest and DICOM folder.

Nothing here is a kept binary: :func:`write_corpus` regenerates the whole corpus (small synthetic volumes,
well under a megabyte) into any folder. Each writer makes one file or folder and returns its path; the
tests decide what each item must produce.
"""

from __future__ import annotations

import csv
import gzip
import locale
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

SHAPE = (20, 24, 16)
AFFINE = np.array([[-1.0, 0, 0, 12.0], [0, -1.2, 0, 30.0], [0, 0, 1.5, -8.0], [0, 0, 0, 1]])
HUGE_SHAPE = (4096, 4096, 4096)  # 256 GiB as float32


# ------------------------------------------------------------------------------------------ NIfTI items


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def scan(seed: int = 0, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """A smooth synthetic scan: a bright ellipsoid on a noisy background (MR-like intensities)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = sum((g / r) ** 2 for g, r in zip(grid, (0.6, 0.5, 0.7))) < 1
    return (100 + 300 * inside + rng.normal(0, 10, shape)).astype(np.float32)


def mask(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """The label of :func:`scan`'s ellipsoid (value 1) with a small value-2 core."""
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = sum((g / r) ** 2 for g, r in zip(grid, (0.6, 0.5, 0.7)))
    return ((radius < 1).astype(np.uint8) + (radius < 0.2)).astype(np.uint8)


def good_case(folder: Path, case_id: str, seed: int) -> tuple[Path, Path]:
    """A readable image and its matching label."""
    return (
        write_nifti(folder / f"{case_id}.nii.gz", scan(seed)),
        write_nifti(folder / f"{case_id}_seg.nii.gz", mask()),
    )


def truncated(path: Path) -> Path:
    """A good .nii.gz cut in half: the gzip stream ends early."""
    blob = write_nifti(path, scan(1)).read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return path


def not_an_image(path: Path) -> Path:
    """A CSV saved under a .nii.gz name (gzip-compressed, so only the NIfTI header check can catch it)."""
    path.write_bytes(gzip.compress(b"case_id,image,label\nnot,a,volume\n" * 20))
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def four_d(path: Path) -> Path:
    return write_nifti(path, np.stack([scan(2), scan(3)], axis=-1))


def two_d(path: Path) -> Path:
    return write_nifti(path, scan(4)[:, :, 0])


def nan_inf(path: Path) -> Path:
    """3 NaN voxels and 2 Inf voxels (one of each sign) in an otherwise good scan."""
    data = scan(5)
    data[0, 0, :3] = np.nan
    data[1, 1, 1], data[2, 2, 2] = np.inf, -np.inf
    return write_nifti(path, data)


def all_zero(path: Path) -> Path:
    """A legal, if empty, scan: every voxel 0."""
    return write_nifti(path, np.zeros(SHAPE, np.float32))


def sheared(path: Path) -> Path:
    """A sform whose voxel axes are not orthogonal (x and y columns 60 degrees apart)."""
    affine = AFFINE.copy()
    affine[:3, 1] = [-0.6, -1.04, 0]  # |column| = 1.2 mm, at 60 degrees to column 0
    return write_nifti(path, scan(6), affine)


def extreme_spacing(path: Path) -> Path:
    """10 m voxels: nothing medical, and resampling to ~1 mm would ask for ~10^12 voxels."""
    return write_nifti(path, scan(7), np.diag([1e4, 1e4, 1e4, 1.0]))


def zero_spacing(path: Path) -> Path:
    """An sform with a zero column (singular affine); nibabel cannot even derive a qform, so set the sform only."""
    affine = np.diag([1.0, 0.0, 1.0, 1.0])
    header = nib.Nifti1Header()
    header.set_sform(affine, code=1)
    nib.save(nib.Nifti1Image(scan(8), None, header), path)
    return path


def huge_header(path: Path) -> Path:
    """A header claiming a 4096^3 float32 volume, followed by 64 bytes: a tiny file that must not be allocated."""
    header = nib.Nifti1Header()
    header.set_data_shape(HUGE_SHAPE)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    with gzip.open(path, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * 4)  # extension flag
        f.write(b"\0" * 64)
    return path


def resampling_bomb(path: Path) -> Path:
    """A header-only 64^3 scan of 500 mm voxels (inside the plausible range): resampled to 1 mm it would be
    32000^3 voxels. Only its header exists, so reading any voxel would fail differently."""
    header = nib.Nifti1Header()
    header.set_data_shape((64, 64, 64))
    header.set_data_dtype(np.int16)
    header.set_sform(np.diag([500.0, 500.0, 500.0, 1.0]), code=1)
    header["vox_offset"] = 352
    with gzip.open(path, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * 4)
    return path


# Bad (and the one legal odd) single-file scans: case id -> writer. The file is "<case id>.nii.gz".
IMAGE_WRITERS = {
    "truncated": truncated,
    "not_an_image": not_an_image,
    "empty": empty,
    "four_d": four_d,
    "two_d": two_d,
    "nan_inf": nan_inf,
    "sheared": sheared,
    "extreme_spacing": extreme_spacing,
    "zero_spacing": zero_spacing,
    "huge_header": huge_header,
}


# ------------------------------------------------------------------------------------------ DICOM items

CT_TAGS = {
    "0008|0060": "CT",  # Modality
    "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",  # ImageType
    "0008|0020": "20200101",  # StudyDate
    "0008|103e": "synthetic series",  # SeriesDescription
    "0020|000d": "1.2.826.0.1.3680043.2.1125.1.1",  # StudyInstanceUID
    "0020|0052": "1.2.826.0.1.3680043.2.1125.3.1",  # FrameOfReferenceUID
    "0028|1050": "40",  # WindowCenter
    "0028|1051": "400",  # WindowWidth
}


def dicom_series(
    folder: Path,
    *,
    series_uid: str = "1.2.826.0.1.3680043.2.1125.2.1",
    slices: int = 10,
    spacing: tuple[float, float, float] = (0.9, 0.9, 2.0),
    skip: tuple[int, ...] = (),
    tags: dict[str, str] | None = None,
    prefix: str = "slice",
    size: tuple[int, int] = (32, 32),
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
    tilt_deg: float = 0.0,
    seed: int = 9,
) -> Path:
    """A synthetic CT series (int16 HU, ``size`` columns x rows per slice) written slice by slice with SimpleITK.

    Each slice carries the series' tags plus its own ImagePositionPatient and InstanceNumber; ``skip``
    leaves slices out (a gap), ``tags`` adds or overrides header values (e.g. planted patient data).
    ``direction`` (row-major 3x3, columns = column, row and slice axes in LPS) sets the orientation;
    ``tilt_deg`` shifts each slice along the column axis as a tilted CT gantry does.
    """
    folder.mkdir(parents=True, exist_ok=True)
    volume = sitk.GetImageFromArray((scan(seed, (slices, size[1], size[0])) * 2 - 1000).astype(np.int16))
    volume.SetSpacing(spacing)
    volume.SetOrigin((-14.0, -20.0, 35.0))
    volume.SetDirection([float(v) for v in direction])
    d = np.array(direction, float).reshape(3, 3)
    orientation = "\\".join(f"{v:g}" for v in (*d[:, 0], *d[:, 1]))
    series_tags = {
        **CT_TAGS,
        "0020|000e": series_uid,
        "0020|0037": orientation,
        "0028|0030": f"{spacing[1]}\\{spacing[0]}",
        "0018|0050": str(spacing[2]),
        **(tags or {}),
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # keep our SeriesInstanceUID instead of a fresh one per file
    shift = d[:, 1] * spacing[2] * np.tan(np.deg2rad(tilt_deg))
    with _locale_kept():
        _write_slices(writer, volume, folder, slices, skip, series_tags, series_uid, prefix, shift)
    return folder


@contextmanager
def _locale_kept():
    """GDCM's DICOM writer resets the process locale to "C" (ASCII text I/O for the rest of the process,
    pytest's included); put it back."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slices(writer, volume, folder, slices, skip, series_tags, series_uid, prefix, shift=(0, 0, 0)) -> None:
    for k in range(slices):
        if k in skip:
            continue
        image = volume[:, :, k]
        for tag, value in series_tags.items():
            image.SetMetaData(tag, value)
        image.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")  # SOPInstanceUID
        position = np.array(volume.TransformIndexToPhysicalPoint((0, 0, k))) + k * np.asarray(shift)
        image.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
        image.SetMetaData("0020|0013", str(k + 1))  # InstanceNumber
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(image)


def dicom_two_series(folder: Path) -> Path:
    """Two interleaved series (different SeriesInstanceUID) in one folder."""
    dicom_series(folder, series_uid="1.2.826.0.1.3680043.2.1125.2.1", slices=8, prefix="a")
    dicom_series(folder, series_uid="1.2.826.0.1.3680043.2.1125.2.2", slices=6, prefix="b")
    return folder


def dicom_missing_slice(folder: Path) -> Path:
    """A 10-slice series with slice 5 gone: a 4 mm step where every other is 2 mm."""
    return dicom_series(folder, skip=(5,))


# ---------------------------------------------------------------------------------------------- manifests


def write_manifest(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", "image", "label", "split"])
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------ corpus


@dataclass
class Corpus:
    """Where :func:`write_corpus` put everything (all paths absolute)."""

    root: Path
    scans: Path  # folder of single-file scans: the good ones, the all-zero one and every IMAGE_WRITERS item
    good: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # case id -> (image, label)
    bad: dict[str, Path] = field(default_factory=dict)  # case id -> bad file or DICOM folder
    all_zero: Path | None = None
    mismatch: tuple[Path, Path] | None = None  # an image and a label of another shape
    bomb: Path | None = None  # a plausible header whose resampling would need terabytes
    manifests: dict[str, Path] = field(default_factory=dict)

    @property
    def dicom(self) -> dict[str, Path]:
        return {k: v for k, v in self.bad.items() if v.is_dir()}


def write_corpus(root: Path) -> Corpus:
    """Write the whole corpus under ``root`` (about 40 files, ~1 s)."""
    root.mkdir(parents=True, exist_ok=True)
    scans, labels, dicom = root / "scans", root / "labels", root / "dicom"
    for folder in (scans, labels, dicom):
        folder.mkdir(exist_ok=True)
    corpus = Corpus(root, scans)
    for seed, case_id in enumerate(("good_a", "good_b", "good_c")):
        image, label = good_case(scans, case_id, seed)
        corpus.good[case_id] = (image, label.rename(labels / label.name))
    corpus.all_zero = all_zero(scans / "all_zero.nii.gz")
    for case_id, writer in IMAGE_WRITERS.items():
        corpus.bad[case_id] = writer(scans / f"{case_id}.nii.gz")
    corpus.bad["dicom_two_series"] = dicom_two_series(dicom / "dicom_two_series")
    corpus.bad["dicom_missing_slice"] = dicom_missing_slice(dicom / "dicom_missing_slice")
    (root / "bombs").mkdir(exist_ok=True)  # its own folder: refused only where a resampling spacing is known
    corpus.bomb = resampling_bomb(root / "bombs" / "bomb.nii.gz")

    image = write_nifti(root / "mismatch.nii.gz", scan(10))
    corpus.mismatch = (image, write_nifti(labels / "mismatch_seg.nii.gz", mask((20, 24, 15))))
    _write_manifests(corpus)
    return corpus


def _write_manifests(corpus: Corpus) -> None:
    """Manifests with paths relative to ``root``: each bad kind alone, beside the good cases."""
    root = corpus.root

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    good = [[case_id, rel(image), rel(label), "train"] for case_id, (image, label) in corpus.good.items()]
    good[-1][3] = "val"
    bad_scans = [[case_id, rel(path), "", "test"] for case_id, path in corpus.bad.items()]
    m = corpus.manifests
    m["scans"] = write_manifest(root / "scans.csv", good + bad_scans + [["all_zero", rel(corpus.all_zero), "", "test"]])
    m["missing"] = write_manifest(
        root / "missing.csv",
        good
        + [
            ["no_image", "scans/absent.nii.gz", "", "test"],
            ["no_label", rel(corpus.good["good_a"][0]), "labels/absent_seg.nii.gz", "train"],
        ],
    )
    m["mismatch"] = write_manifest(
        root / "mismatch.csv", good + [["mismatch", rel(corpus.mismatch[0]), rel(corpus.mismatch[1]), "train"]]
    )
    m["nan"] = write_manifest(
        root / "nan.csv", good + [["nan_inf", rel(corpus.bad["nan_inf"]), rel(corpus.good["good_a"][1]), "train"]]
    )
    m["duplicate"] = write_manifest(
        root / "duplicate.csv", good + [["good_a", rel(corpus.good["good_b"][0]), "", "test"]]
    )
    m["bomb"] = write_manifest(root / "bomb.csv", good + [["bomb", rel(corpus.bomb), "", "train"]])
    m["traversal"] = write_manifest(
        root / "traversal.csv", good + [["../../x", rel(corpus.good["good_a"][0]), "", "test"]]
    )
