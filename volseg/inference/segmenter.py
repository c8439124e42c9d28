"""What a batch run, the PACS loop and the review page need of a model: :class:`CaseSegmenter`.

volseg's own models (:class:`volseg.inference.zoo_segmenter.ZooSegmenter`), the ROI cascade (:class:`volseg.inference.roi.RoiSegmenter`) and
nnU-Net model folders (:class:`volseg.nnunet.segmenter.NnunetSegmenter`) all implement it, so
:func:`volseg.inference.batch.run_batch` never asks which kind it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from volseg.data.scan_screen import TrainingScans


@dataclass(frozen=True)
class ModelInfo:
    """A model as its outputs describe it."""

    name: str  # in the SEG's algorithm identification and the run's first line
    source: Path  # the checkpoint or model folder
    summary: str  # one phrase for the run's first line, e.g. "unet 3D" or "nnU-Net 3d_fullres, folds 0,1"
    labels: Mapping[int, str]  # label value -> name (foreground only)
    modality: str  # CT or MR: the default series rules and PACS query
    label_colors: Mapping[int, str] | None = None
    label_codes: Mapping[str, Mapping[str, str]] | None = None  # name -> SNOMED CT codes for the SEG
    training_scans: TrainingScans | None = None  # what a scan is screened against before it is segmented


ScanCheck = Callable[[np.ndarray, np.ndarray], None]  # (voxels as read, their RAS affine): warns or refuses


class CaseSegmenter(Protocol):
    info: ModelInfo
    device: torch.device
    backend: str
    precision: str

    def load(self, case, check: ScanCheck | None = None) -> dict:
        """Read and prepare one case (runs in a background thread, overlapping the previous prediction),
        calling ``check`` on the scan as read, before any preprocessing. The dict holds ``image`` (the scan as
        read: its grid is the output's), ``source_image`` and ``timings``."""

    def predict(self, data: dict) -> tuple[np.ndarray, torch.Tensor | None]:
        """The (X, Y, Z) label map on the scan's grid, and class probabilities on it when available."""
