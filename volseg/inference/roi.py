"""Region-of-interest cascade for single-structure work (TotalSegmentator's ``--roi_subset``).

A small locator model at coarse spacing segments the whole scan cheaply; the structure's box, widened by a
margin in millimetres, is cut from the scan as read (no resampling of the rest), and the fine model runs on
that box alone. The fine labels of the structure go back into a label map of the whole scan's grid; the
other labels are left out (the box cuts through them). When the locator finds nothing, the fine model runs
on the whole scan and the run record says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from volseg.errors import VolsegError
from volseg.inference.segmenter import ScanCheck

MARGIN_MM = 20.0  # around the located box: the locator's 6 mm voxels blur the boundary by a voxel or two
LOCATOR_FILE = "locator.pt"  # beside a model's checkpoint: the locator its recipe trained


@dataclass(frozen=True)
class Box:
    """Voxel index ranges [start, stop) on the source grid, per spatial axis."""

    start: tuple[int, ...]
    stop: tuple[int, ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    def voxels(self) -> int:
        return math.prod(b - a for a, b in zip(self.start, self.stop))

    def contains(self, mask: np.ndarray) -> bool:
        """Whether every non-zero voxel of ``mask`` (source grid) lies inside the box."""
        inside = np.zeros(mask.shape, bool)
        inside[self.slices] = True
        return not bool((mask.astype(bool) & ~inside).any())


def locate(
    labels: np.ndarray, value: int, affine: np.ndarray, margin_mm: float = MARGIN_MM, min_extent_mm=(0.0, 0.0, 0.0)
) -> Box | None:
    """The box of ``labels == value`` widened by ``margin_mm`` on each side and to at least ``min_extent_mm``
    per axis (centred, shifted to stay inside the scan), or None when there is no such voxel."""
    found = np.argwhere(labels == value)
    if found.size == 0:
        return None
    shape = np.asarray(labels.shape)
    spacing = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    pad = np.ceil(margin_mm / spacing).astype(int)
    start, stop = np.maximum(found.min(0) - pad, 0), np.minimum(found.max(0) + 1 + pad, shape)
    short = np.maximum(np.ceil(np.asarray(min_extent_mm, float) / spacing).astype(int) - (stop - start), 0)
    start, stop = start - short // 2, stop + short - short // 2
    shift = np.maximum(-start, 0) - np.maximum(stop - shape, 0)  # a widened box stays inside the scan
    start, stop = np.maximum(start + shift, 0), np.minimum(stop + shift, shape)
    return Box(tuple(int(v) for v in start), tuple(int(v) for v in stop))


def crop_source(image: MetaTensor, box: Box) -> MetaTensor:
    """The box of a scan as read, presented as a scan of its own: its origin moved to the box's corner."""
    affine = np.asarray(image.meta["original_affine"], dtype=np.float64).copy()
    affine[:3, 3] = affine[:3, :3] @ np.asarray(box.start, float) + affine[:3, 3]
    array = image.as_tensor()[(slice(None), *box.slices)].clone()
    meta = {k: v for k, v in image.meta.items() if k not in ("affine", "nifti_header")}
    meta.update(original_affine=affine, spatial_shape=np.asarray(array.shape[1:]))
    return MetaTensor(array, affine=torch.as_tensor(affine), meta=meta)


def locator_beside(model_path: str | Path) -> Path | None:
    """The locator shipped or trained beside a model (``locator.pt`` in its folder), if there is one."""
    path = Path(model_path)
    folder = path if path.is_dir() else path.parent
    found = folder / LOCATOR_FILE
    return found if found.is_file() else None


class RoiSegmenter:
    """The fine :class:`~volseg.inference.zoo_segmenter.ZooSegmenter` run on the box a locator finds for one label.

    Same interface as ZooSegmenter for :func:`~volseg.inference.batch.run_batch`: ``load`` reads the scan once (the
    locator's preprocessing runs on it then, overlapping the previous case), ``predict`` returns the label
    map on the whole scan's grid, holding only the chosen label. ``data["note"]`` says where it ran.
    """

    def __init__(self, fine, locator, label: str, margin_mm: float = MARGIN_MM):
        names = {name: value for value, name in fine.cfg.data.labels.items()}
        if label not in names:
            raise VolsegError(f"--roi {label!r}: the model has no such label; it has {', '.join(names)}")
        located = {name: value for value, name in locator.cfg.data.labels.items()}
        if label not in located:
            raise VolsegError(f"--roi {label!r}: the locator has no such label; it has {', '.join(located)}")
        self.fine, self.locator, self.label, self.margin_mm = fine, locator, label, margin_mm
        self.value, self.locator_value = names[label], located[label]
        # the fine network never sees less than one window of context (a padded window is not what it learnt)
        patch = fine.cfg.sampling.patch_size_3d if fine.cfg.model.dims == 3 else [0, 0, 0]
        self.min_extent_mm = np.asarray(patch, float) * np.asarray(fine.cfg.preprocess.spacing or [0, 0, 0], float)
        # what run_batch and the CLI read from a segmenter
        self.cfg, self.checkpoint, self.device = fine.cfg, fine.checkpoint, fine.device
        self.backend, self.precision, self.model_name = fine.backend, fine.precision, fine.model_name
        self.model = fine.model
        self.info = fine.info

    def load(self, case, check: ScanCheck | None = None) -> dict:
        started = time.perf_counter()
        raw = self.fine.read(case)
        if check is not None:
            check(raw["image"].numpy(), raw["image"].meta["original_affine"])
        read = time.perf_counter()
        coarse = self.locator.chain({"image": raw["image"].clone()})
        return {
            "source_image": raw["image"],
            "image": raw["image"],
            "coarse": coarse,
            "timings": {"read": read - started, "locate_preprocess": time.perf_counter() - read},
        }

    def predict(self, data: dict) -> tuple[np.ndarray, None]:
        timings = data["timings"]
        started = time.perf_counter()
        coarse_labels, _ = self.locator.predict(data.pop("coarse"))
        source = data["source_image"]
        box = locate(
            coarse_labels, self.locator_value, source.meta["original_affine"], self.margin_mm, self.min_extent_mm
        )
        timings["locate"] = time.perf_counter() - started
        if box is None:
            data["note"] = f"roi {self.label}: the locator found nothing; the whole scan was segmented"
            part = {"image": source.clone()}
        else:
            data["note"] = f"roi {self.label}: box {list(box.start)}-{list(box.stop)} of {list(source.shape[1:])}"
            part = {"image": crop_source(source, box)}
        prepared = self.fine.chain(part)
        prepared["timings"] = timings
        fine_labels, _ = self.fine.predict(prepared, split_sides=False)  # a box has no midline of its own
        labels = np.zeros(tuple(source.shape[1:]), dtype=fine_labels.dtype)
        region = box.slices if box is not None else tuple(slice(None) for _ in range(3))
        labels[region] = fine_labels
        labels = self.fine.split_sides(labels, source)
        labels[labels != self.value] = 0
        data["box"] = box
        return labels, None
