"""Segmentation losses: Dice + cross-entropy (softmax, multi-class) or Dice + BCE (sigmoid, binary),
with nnU-Net-style deep-supervision weighting for models that return a list of outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationLoss(nn.Module):
    """Soft Dice + (binary) cross-entropy on logits against an integer label map (B, 1, ...).

    Batch Dice (computed over the whole batch, as nnU-Net does) keeps small structures stable when a
    patch holds little or no foreground.
    """

    def __init__(self, n_labels: int):
        from monai.losses import DiceCELoss  # here: checkpoints and nnU-Net inference use this module without MONAI

        super().__init__()
        self.binary = n_labels == 1
        if self.binary:
            self.loss = DiceCELoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
        else:
            self.loss = DiceCELoss(to_onehot_y=True, softmax=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = (target > 0).float() if self.binary else target.long()
        return self.loss(logits, target)


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """Halve the weight per level, full resolution first, normalized to sum to one."""
    raw = [0.5**i for i in range(n_outputs)]
    return [w / sum(raw) for w in raw]


class DeepSupervisionLoss(nn.Module):
    """Apply ``loss`` to one output, or to each of a list of outputs against the label resized
    (nearest) to that output's size, weighted by :func:`deep_supervision_weights`."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        total = outputs[0].new_zeros(())
        for weight, out in zip(deep_supervision_weights(len(outputs)), outputs):
            resized = (
                target
                if out.shape[2:] == target.shape[2:]
                else F.interpolate(target.float(), size=out.shape[2:], mode="nearest")
            )
            total = total + weight * self.loss(out, resized)
        return total
