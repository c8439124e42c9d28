"""Geometry-true reading and writing of volumes: NIfTI, NRRD/MHA/MHD and DICOM series.

Every reader returns a float32 :class:`~monai.data.MetaTensor` of shape (C, X, Y, Z) with the meta keys MONAI's
``LoadImage`` produces (``affine`` and ``original_affine`` in RAS world coordinates, ``spatial_shape``,
``filename_or_obj``, ``space``), so MONAI transforms and :func:`write_label` agree on the grid. Every failure to
read is an :class:`ImageReadError` whose message is one line, ``"<path>: <problem>"``.

The readers build a :class:`Scan` (the voxels and the same meta, no MONAI) and wrap it. Callers that need no
MONAI transform read Scans (:func:`read_scan`, :func:`read_scans`): nnU-Net models do, so ``volseg infer`` with
one never imports MONAI, whose import is 2.5 s of a single case's start-up.
"""

from __future__ import annotations

import gzip
import logging
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import torch
from isal import igzip, isal_zlib
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from volseg.data.manifest import Case
from volseg.errors import VolsegError
from volseg.files.atomic import atomic_path

if TYPE_CHECKING:
    import SimpleITK as sitk
    from monai.data import MetaTensor

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
NOT_AN_IMAGE = "not a NIfTI/NRRD/MHA image or DICOM series"
GRID_ATOL = 1e-3  # mm for origin and spacing, unitless for direction cosines
MAX_VOXELS = 2**31
MAX_RESAMPLED_VOXELS = 2**30  # 4 GiB per float32 channel after resampling, before the model's copies
SPACING_RANGE_MM = (1e-3, 1e3)  # a voxel edge outside 1 micrometre .. 1 metre is a corrupt header, not a scan
ORTHOGONALITY_TOL = 1e-3  # largest |cosine| allowed between two voxel axes (~0.06 degrees off square)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UNSUPPORTED = f"unsupported file type; expected {', '.join(NIFTI_SUFFIXES + ITK_SUFFIXES)} or a DICOM series folder"


class ImageReadError(VolsegError):
    """A volume that cannot be read; ``str()`` is one line ``"<path>: <problem>"`` fit for a user."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the underlying library said
        super().__init__(f"{self.path}: {self.problem}")


# ----------------------------------------------------------------------------------------------- reading


@dataclass
class Scan:
    """A volume as read, without MONAI: float32 voxels (C, X, Y, Z) and the meta its MetaTensor carries
    (``original_affine`` in RAS, ``spatial_shape``, ``filename_or_obj``, a NIfTI source's ``nifti_header``)."""

    array: np.ndarray
    meta: dict

    @property
    def affine(self) -> np.ndarray:
        return self.meta["original_affine"]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)


def as_meta_tensor(scan: Scan) -> MetaTensor:
    """The Scan as the MetaTensor MONAI's transforms take (its voxels shared, not copied)."""
    from monai.data import MetaTensor
    from monai.utils import SpaceKeys

    affine = torch.from_numpy(np.array(scan.affine, dtype=np.float64))
    return MetaTensor(torch.from_numpy(scan.array), affine=affine, meta={**scan.meta, "space": SpaceKeys.RAS})


def read_image(path: str | Path, **options) -> MetaTensor:
    """Read one 3D volume (file or DICOM series folder) as a float32 MetaTensor of shape (1, X, Y, Z), RAS affine;
    ``options`` and the checks are :func:`read_scan`'s."""
    return as_meta_tensor(read_scan(path, **options))


