"""Overlap and surface metrics per label.

Empty-mask convention (the same for every metric): when neither the reference nor the prediction holds a
label, Dice is 1 and the surface distances are 0 (nothing to find, nothing found); when exactly one of
them is empty, Dice is 0 and the surface distances are NaN (undefined), reported as such, never as 0.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch


def dice(pred: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> float:
    """Dice of two boolean masks, 2|A∩B| / (|A| + |B|), with the empty-mask convention above."""
    pred, ref = torch.as_tensor(pred).bool(), torch.as_tensor(ref).bool()
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((pred & ref).sum()) / total


def dice_per_label(pred: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor,
                   labels: Iterable[int]) -> dict[int, float]:
    pred, ref = torch.as_tensor(pred), torch.as_tensor(ref)
    return {label: dice(pred == label, ref == label) for label in labels}


def mean_finite(values: Iterable[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
