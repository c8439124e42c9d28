"""Is a scan like the ones a model was trained on? A NIfTI file carries no modality, but the model knows what it
saw: the modality of its training scans and their field of view. A scan far outside them (Hounsfield units
given to an MRI model, a whole abdomen given to a model of 4 cm crops) gets one warning line as soon as it is
read, before any window runs, and ``--strict`` refuses it (:class:`ScanRefused`).

The rules, each a fact of the modality rather than a learned threshold:

- an MR model and a scan with at least 1 % of its voxels below -500: air and lung in Hounsfield units; MR
  intensities are never so negative;
- a CT model and a scan with no voxel below 0: every CT in Hounsfield units holds air or fat (-1000, -100);
- a field of view (the scan's volume in mm^3) 20x larger than the training scans' median, or 100x smaller
  (scans of part of the body are common; a whole abdomen given to a model of 4 cm crops, or a 3 cm cube given
  to an abdomen model, are not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from volseg.errors import VolsegError

AIR_HU = -500.0
AIR_SHARE = 0.01
FIELD_OF_VIEW_RATIO = 20.0  # larger than the training scans' by this factor (mm^3)
SMALL_FIELD_OF_VIEW_RATIO = 100.0  # smaller by this factor: a partial scan is common, a 3 cm cube of a CT is not


class ScanRefused(VolsegError):
    """``--strict``: the scan is not one the model was made for; one line naming the file and why."""


@dataclass(frozen=True)
class TrainingScans:
    """What a model was trained on, as far as screening a new scan needs it."""

    modality: str  # CT or MR
    extent_mm: tuple[float, float, float] | None  # median size of the training scans along each voxel axis
    source: str = ""  # where these figures come from

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainingScans:
        extent = data.get("extent_mm")
        return cls(data["modality"], tuple(float(e) for e in extent) if extent else None, data.get("source", ""))


def extent_mm(shape: Sequence[int], affine) -> tuple[float, float, float]:
    """A grid's size in mm along each voxel axis."""
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return tuple(float(n * s) for n, s in zip(shape[-3:], spacing))


def median_extent(extents: Sequence[Sequence[float]]) -> tuple[float, float, float] | None:
    return tuple(float(v) for v in np.median(np.asarray(extents, dtype=np.float64), axis=0)) if extents else None


def mismatch(expected: TrainingScans | None, voxels: np.ndarray, affine) -> str:
    """Why a scan (voxels (X, Y, Z) or (C, X, Y, Z), its affine) is unlike the training scans; "" when it is not."""
    if expected is None:
        return ""
    first = np.asarray(voxels)
    first = first[0] if first.ndim == 4 else first
    reasons = []
    if expected.modality == "MR":
        air = np.count_nonzero(first < AIR_HU) / first.size
        if air >= AIR_SHARE:
            reasons.append(
                f"it looks like CT ({100 * air:.0f}% of voxels below {AIR_HU:g}, air in Hounsfield units) but the "
                "model was trained on MR"
            )
    elif expected.modality == "CT" and float(first.min()) >= 0:
        reasons.append(
            "no voxel is below 0, so it is not CT in Hounsfield units (an MR image, or a CT stored without its "
            "rescale) but the model was trained on CT"
        )
    if expected.extent_mm:
        scan = extent_mm(first.shape, affine)
        ratio = math.prod(scan) / math.prod(expected.extent_mm)
        if ratio >= FIELD_OF_VIEW_RATIO or ratio <= 1 / SMALL_FIELD_OF_VIEW_RATIO:
            size = "x".join(f"{e:.0f}" for e in scan)
            trained = "x".join(f"{e:.0f}" for e in expected.extent_mm)
            times = f"{ratio:.0f}x" if ratio > 1 else f"1/{1 / ratio:.0f}"
            reasons.append(f"its field of view, {size} mm, is {times} the training scans' ({trained} mm)")
    return "; ".join(reasons)


def screen(expected: TrainingScans | None, source: str, voxels: np.ndarray, affine, strict: bool) -> str:
    """The one-line warning for a scan unlike the training scans ("" when it is like them); under ``strict``
    such a scan is refused instead."""
    why = mismatch(expected, voxels, affine)
    if not why:
        return ""
    if strict:
        raise ScanRefused(f"{source}: refused (--strict): {why}")
    return f"{source}: {why}; the labels may be meaningless (--strict refuses such scans)"


def read_training_scans(checkpoint: dict, path: Path) -> TrainingScans | None:
    """A volseg checkpoint's record of its training scans, or the ``training_scans.json`` beside it (the
    built-in models predate the record); None when neither exists."""
    import json

    if checkpoint.get("training_scans"):
        return TrainingScans.from_dict(checkpoint["training_scans"])
    sidecar = Path(path).with_name("training_scans.json")
    if sidecar.is_file():
        return TrainingScans.from_dict(json.loads(sidecar.read_text(encoding="utf-8")))
    return None