def read_scan(
    path: str | Path,
    *,
    series_uid: str | None = None,
    max_voxels: int = MAX_VOXELS,
    resample_to: Sequence[float] | None = None,
    max_resampled_voxels: int = MAX_RESAMPLED_VOXELS,
) -> Scan:
    """Read one 3D volume (file or DICOM series folder) as a :class:`Scan` of shape (1, X, Y, Z), RAS affine.

    ``series_uid`` picks one series of a DICOM folder holding several. Volumes whose header claims more than
    ``max_voxels`` voxels are refused before any voxel is read, and so are geometries no resampling can use:
    a non-finite or singular affine, spacing outside ``SPACING_RANGE_MM``, non-orthogonal (sheared) axes.
    With ``resample_to`` (the spacing preprocessing will resample to), a volume whose resampled size would
    pass ``max_resampled_voxels`` is refused too: from the header for NIfTI and ITK files, before any voxel
    is read (500 mm voxels of a corrupt header, resampled to 1 mm, would ask for terabytes).
    """
    if hasattr(path, "instances") or Path(path).is_dir():  # a DicomSeries found in an archive, or a series folder
        image = (
            _series_scan(path, max_voxels)
            if hasattr(path, "instances")
            else _read_dicom_series(Path(path), series_uid, max_voxels)
        )
        if resample_to is not None:  # its geometry is known once read, still before any resampling
            check_resampled_size(path, image.shape[1:], image.affine, resample_to, max_resampled_voxels)
        return image
    path = Path(path)
    name = _readable_name(path)
    if name.endswith(NIFTI_SUFFIXES):
        return _read_nifti(path, max_voxels, resample_to, max_resampled_voxels)
    if name.endswith(ITK_SUFFIXES):
        return _read_itk_file(path, max_voxels, resample_to, max_resampled_voxels)
    raise ImageReadError(path, _UNSUPPORTED)


def read_case_image(case: Case) -> MetaTensor:
    """Read every channel of a manifest case into one (C, X, Y, Z) MetaTensor (see :func:`read_channels`)."""
    return read_channels(case.images)


def read_channels(paths: Sequence[str | Path], **limits) -> MetaTensor:
    """:func:`read_scans` as one MetaTensor: model input."""
    return as_meta_tensor(read_scans(paths, **limits))


def read_scans(paths: Sequence[str | Path], **limits) -> Scan:
    """Read channel files into one (C, X, Y, Z) :class:`Scan` carrying the first channel's meta.

    Channels are stacked voxel by voxel, so each must lie on the first channel's grid (shape and affine).
    NaN or Inf voxels are refused: no model output computed from them could be trusted. ``limits`` go to
    :func:`read_scan` (``resample_to``, ``max_resampled_voxels``).
    """
    if not paths:
        raise ValueError("no channel to read")
    channels: list[Scan] = []
    for path in paths:
        channel = read_scan(path, **limits)
        if why := non_finite(channel.array):
            raise ImageReadError(path, f"{why}; replace them (e.g. with the background value) before use")
        if channels and (
            why := grid_mismatch(channel.affine, channel.shape[1:], channels[0].affine, channels[0].shape[1:])
        ):
            raise ImageReadError(path, f"channel grid differs from {Path(paths[0]).name}: {why}")
        channels.append(channel)
    if len(channels) == 1:
        return channels[0]
    return Scan(np.concatenate([c.array for c in channels]), dict(channels[0].meta))


def stack_channels(channels: Sequence[MetaTensor]) -> MetaTensor:
    """Channels on one grid as one (C, X, Y, Z) MetaTensor with the first channel's meta (one channel: itself)."""
    from monai.data import MetaTensor

    if len(channels) == 1:
        return channels[0]
    return MetaTensor(torch.cat([c.as_tensor() for c in channels]), meta=dict(channels[0].meta))


def read_label(path: str | Path) -> MetaTensor:
    """Read a label map as :func:`read_image` does, refusing non-integral or non-finite values.

    Values stay in float32 storage, like images, so MONAI transforms treat image and label alike; integral
    values up to 2**24 are exact in float32. Cast with ``.long()`` where integers are needed.
    """
    label = read_image(path)
    values = label.as_tensor()
    bad = values != torch.round(values)  # also true for NaN
    if bool(bad.any()):
        example = values[bad][0].item()
        raise ImageReadError(path, f"label has {int(bad.sum())} non-integral or non-finite voxel(s) (e.g. {example})")
    return label


