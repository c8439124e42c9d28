"""volseg's own models (the zoo, trained by ``volseg train``) as a :class:`~volseg.inference.segmenter.CaseSegmenter`:
the checkpoint loaded once with the preprocessing it was trained with, one case segmented at a time."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from volseg.data.io import label_dtype
from volseg.data.scan_screen import read_training_scans
from volseg.dicom.archive import DicomSeries
from volseg.errors import VolsegError
from volseg.inference.inputs import CaseInput
from volseg.inference.segmenter import ModelInfo, ScanCheck
from volseg.runtime.backends import make_backend
from volseg.runtime.distributed import resolve_device
from volseg.runtime.postprocess import keep_largest_component, split_at_midline
from volseg.runtime.predict import attention_network, mirror_axes, predict_probabilities, probabilities_to_labels


class ZooSegmenter:
    """A loaded model plus the preprocessing it was trained with; segments one case at a time."""

    def __init__(
        self,
        model_path: str | Path,
        device: str = "auto",
        overlap: float = 0.5,
        tta: bool = False,
        keep_largest: bool = False,
        backend: str = "torch",
        precision: str = "fp32",
    ):
        # MONAI (volseg.runtime.checkpoint, volseg.data.transforms) is imported by volseg's own models only: nnU-Net
        # folders run without it, and its import is 2.5 s of a single case's start-up
        from volseg.data.transforms import LoadCased, preprocess
        from volseg.runtime.checkpoint import load_checkpoint, model_from_payload, resolve_checkpoint

        self.device = resolve_device(str(device))  # a --device string, or a device open_model resolved
        self.checkpoint = resolve_checkpoint(model_path)
        payload = load_checkpoint(self.checkpoint)  # once: the model and the record of its training scans
        self.model, self.cfg = model_from_payload(payload, self.checkpoint, self.device)
        self.training_scans = read_training_scans(payload, self.checkpoint)
        path = Path(model_path)
        self.model_name = path.parent.name if path.name in ("model.pt", "best.pt", "last.pt") else path.stem
        engine = make_backend(backend, self.model, self.cfg, self.device, self.checkpoint, precision)
        self.backend, self.precision = engine.name, engine.precision
        self.network = engine.forward  # logits: predict_probabilities blends them, then activates
        self.batch_size = engine.window_batch if self.cfg.model.dims == 3 else None
        self.reader = LoadCased(self.cfg.data.label_remap, self.cfg)
        self.chain = preprocess(self.cfg, window_overlap=overlap)
        if tta and not mirror_axes(self.cfg):
            raise VolsegError(
                f"--tta: {self.checkpoint} was trained without mirroring (augment.flip: false), so "
                "it has no mirror images to average; run without --tta"
            )
        self.overlap, self.tta, self.keep_largest = overlap, tta, keep_largest
        self.label_values = sorted(self.cfg.data.labels)

    @property
    def mirror_axes(self) -> tuple[int, ...]:
        """The axes --tta mirrors along (empty: the model was trained without mirroring)."""
        return tuple(mirror_axes(self.cfg))

    @property
    def info(self) -> ModelInfo:
        data = self.cfg.data
        return ModelInfo(
            self.model_name,
            Path(self.checkpoint),
            f"{self.cfg.model.name} {self.cfg.model.dims}D",
            dict(data.labels),
            data.modality,
            data.label_colors,
            data.label_codes,
            self.training_scans,
        )

    def read(self, case: CaseInput) -> dict:
        """The case's scan as read (``{"image": (C, X, Y, Z)}`` on its source grid), nothing preprocessed."""
        return self.reader({"image": [p if isinstance(p, DicomSeries) else str(p) for p in case.images]})

    def load(self, case: CaseInput, check: ScanCheck | None = None) -> dict:
        """Read and preprocess (the part that overlaps with the previous case's prediction). ``source_image``
        keeps the scan as read, for statistics and QC pictures (preprocessing may work in place);
        ``timings`` collects the case's seconds per stage (read, preprocess, then :meth:`predict`'s).
        ``check`` sees the scan as read, before any preprocessing (see :mod:`volseg.data.scan_screen`)."""
        started = time.perf_counter()
        raw = self.read(case)
        if check is not None:
            check(raw["image"].numpy(), raw["image"].meta["original_affine"])
        source = raw["image"].clone()
        read = time.perf_counter()
        data = self.chain(raw)
        data["source_image"] = source
        data["timings"] = {"read": read - started, "preprocess": time.perf_counter() - read}
        return data

    def predict(self, data: dict, split_sides: bool = True) -> tuple[np.ndarray, torch.Tensor]:
        """Label map (X, Y, Z) on the source grid, and the class probabilities on that grid. Adds network,
        stitching (the sliding window's own work), invert and postprocess seconds to ``data["timings"]``
        (on CUDA, network time is launch time: kernels run asynchronously). ``split_sides``: apply the
        config's ``data.split_at_midline`` (off for a part of a scan, whose midline is not the body's)."""
        from volseg.data.transforms import to_source_grid

        image = data["image"]
        timings = data.setdefault("timings", {})
        network_seconds = 0.0

        def network(x: torch.Tensor) -> torch.Tensor:
            nonlocal network_seconds
            start = time.perf_counter()
            out = self.network(x)
            network_seconds += time.perf_counter() - start
            return out

        started = time.perf_counter()
        probs = predict_probabilities(
            self.model,
            image,
            self.cfg,
            self.device,
            overlap=self.overlap,
            tta=self.tta,
            batch_size=self.batch_size,
            network=network,
        )
        windows = time.perf_counter()
        probs = to_source_grid(probs, image, self.chain)
        inverted = time.perf_counter()
        classes = probabilities_to_labels(torch.as_tensor(probs)).numpy()
        lookup = np.array([0, *self.label_values], dtype=label_dtype(max(self.info.labels, default=0)))
        labels = lookup[classes]  # one sigmoid channel gives classes 0 and 1 too
        if split_sides and self.cfg.data.split_at_midline:
            labels = self.split_sides(labels, data["source_image"])
        if self.keep_largest:
            labels = keep_largest_component(labels, self.label_values)
        timings.update(
            network=network_seconds,
            stitching=windows - started - network_seconds,
            invert=inverted - windows,
            postprocess=time.perf_counter() - inverted,
        )
        return labels, torch.as_tensor(probs)

    def split_sides(self, labels: np.ndarray, source) -> np.ndarray:
        """``data.split_at_midline`` applied to a label map on the grid of ``source`` (the scan as read)."""
        from volseg.data.transforms import body_mask_fn

        if not self.cfg.data.split_at_midline:
            return labels
        return split_at_midline(
            labels,
            source[0].numpy(),
            np.asarray(source.meta["original_affine"]),
            self.cfg.data.split_at_midline,
            body_mask_fn(self.cfg),
        )

    def attention(self, data: dict) -> np.ndarray:
        """The first attention gate's map (X, Y, Z) on the source grid (attention models only)."""
        from volseg.data.transforms import to_source_grid

        image = data["image"]
        maps = predict_probabilities(
            self.model,
            image,
            self.cfg,
            self.device,
            overlap=self.overlap,
            network=attention_network(self.model),
            activation=None,
        )
        return to_source_grid(maps, image, self.chain)[0].numpy()
