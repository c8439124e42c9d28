"""Overlap and surface metrics per label.

Empty-mask convention (the same for every metric): when neither the reference nor the prediction holds a
label, Dice is 1 and the surface distances are 0 (nothing to find, nothing found); when exactly one of
them is empty, Dice is 0 and the surface distances are NaN (undefined), reported as such, never as 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np
import torch


def dice(pred: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> float:
    """Dice of two boolean masks, 2|A∩B| / (|A| + |B|), with the empty-mask convention above."""
    pred, ref = torch.as_tensor(pred).bool(), torch.as_tensor(ref).bool()
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((pred & ref).sum()) / total


def dice_per_label(
    pred: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor, labels: Iterable[int]
) -> dict[int, float]:
    pred, ref = torch.as_tensor(pred), torch.as_tensor(ref)
    return {label: dice(pred == label, ref == label) for label in labels}


def mean_finite(values: Iterable[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _surface_metrics(pred: torch.Tensor, ref: torch.Tensor, spacing: tuple[float, ...]) -> tuple[float, float]:
    """(HD95, mean symmetric surface distance) in mm, computed by MONAI's surface-distance code."""
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
    )

    p, r = pred[None, None].float(), ref[None, None].float()
    with warnings.catch_warnings():  # MONAI 1.5+ warns about an internal argument of its own
        warnings.simplefilter("ignore", FutureWarning)
        hd95 = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(spacing))
        msd = compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=list(spacing))
    return float(hd95), float(msd)


def label_metrics(
    pred: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor, labels: Iterable[int], spacing: tuple[float, ...]
) -> dict[int, dict[str, float]]:
    """Dice, HD95 (mm), mean surface distance (mm) and volumes (mL) per label, with the empty-mask convention."""
    pred, ref = torch.as_tensor(pred), torch.as_tensor(ref)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    results = {}
    for label in labels:
        p, r = pred == label, ref == label
        n_pred, n_ref = int(p.sum()), int(r.sum())
        if n_pred and n_ref:
            hd95, msd = _surface_metrics(p, r, spacing)
        elif not n_pred and not n_ref:
            hd95, msd = 0.0, 0.0
        else:
            hd95, msd = float("nan"), float("nan")
        results[label] = {
            "dice": dice(p, r),
            "hd95": hd95,
            "msd": msd,
            "volume_pred_ml": n_pred * voxel_ml,
            "volume_ref_ml": n_ref * voxel_ml,
        }
    return results
