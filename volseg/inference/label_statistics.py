"""Per case and label: voxel count, volume in mL, mean, median, standard deviation, minimum and maximum intensity
(HU on CT), border contact. The DICOM SR (:mod:`volseg.dicom.sr`) reports the same figures.

TotalSegmentator's ``--statistics`` is the reference. A batch appends one row per case and label to
``statistics.csv`` beside the run record as each case finishes (a killed run keeps what it wrote), and
``statistics.json`` is rebuilt from that CSV at the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from volseg.data.io import c_contiguous
from volseg.files.atomic import write_csv_atomic, write_text_atomic
from volseg.files.csv_rows import append_durably, read_rows
from volseg.inference.outputs import STATISTICS_CSV, STATISTICS_JSON  # noqa: F401  (named with the other outputs)

COLUMNS = (
    "case_id",
    "label",
    "name",
    "voxels",
    "volume_ml",
    "mean_intensity",
    "median_intensity",
    "std_intensity",
    "min_intensity",
    "max_intensity",
    "touches_border",
)


def voxel_ml(affine: np.ndarray) -> float:
    """The volume of one voxel in mL, from the voxel-to-world affine."""
    return abs(float(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3]))) / 1000.0


def touches_border(mask: np.ndarray) -> bool:
    """Whether the mask reaches a face of the scan (a structure the field of view may have cut)."""
    return any(mask.take(i, axis=a).any() for a in range(mask.ndim) for i in (0, -1))


def label_statistics(
    labels: np.ndarray, image: np.ndarray, affine: np.ndarray, label_names: Mapping[int, str]
) -> list[dict]:
    """One dict per label of ``label_names`` (empty labels included, with zero volume and no intensity)."""
    ml = voxel_ml(affine)
    # masks index fast in C order only: a Fortran-ordered scan (NIfTI as read) is taken transposed, and the
    # (small) label map brought to the same order; no figure below depends on the voxels' order
    if not image.flags.c_contiguous:
        image, labels = image.T, labels.T
    image, labels = np.ascontiguousarray(image), c_contiguous(labels)
    rows = []
    for value, name in sorted(label_names.items()):
        mask = labels == value
        inside = image[mask]  # a copy this function owns: partitioned in place for the median
        voxels = int(inside.size)
        rows.append(
            {
                "label": int(value),
                "name": name,
                "voxels": voxels,
                "volume_ml": round(voxels * ml, 3),
                **{f"{k}_intensity": round(float(v), 2) if voxels else None for k, v in _figures(inside).items()},
                "touches_border": voxels > 0 and touches_border(mask),
            }
        )
    return rows


def _figures(inside: np.ndarray) -> dict:
    """Mean, median, standard deviation, minimum and maximum, accumulated in float64 without a float64 copy of
    the voxels (a liver is millions of them); the median partitions the copy in place, as ``np.median`` would
    partition one of its own."""
    if not inside.size:
        return dict.fromkeys(("mean", "median", "std", "min", "max"), 0.0)
    middle = inside.size // 2
    kth = [middle - 1, middle] if inside.size % 2 == 0 else [middle]
    inside.partition(kth)
    median = np.mean(inside[kth], dtype=np.float64)
    return {
        "mean": inside.mean(dtype=np.float64),
        "median": median,
        "std": inside.std(dtype=np.float64),
        "min": inside.min(),
        "max": inside.max(),
    }


def append_rows(path: Path, case_id: str, rows: list[dict]) -> None:
    """Append one case's rows (header first when the file is new), flushed to disk."""
    append_durably(path, COLUMNS, ({"case_id": case_id, **row} for row in rows))


def merge(parts: list[Path], csv_path: Path, json_path: Path) -> dict:
    """One statistics.csv (rows in case order) and its JSON from the per-rank files; the parts are kept."""
    rows = [row for part in parts if part.exists() for row in read_rows(part)]
    write_csv_atomic(csv_path, COLUMNS, sorted(rows, key=lambda r: r["case_id"]))
    return write_json(csv_path, json_path)


def write_json(csv_path: Path, json_path: Path) -> dict:
    """``{case_id: {label name: {...}}}`` from the CSV (the last row wins for a case written twice)."""
    out: dict[str, dict] = {}
    if csv_path.exists():
        for row in read_rows(csv_path):
            entry = {
                "label": int(row["label"]),
                "voxels": int(row["voxels"]),
                "volume_ml": float(row["volume_ml"]),
                "mean_intensity": float(row["mean_intensity"]) if row["mean_intensity"] else None,
                "median_intensity": float(row["median_intensity"]) if row["median_intensity"] else None,
                "touches_border": row["touches_border"] == "True",
            }
            out.setdefault(row["case_id"], {})[row["name"]] = entry
    write_text_atomic(json_path, json.dumps(out, indent=1))
    return out
