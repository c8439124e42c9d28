"""From what a user types after ``--model`` to a loaded :class:`~volseg.inference.segmenter.CaseSegmenter`.

``totalsegmentator:TASK`` runs a local TotalSegmentator install's part models; a trained nnU-Net v2 folder (``TRAINER__PLANS__CONFIGURATION/`` or the dataset folder holding one) becomes an
:class:`~volseg.nnunet.segmenter.NnunetSegmenter`; anything else is a volseg run folder, checkpoint or built-in
model name. :class:`InferenceOptions` holds the one set of defaults that ``infer``, ``pacs`` and ``demo`` use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from volseg.errors import VolsegError


@dataclass(frozen=True)
class InferenceOptions:
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    backend: str = "auto"  # auto (the fastest installed), torch, onnxruntime, openvino
    precision: str = "auto"  # auto (int8 only where its agreement was measured), fp32, bf16 (native bf16 CPUs), int8
    overlap: float = 0.5  # sliding-window overlap (nnU-Net's tile step is 1 - overlap)
    tta: bool = False  # mirroring test-time augmentation
    keep_largest: bool = False  # keep the largest connected component per label
    folds: tuple[str, ...] | None = None  # nnU-Net: the folds to ensemble (default: every fold present)
    checkpoint: str = "final"  # nnU-Net: checkpoint_final.pth or checkpoint_best.pth


def open_segmenter(
    model: str | Path | None,
    options: InferenceOptions = InferenceOptions(),
    device: torch.device | str | None = None,
    roi: str | None = None,
    locator: Path | None = None,
):
    """The segmenter for ``model`` (None: the default built-in model); ``device`` overrides options.device
    (a torchrun rank's own device). ``roi``: the ROI cascade for that label, its locator model ``locator``
    or the one beside the model."""
    segmenter = _open(model, options, device)
    if roi is None:
        return segmenter
    from volseg.inference.roi import LOCATOR_FILE, RoiSegmenter, locator_beside
    from volseg.inference.zoo_segmenter import ZooSegmenter

    if not isinstance(segmenter, ZooSegmenter):
        raise VolsegError(f"--roi works with volseg models only, not with {segmenter.info.summary}")
    locator = locator or locator_beside(segmenter.checkpoint)
    if locator is None:
        raise FileNotFoundError(
            f"--roi: no locator model beside {segmenter.checkpoint} ({LOCATOR_FILE}); pass --locator"
        )
    coarse = ZooSegmenter(locator, str(segmenter.device), backend=options.backend, precision=options.precision)
    return RoiSegmenter(segmenter, coarse, roi)


def _open(model, options: InferenceOptions, device):
    from volseg.inference.model_spec import read_model_spec
    from volseg.runtime.distributed import resolve_device

    spec = read_model_spec(model)
    device = resolve_device(str(device if device is not None else options.device))  # once, for every family
    if spec.kind == "totalsegmentator":
        from volseg.nnunet.totalseg import TotalSegmentatorSegmenter

        return TotalSegmentatorSegmenter(spec.task, device, options.backend)
    if spec.kind == "nnunet":
        from volseg.nnunet.segmenter import NnunetSegmenter

        return NnunetSegmenter(
            spec.path,
            device,
            tta=options.tta,
            folds=options.folds,
            checkpoint=options.checkpoint,
            keep_largest=options.keep_largest,
            overlap=options.overlap,
            backend=options.backend,
            precision=options.precision,
        )
    if options.folds or options.checkpoint != "final":
        raise VolsegError(
            "--folds and --checkpoint choose among an nnU-Net model folder's checkpoints; "
            f"{model or 'the default model'} is a volseg model"
        )
    from volseg.inference.zoo_segmenter import ZooSegmenter

    return ZooSegmenter(
        spec.path,
        device,
        overlap=options.overlap,
        tta=options.tta,
        keep_largest=options.keep_largest,
        backend=options.backend,
        precision=options.precision,
    )