def non_finite(image: torch.Tensor) -> str | None:
    """``"<n> NaN and <m> Inf voxel(s)"`` when ``image`` holds any, else None."""
    values = torch.as_tensor(image)
    if bool(torch.isfinite(values).all()):
        return None
    return f"{int(torch.isnan(values).sum())} NaN and {int(torch.isinf(values).sum())} Inf voxel(s)"


def check_header(path: str | Path) -> tuple[tuple[int, int, int], np.ndarray] | None:
    """Check a file's header as :func:`read_scan` checks it, without reading a voxel (milliseconds), so that a
    scan named on the command line is refused before a model is opened; its shape and RAS affine. A folder (a
    DICOM series) is checked when it is read: None."""
    path = Path(path)
    if path.is_dir():
        return None
    name = _readable_name(path)
    if name.endswith(NIFTI_SUFFIXES):
        with _nifti_errors(path):
            image = nib.load(path)
            shape = _spatial_shape(path, image.shape, MAX_VOXELS)
            _check_affine(path, image.affine)
            return shape, np.asarray(image.affine, dtype=np.float64)
    if name.endswith(ITK_SUFFIXES):
        reader = _itk_header(path)
        _check_scalar(path, reader.GetNumberOfComponents())
        return _spatial_shape(path, reader.GetSize(), MAX_VOXELS), _sitk_affine(reader, path)
    raise ImageReadError(path, _UNSUPPORTED)


def _readable_name(path: Path) -> str:
    """The lower-case name of a file that exists and is not empty (else one ImageReadError line)."""
    if not path.exists():
        raise ImageReadError(path, "no such file or folder")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty")
    return path.name.lower()


@contextmanager
def _nifti_errors(path: Path):
    """What nibabel and gzip raise on a broken file, as one ImageReadError line naming it."""
    try:
        yield
    except ImageReadError:
        raise
    except (EOFError, zlib.error, isal_zlib.error, gzip.BadGzipFile) as exc:
        raise ImageReadError(path, f"truncated or corrupt gzip archive ({exc})") from exc
    except ImageFileError as exc:
        raise ImageReadError(path, f"{NOT_AN_IMAGE} ({exc})") from exc
    except (OSError, ValueError, HeaderDataError) as exc:
        raise ImageReadError(path, f"cannot read NIfTI data ({exc})") from exc


def _read_nifti(
    path: Path, max_voxels: int, resample_to=None, max_resampled_voxels: int = MAX_RESAMPLED_VOXELS
) -> Scan:
    with _nifti_errors(path):
        image = _load_nifti(path)
        shape = _spatial_shape(path, image.shape, max_voxels)
        _check_affine(path, image.affine)
        if resample_to is not None:
            check_resampled_size(path, shape, image.affine, resample_to, max_resampled_voxels)
        # in the file's own (Fortran) order: no 0.2 s transposed copy of a CT, and (C, Z, Y, X) views of it, as
        # nnU-Net and SimpleITK order voxels, are C-contiguous for free
        array = image.get_fdata(dtype=np.float32).reshape(shape, order="F")
    # The header travels with the data so that write_label can reproduce it exactly.
    extra = {"nifti_header": bytes(image.header.binaryblock)}
    return _scan(array, image.affine, path, extra)


