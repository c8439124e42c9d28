"""``volseg evaluate``: per-case, per-label Dice, HD95, mean surface distance and volumes of predictions
against reference label maps, with a summary (mean, std, median) per label and metric."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volseg.data import io
from volseg.data.case_ids import label_case_id
from volseg.data.manifest import read_manifest
from volseg.evaluation.metrics import label_metrics
from volseg.files.atomic import write_csv_atomic, write_text_atomic

log = logging.getLogger(__name__)
METRICS = ("dice", "hd95", "msd", "volume_pred_ml", "volume_ref_ml")


@dataclass
class Pair:
    case_id: str
    pred: Path
    ref: Path


def pairs_from_manifest(pred_dir: Path, manifest: Path, split: str | None = "test") -> list[Pair]:
    """Predictions ``pred_dir/<case_id>_seg.nii.gz`` (volseg's) or ``<case_id>.nii.gz`` (nnU-Net's) paired with
    the manifest's labels (of ``split``, if set)."""
    return [
        Pair(c.case_id, _prediction(pred_dir, c.case_id), c.label)
        for c in read_manifest(manifest)
        if c.label is not None and (split is None or c.split == split)
    ]


def _prediction(pred_dir: Path, case_id: str) -> Path:
    named = pred_dir / f"{case_id}_seg.nii.gz"
    return named if named.exists() or not (pred_dir / f"{case_id}.nii.gz").exists() else pred_dir / f"{case_id}.nii.gz"


def pairs_from_folder(pred_dir: Path, ref_dir: Path) -> list[Pair]:
    """Predictions and references matched by file name (``<case_id>.nii.gz``, ``_seg`` suffix ignored)."""
    refs = {label_case_id(p): p for p in sorted(ref_dir.glob("*.nii*"))}
    return [Pair(k, p, refs[k]) for p in sorted(pred_dir.glob("*.nii*")) if (k := label_case_id(p)) in refs]


def evaluate(pairs: list[Pair], labels: dict[int, str] | None = None) -> tuple[list[dict], list[str]]:
    """Rows of (case, label, metrics...) and one-line errors for pairs that could not be compared."""
    rows, errors = [], []
    for pair in pairs:
        try:
            pred, ref = io.read_label(pair.pred), io.read_label(pair.ref)
            why = io.grid_mismatch(pred.affine, pred.shape[1:], ref.affine, ref.shape[1:])
            if why:
                raise io.ImageReadError(pair.pred, f"not on the reference's grid ({why})")
            values = labels or {int(v): f"label_{int(v)}" for v in np.unique(ref.numpy()) if v != 0}
            spacing = tuple(float(s) for s in pred.pixdim[:3])
            per_label = label_metrics(pred[0].long(), ref[0].long(), values, spacing)
        except (io.ImageReadError, ValueError) as e:
            errors.append(str(e))
            continue
        for value, metrics in per_label.items():
            rows.append({"case_id": pair.case_id, "label": values[value], "value": value, **metrics})
    return rows, errors


def summarize(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """{label: {metric: {mean, std, median, n}}} over finite values (NaN = undefined, left out and counted)."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        summary[label] = {}
        for metric in METRICS:
            values = [r[metric] for r in rows if r["label"] == label]
            finite = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
            summary[label][metric] = {
                "mean": float(finite.mean()) if finite.size else float("nan"),
                "std": float(finite.std()) if finite.size else float("nan"),
                "median": float(np.median(finite)) if finite.size else float("nan"),
                "n": int(finite.size),
                "undefined": len(values) - int(finite.size),
            }
    return summary


def write_results(rows: list[dict], summary: dict, csv_path: Path) -> Path:
    """Per-case CSV at ``csv_path`` and the summary as JSON beside it; both written atomically."""
    write_csv_atomic(csv_path, ["case_id", "label", "value", *METRICS], rows)
    return write_text_atomic(csv_path.with_suffix(".json"), json.dumps(summary, indent=1))
