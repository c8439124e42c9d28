"""Per-case files of a review page: small display copies of the scan and its label maps, and a thumbnail.

The page opens from file://, where ``fetch`` is refused but ``<script src>`` loads, so each case's volumes
are a script ``cases/<id>.js`` that hands base64 NIfTI to the page when the case is opened. Copies are
strided down to at most ``max_side`` voxels per axis (the affine scaled to match, so they stay in the
scan's world space) and the scan is stored as 8 bits after a display window: a 500-case page stays fast.
Nothing from the source header travels: each NIfTI is written fresh from the array and its affine.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from volseg.files.atomic import atomic_path, write_text_atomic
from volseg.inference.qc import label_centre, ras_spacing, to_ras

CT_WINDOW = (-160.0, 240.0)  # soft tissue (level 40, width 400): where abdominal organs are told apart


@dataclass
class Volume:
    """An (X, Y, Z) array in world space (the 4x4 voxel-to-RAS-mm affine)."""

    array: np.ndarray
    affine: np.ndarray


def strides(shape, max_side: int) -> tuple[int, ...]:
    return tuple(max(1, -(-int(n) // max_side)) for n in shape)


def downsample(volume: Volume, step: tuple[int, ...]) -> Volume:
    """Every ``step``-th voxel (nearest: label values survive), the affine scaled to match."""
    affine = volume.affine.copy()
    affine[:3, :3] = affine[:3, :3] * np.asarray(step, dtype=float)
    return Volume(volume.array[tuple(slice(None, None, s) for s in step)], affine)


def display_window(image: np.ndarray) -> tuple[float, float]:
    """A soft-tissue window for CT (a scan whose low percentile is air), else the 0.5-99.5 percentiles."""
    low, high = np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0)
    if low <= -500:
        return CT_WINDOW
    return float(low), float(max(high, low + 1e-6))


def to_uint8(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    low, high = window
    return np.clip((image.astype(np.float32) - low) * (255.0 / (high - low)), 0, 255).round().astype(np.uint8)


def nifti_base64(volume: Volume) -> str:
    """A fresh gzipped NIfTI (no source header, no extension, no description) as base64 text."""
    image = nib.Nifti1Image(np.ascontiguousarray(volume.array), volume.affine)
    image.header.set_xyzt_units("mm")
    image.set_sform(volume.affine, code=1)
    image.set_qform(volume.affine, code=1)
    return base64.b64encode(gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)).decode("ascii")


def write_case_script(
    path: Path, case_id: str, image: Volume | None, labels: Volume, reference: Volume | None, max_side: int
) -> Path:
    """``cases/<id>.js``: calls ``volsegCaseData({...})`` with the display copies (image may be absent)."""
    step = strides(labels.array.shape, max_side)
    payload = {
        "id": case_id,
        "labels": nifti_base64(downsample(Volume(labels.array.astype(np.uint8), labels.affine), step)),
    }
    if image is not None:
        small = downsample(image, strides(image.array.shape, max_side))
        payload["image"] = nifti_base64(Volume(to_uint8(small.array, display_window(small.array)), small.affine))
    if reference is not None:
        payload["reference"] = nifti_base64(
            downsample(Volume(reference.array.astype(np.uint8), reference.affine), step)
        )
    return write_text_atomic(path, f"volsegCaseData({json.dumps(payload)});\n")


def write_thumbnail(path: Path, image: Volume | None, labels: Volume, colors: dict[int, str], width: int = 160) -> Path:
    """An axial slice through the labels' centre, labels blended in, the patient's right on the left and
    true proportions (the QC pictures' conventions), ``width`` pixels wide at most."""
    from PIL import Image

    lab = to_ras(labels.array, labels.affine)
    z = label_centre(lab)[2]
    lab2d = lab[:, :, z]
    if image is not None and image.array.shape == labels.array.shape:
        img = to_ras(image.array, image.affine)[:, :, z].astype(np.float32)
        gray = to_uint8(img, display_window(img))
    else:
        gray = np.zeros(lab2d.shape, np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    for value, colour in colors.items():
        mask = lab2d == value
        rgb[mask] = 0.5 * rgb[mask] + 0.5 * np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], np.float32)
    picture = rgb.transpose(1, 0, 2)[::-1, ::-1].round().astype(np.uint8)  # rows: anterior up; columns: R..L
    sx, sy, _ = ras_spacing(labels.affine)
    height_mm, width_mm = picture.shape[0] * sy, picture.shape[1] * sx
    size = (
        (width, max(1, round(width * height_mm / width_mm)))
        if width_mm >= height_mm
        else (max(1, round(width * width_mm / height_mm)), width)
    )
    with atomic_path(path, ".png") as tmp:
        Image.fromarray(picture).resize(size, Image.NEAREST).save(tmp, format="PNG")
    return path