def _load_nifti(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    """The NIfTI image of ``path``; a ``.gz`` is inflated whole by ISA-L's igzip (0.09 s instead of zlib's
    0.21 s for a 512x512x79 CT), the same bytes."""
    raw = path.read_bytes() if path.name.lower().endswith(".gz") else b""
    if not raw.startswith(b"\x1f\x8b"):  # not gzip: nibabel's own reading and errors
        return nib.load(path)
    data = igzip.decompress(raw)
    sizeof_hdr = {int.from_bytes(data[:4], order) for order in ("little", "big")}
    if 348 in sizeof_hdr and data[344:348] in (b"n+1\0", b"ni1\0"):
        return nib.Nifti1Image.from_bytes(data)
    if 540 in sizeof_hdr and data[4:8] in (b"n+2\0", b"ni2\0"):
        return nib.Nifti2Image.from_bytes(data)
    return nib.load(path)  # not a NIfTI header: nibabel's own reading and errors


def _save_nifti(image: nib.Nifti1Image, path: Path) -> None:
    """``nib.save``; a ``.gz`` deflated by igzip (a label map: 0.04 s instead of zlib's 0.17 s, a smaller file)."""
    if not path.name.lower().endswith(".gz"):
        nib.save(image, path)
        return
    path.write_bytes(igzip.compress(image.to_bytes()))


def _read_itk_file(
    path: Path, max_voxels: int, resample_to=None, max_resampled_voxels: int = MAX_RESAMPLED_VOXELS
) -> Scan:
    reader = _itk_header(path)
    _check_scalar(path, reader.GetNumberOfComponents())
    shape = _spatial_shape(path, reader.GetSize(), max_voxels)
    if resample_to is not None:
        check_resampled_size(path, shape, np.diag([*reader.GetSpacing()[:3], 1.0]), resample_to, max_resampled_voxels)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(path, f"truncated or corrupt image data ({_itk_reason(exc)})") from exc
    return _from_sitk(image, path, max_voxels)


def _itk_header(path: Path) -> sitk.ImageFileReader:
    import SimpleITK as sitk  # NRRD, MHA and DICOM only: a NIfTI run (and a lent GPU machine) does without

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError(path, f"{NOT_AN_IMAGE} ({_itk_reason(exc)})") from exc
    return reader


def _read_dicom_series(folder: Path, series_uid: str | None, max_voxels: int) -> Scan:
    """Read the one DICOM series of a folder (or the one named by ``series_uid``), found from headers."""
    from volseg.dicom.archive import discover_series

    found, _ = discover_series([folder])
    if not found:
        raise ImageReadError(folder, f"{NOT_AN_IMAGE} (folder holds no DICOM series)")
    if series_uid is not None:
        picked = [s for s in found if s.series_uid == series_uid]
        if not picked:
            uids = sorted({s.series_uid for s in found})
            raise ImageReadError(folder, f"no DICOM series {series_uid!r} here; found {', '.join(map(repr, uids))}")
        found = picked
    if len(found) > 1:
        listing = ", ".join(
            f"{s.series_uid!r} ({len(s.instances)} files, {s.plane}, {s.columns}x{s.rows})" for s in found
        )
        raise ImageReadError(
            folder,
            f"folder holds {len(found)} DICOM series; give each its own folder (or pick one with "
            f"series_uid, or let `volseg infer` select by rules): {listing}",
        )
    return _series_scan(found[0], max_voxels)


def read_series(series, max_voxels: int = MAX_VOXELS) -> MetaTensor:
    """Read one discovered :class:`~volseg.dicom.archive.DicomSeries` in its checked slice order.

    Refuses, in one line naming the folder, what SimpleITK would silently get wrong (a missing slice, gantry
    tilt, mixed image sizes) and pixel encodings it cannot decode."""
    return as_meta_tensor(_series_scan(series, max_voxels))


def _series_scan(series, max_voxels: int = MAX_VOXELS) -> Scan:
    from volseg.dicom.archive import geometry_fault

    folder = series.folder
    if fault := geometry_fault(series):
        raise ImageReadError(folder, fault)
    import SimpleITK as sitk

    files = [str(f) for f in series.files]
    first = _dicom_header(files[0])
    _check_scalar(folder, first.GetNumberOfComponents())
    _spatial_shape(folder, (series.columns, series.rows, series.slices), max_voxels)
    try:
        if len(files) == 1:
            image = sitk.ReadImage(files[0], imageIO="GDCMImageIO")
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(folder, f"cannot read DICOM series {series.series_uid!r} ({_itk_reason(exc)})") from exc
    return _from_sitk(image, folder, max_voxels)


def _dicom_header(file: str) -> sitk.ImageFileReader:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(file)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError(file, f"unreadable DICOM file ({_itk_reason(exc)})") from exc
    return reader


def _from_sitk(image: sitk.Image, path: Path, max_voxels: int) -> Scan:
    """SimpleITK image (LPS, array z,y,x) -> RAS Scan (x,y,z)."""
    import SimpleITK as sitk

    shape = _spatial_shape(path, image.GetSize(), max_voxels)
    affine = _sitk_affine(image, path)
    view = sitk.GetArrayViewFromImage(image).reshape(shape[::-1])
    array = np.ascontiguousarray(view.transpose(2, 1, 0), dtype=np.float32)
    return _scan(array, affine, path)


def _sitk_affine(image: sitk.Image | sitk.ImageFileReader, path: Path) -> np.ndarray:
    """The RAS voxel-to-world affine of a SimpleITK image or header (LPS), checked."""
    dim = image.GetDimension()
    direction = np.array(image.GetDirection()).reshape(dim, dim)[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing()[:3])  # scale column j by spacing j
    affine[:3, 3] = image.GetOrigin()[:3]
    _check_affine(path, affine)
    return _LPS_TO_RAS @ affine


def _spatial_shape(path: Path, shape: Sequence[int], max_voxels: int) -> tuple[int, int, int]:
    """Validate a header's shape before allocating: 3D (trailing singleton dims dropped), non-empty, not huge."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ImageReadError(path, f"{len(shape)}D image (shape {shape}), expected 3D")
    if 0 in shape:
        raise ImageReadError(path, f"image has no voxels (shape {shape})")
    voxels = math.prod(shape)
    if voxels > max_voxels:
        gib = voxels * 4 / 2**30
        raise ImageReadError(
            path,
            f"header claims shape {shape} ({gib:.1f} GiB as float32), larger than the limit of {max_voxels} voxels",
        )
    return shape


def check_resampled_size(path, shape: Sequence[int], affine: Any, spacing: Sequence[float], limit: int) -> None:
    """Refuse, naming the file and both sizes, a volume that resampling to ``spacing`` would blow up."""
    affine = np.asarray(affine, dtype=np.float64)
    source = np.linalg.norm(affine[:3, :3], axis=0)
    # preprocessing reorients before resampling: each voxel axis gets the spacing of the world axis it points along
    world_axis = np.abs(affine[:3, :3]).argmax(axis=0)
    target = np.asarray(spacing, dtype=np.float64)[world_axis]
    resampled = [max(1, math.ceil(n * s / t)) for n, s, t in zip(shape, source, target)]
    voxels = math.prod(resampled)
    if voxels > limit:
        raise ImageReadError(
            path,
            f"resampling {tuple(int(n) for n in shape)} voxels of {_fmt(source)} mm to "
            f"{_fmt(np.asarray(spacing, dtype=np.float64))} mm would make {tuple(resampled)} "
            f"({voxels * 4 / 2**30:.1f} GiB as float32), more than the limit of {limit} voxels "
            "(preprocess.max_resampled_voxels); check the header's voxel size",
        )


def _check_affine(path: Path, affine: Any) -> None:
    """Refuse a voxel-to-world affine no resampling can use: non-finite, zero or absurd spacing, sheared axes."""
    affine = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise ImageReadError(path, "affine (voxel-to-world matrix) holds NaN or Inf values")
    matrix = affine[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    low, high = SPACING_RANGE_MM
    if spacing.min() == 0:
        raise ImageReadError(path, f"zero voxel spacing {_fmt(spacing)} mm (singular affine)")
    if spacing.min() < low or spacing.max() > high:
        raise ImageReadError(
            path,
            f"voxel spacing {_fmt(spacing)} mm is outside the plausible range {low:g}..{high:g} mm (corrupt header?)",
        )
    cosines = (matrix / spacing).T @ (matrix / spacing)
    np.fill_diagonal(cosines, 0.0)
    i, j = np.unravel_index(np.argmax(np.abs(cosines)), cosines.shape)
    if abs(cosines[i, j]) > ORTHOGONALITY_TOL:
        angle = np.degrees(np.arccos(np.clip(cosines[i, j], -1.0, 1.0)))
        raise ImageReadError(
            path,
            f"non-orthonormal direction: voxel axes {i} and {j} are {angle:.2f} degrees apart, not 90 "
            "(sheared affine); resample it onto an orthogonal grid first",
        )


def _check_scalar(path: Path, components: int) -> None:
    if components != 1:
        raise ImageReadError(path, f"{components} components per voxel (vector/RGB image), expected a scalar image")


def _itk_reason(exc: RuntimeError) -> str:
    """The useful last part of an ITK exception (which starts with a source file and line)."""
    message = str(exc)
    match = re.search(r"ERROR:\s*(?:\w+\(0x[0-9a-fA-F]+\):\s*)?(.*)", message, re.S)
    reason = match.group(1) if match else message
    return " ".join(re.sub(r"\sReason: .*", "", reason, flags=re.S).split())  # ITK's 'Reason' is a stale errno


def _scan(array: np.ndarray, affine: np.ndarray, path: Path, extra: Mapping[str, Any] | None = None) -> Scan:
    meta = {
        "original_affine": np.array(affine, dtype=np.float64),
        "spatial_shape": np.asarray(array.shape),
        "filename_or_obj": str(path),
        "space": "RAS",
        "original_channel_dim": 0,  # already channel-first: EnsureChannelFirst leaves it alone
        **(extra or {}),
    }
    return Scan(array[None], meta)


# ---------------------------------------------------------------------------------------------- geometry


def grid_mismatch(
    affine_a: Any, shape_a: Sequence[int], affine_b: Any, shape_b: Sequence[int], *, atol: float = GRID_ATOL
) -> str | None:
    """Why grid a differs from grid b (one short phrase, a's values first), or None when they match within ``atol``.

    Spacing and origin are compared in mm, direction cosines unitless, so near-identical grids written by
    different tools (float32 headers, rounded DICOM cosines) still match.
    """
    shape_a, shape_b = tuple(int(s) for s in shape_a), tuple(int(s) for s in shape_b)
    if shape_a != shape_b:
        return f"shape {shape_a} vs {shape_b}"
    a, b = np.asarray(affine_a, dtype=np.float64), np.asarray(affine_b, dtype=np.float64)
    spacing_a, spacing_b = np.linalg.norm(a[:3, :3], axis=0), np.linalg.norm(b[:3, :3], axis=0)
    if np.abs(spacing_a - spacing_b).max() > atol:
        return f"spacing {_fmt(spacing_a)} vs {_fmt(spacing_b)} mm"
    direction_a = a[:3, :3] / np.maximum(spacing_a, 1e-12)
    direction_b = b[:3, :3] / np.maximum(spacing_b, 1e-12)
    if (cosine := np.abs(direction_a - direction_b).max()) > atol:
        return f"direction cosines differ by up to {cosine:.3g} (axis flip or rotation)"
    if (shift := np.abs(a[:3, 3] - b[:3, 3]).max()) > atol:
        return f"origin {_fmt(a[:3, 3])} vs {_fmt(b[:3, 3])} mm (differs by up to {shift:.3g} mm)"
    return None


def same_grid(
    affine_a: Any, shape_a: Sequence[int], affine_b: Any, shape_b: Sequence[int], *, atol: float = GRID_ATOL
) -> bool:
    """Same shape and affines equal within ``atol`` (see :func:`grid_mismatch`)."""
    return grid_mismatch(affine_a, shape_a, affine_b, shape_b, atol=atol) is None


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


# ----------------------------------------------------------------------------------------------- writing


def write_label(label: Any, reference: MetaTensor | Scan | Mapping[str, Any], path: str | Path) -> Path:
    """Write an integer (X, Y, Z) label map on exactly the reference image's source grid, atomically.

    The output has the reference's ``spatial_shape`` and ``original_affine``; a NIfTI source's header is copied
    (qform/sform codes kept) so the label overlays its image in any viewer. Stored as uint8 when every label
    is below 256, else uint16. The file appears complete or not at all (temporary name, then ``os.replace``).
    """
    path = Path(path)
    suffix = next((s for s in (".nii.gz", ".nii") if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise ValueError(f"{path}: label output must be a .nii or .nii.gz file")
    meta = reference.meta if hasattr(reference, "meta") else reference
    if "original_affine" not in meta or "spatial_shape" not in meta:
        raise ValueError("reference has no 'original_affine'/'spatial_shape' meta; read it with volseg.data.io")
    data = _label_array(label, tuple(int(s) for s in np.asarray(meta["spatial_shape"])))
    affine = np.asarray(meta["original_affine"], dtype=np.float64)
    image = _nifti_like(data, affine, meta.get("nifti_header"))

    try:
        with atomic_path(path, suffix) as tmp:
            _save_nifti(image, tmp)
    except OSError as e:  # full disk, read-only folder, permissions: say which file and why, in one line
        raise OSError(e.errno, f"{path}: cannot write ({e.strerror or e})") from None
    logger.debug("wrote %s %s label to %s", data.shape, data.dtype, path)
    return path


def _label_array(label: Any, shape: tuple[int, ...]) -> np.ndarray:
    data = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if data.shape != shape:
        raise ValueError(f"label shape {data.shape} differs from the reference image's spatial shape {shape}")
    if not np.issubdtype(data.dtype, np.integer) and not np.array_equal(data, np.round(data)):
        raise ValueError("label has non-integral or non-finite values")
    low, high = (data.min(), data.max()) if data.size else (0, 0)
    if low < 0 or high > np.iinfo(np.uint16).max:
        raise ValueError(f"label values {low}..{high} do not fit uint16 (0..65535)")
    # NIfTI stores x fastest: a Fortran-ordered map is written as it is, any other is transposed once, fast
    return c_contiguous(data.astype(label_dtype(high), copy=False).T).T


def c_contiguous(array: np.ndarray) -> np.ndarray:
    """``np.ascontiguousarray``, but a 3D array laid out otherwise is copied by slabs of 32 along its middle
    axis: numpy's own strided copy of a transposed 512x512x79 uint8 label map took 0.135 s, the slabs 0.027 s."""
    if array.flags.c_contiguous or array.ndim != 3:
        return np.ascontiguousarray(array)
    out = np.empty(array.shape, array.dtype)
    for start in range(0, array.shape[1], 32):
        out[:, start : start + 32] = array[:, start : start + 32]
    return out


def label_dtype(highest: int) -> type:
    """uint8 when every label value is below 256, else uint16: what a label file stores, and an eighth of the
    memory (and of the time of every mask taken from it) of int64."""
    return np.uint8 if highest < 256 else np.uint16


def _nifti_like(data: np.ndarray, affine: np.ndarray, header_block: bytes | None) -> nib.Nifti1Image:
    """A NIfTI image of ``data``: the source's header when it was NIfTI, else a fresh one (sform = qform = 1)."""
    if header_block is None:
        image = nib.Nifti1Image(data, affine)
        image.header.set_xyzt_units("mm")
        image.set_sform(affine, code=1)
        image.set_qform(affine, code=1)
        return image
    header_class, image_class = (
        (nib.Nifti2Header, nib.Nifti2Image) if len(header_block) == 540 else (nib.Nifti1Header, nib.Nifti1Image)
    )
    header = header_class(binaryblock=bytes(header_block)).copy()
    image = image_class(data, affine, header)  # affine equals the header's best affine: codes kept
    image.set_data_dtype(data.dtype)
    image.header.set_slope_inter(1.0, 0.0)  # the source's intensity scaling must not apply to labels
    image.header["cal_min"] = image.header["cal_max"] = 0  # nor its display window
    image.header["vox_offset"] = 0  # nibabel recomputes it (the source's extensions are not copied)
    return image
