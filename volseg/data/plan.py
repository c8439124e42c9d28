"""Dataset fingerprint -> preprocessing and sampling plan, in the spirit of nnU-Net's experiment planning.

The fingerprint (spacings, shapes, foreground intensity statistics, label set and class frequencies) is
measured on the data as it will be trained: reoriented to the canonical orientation, not yet resampled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from monai import transforms as mt

from volseg.config import Config
from volseg.data.manifest import Case
from volseg.data.transforms import RAS_LABELS, LoadCased
from volseg.errors import VolsegError

ANISOTROPY_RATIO = 3.0  # nnU-Net: an axis this many times coarser than the others is "low resolution"
FOREGROUND_SAMPLES_PER_CASE = 10_000
CT_MIN_HU = -500.0  # images whose minimum is below this are taken for CT (air is ~ -1000 HU)


@dataclass
class Fingerprint:
    spacings: list[list[float]]
    shapes: list[list[int]]
    image_min: float
    foreground_intensity: dict[str, float]  # mean, std, median, p00_5, p99_5, min, max
    label_values: list[int]
    class_voxels: dict[int, int]
    n_cases: int

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Fingerprint:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["class_voxels"] = {int(k): v for k, v in data["class_voxels"].items()}
        return cls(**data)


def fingerprint(
    cases: Sequence[Case], orientation: str = "RAS", seed: int = 0, label_remap: dict[int, int] | None = None
) -> Fingerprint:
    """Measure the labeled cases (reoriented, native spacing, labels remapped as training will see them)."""
    load = mt.Compose(
        [
            LoadCased(label_remap),
            mt.Orientationd(["image", "label"], axcodes=orientation, labels=RAS_LABELS, allow_missing_keys=True),
        ]
    )
    rng = np.random.default_rng(seed)
    spacings, shapes, samples, image_min, class_voxels = [], [], [], math.inf, {}
    labeled = [c for c in cases if c.label is not None]
    if not labeled:
        raise VolsegError("fingerprint needs labeled cases; the manifest has none")
    for case in labeled:
        d = load({"image": list(case.images), "label": case.label})
        image, label = d["image"].numpy(), d["label"].numpy()[0].astype(np.int64)
        spacings.append([float(s) for s in d["image"].pixdim[:3]])
        shapes.append([int(s) for s in image.shape[1:]])
        image_min = min(image_min, float(image.min()))
        values, counts = np.unique(label, return_counts=True)
        for v, n in zip(values.tolist(), counts.tolist()):
            class_voxels[v] = class_voxels.get(v, 0) + n
        foreground = image[0][label > 0]
        if foreground.size:
            take = min(FOREGROUND_SAMPLES_PER_CASE, foreground.size)
            samples.append(rng.choice(foreground, take, replace=False))
    fg = np.concatenate(samples) if samples else np.zeros(1, np.float32)
    stats = {
        "mean": float(fg.mean()),
        "std": float(fg.std()),
        "median": float(np.median(fg)),
        "p00_5": float(np.percentile(fg, 0.5)),
        "p99_5": float(np.percentile(fg, 99.5)),
        "min": float(fg.min()),
        "max": float(fg.max()),
    }
    return Fingerprint(
        spacings, shapes, image_min, stats, sorted(class_voxels), dict(sorted(class_voxels.items())), len(labeled)
    )


def target_spacing(spacings: np.ndarray) -> list[float]:
    """Median spacing; for strongly anisotropic data the coarse axis takes its 10th percentile instead
    (nnU-Net's rule), so thin-slice scans are not thrown away by resampling to the typical thick slice."""
    target = np.median(spacings, axis=0)
    coarse = int(np.argmax(target))
    others = np.delete(target, coarse)
    if target[coarse] > ANISOTROPY_RATIO * others.max():
        target[coarse] = max(np.percentile(spacings[:, coarse], 10), others.max())
    return [round(float(s), 4) for s in target]


def _round_up(size: float, multiple: int) -> int:
    return max(multiple, int(math.ceil(size / multiple)) * multiple)


def bytes_per_voxel(features: Sequence[int], spatial_dims: int) -> float:
    """Rough fp32 training memory per input voxel: ~12 stored activations per stage width, each stage
    having 2^-d of the previous stage's voxels. Calibrated loosely on the zoo's U-Nets."""
    return 4.0 * sum(12 * f / (2**spatial_dims) ** level for level, f in enumerate(features))


def fit_patch(
    median_shape: Sequence[float], features: Sequence[int], budget_bytes: float, min_batch: int = 2
) -> list[int]:
    """Smallest multiple of 2^pools covering the median case, shrunk along its longest axis until
    ``min_batch`` patches fit the memory budget."""
    multiple = 2 ** (len(features) - 1)
    patch = [_round_up(s, multiple) for s in median_shape]
    per_voxel = bytes_per_voxel(features, len(patch))
    while math.prod(patch) * min_batch * per_voxel > budget_bytes and max(patch) > multiple:
        axis = int(np.argmax(patch))
        patch[axis] -= multiple
    return patch


def fit_batch(
    patch: Sequence[int], features: Sequence[int], budget_bytes: float, dataset_voxels: float, max_batch: int
) -> int:
    """As many patches as the budget holds, at least 2, and at most ~5% of the dataset per step."""
    per_sample = math.prod(patch) * bytes_per_voxel(features, len(patch))
    by_memory = int(budget_bytes // per_sample)
    by_data = int(0.05 * dataset_voxels // math.prod(patch))
    return int(np.clip(min(by_memory, by_data), 2, max_batch))


def plan(
    fp: Fingerprint,
    base: Config,
    widths: dict[int, Sequence[int]],
    memory_budget_gb: float = 4.0,
    modality: str = "auto",
    label_names: dict[int, str] | None = None,
) -> Config:
    """Turn a fingerprint into a config (``base`` with data, preprocess and sampling filled).

    ``widths`` gives the channel widths per level of the model ``base`` configures, for 2 and 3 spatial
    dims: patch and batch are sized for the network that will train on them (the caller resolves the
    model's defaults, so the data layer never depends on the model zoo)."""
    cfg = base
    budget = memory_budget_gb * 2**30
    spacings = np.asarray(fp.spacings)
    target = target_spacing(spacings)
    resampled = np.asarray(fp.shapes) * spacings / np.asarray(target)
    median_shape = np.median(resampled, axis=0)

    features_3d, features_2d = widths[3], widths[2]
    dataset_voxels = float(np.prod(resampled, axis=1).sum())
    s = cfg.sampling
    s.patch_size_3d = fit_patch(median_shape, features_3d, budget)
    s.batch_size_3d = fit_batch(s.patch_size_3d, features_3d, budget, dataset_voxels, max_batch=16)

    coarse = int(np.argmax(target))
    s.slice_axis = coarse if target[coarse] > ANISOTROPY_RATIO * min(target) else 2
    in_plane = [median_shape[a] for a in range(3) if a != s.slice_axis]
    s.patch_size_2d = fit_patch(in_plane, features_2d, budget)
    s.batch_size_2d = fit_batch(s.patch_size_2d, features_2d, budget, dataset_voxels, max_batch=64)

    if modality == "auto":
        modality = "CT" if fp.image_min < CT_MIN_HU else "MR"
    if modality not in ("CT", "MR"):
        raise VolsegError(f"modality must be one of ['auto', 'CT', 'MR'], got {modality!r}")
    p = cfg.preprocess
    p.spacing = target
    if modality == "CT":
        fi = fp.foreground_intensity
        p.normalization = "ct"
        p.ct_clip = [fi["p00_5"], fi["p99_5"]]
        p.ct_mean, p.ct_std = fi["mean"], max(fi["std"], 1e-6)
    else:
        p.normalization = "zscore"
    cfg.data.modality = modality
    names = label_names or {}
    cfg.data.labels = {v: names.get(v, f"label_{v}") for v in fp.label_values if v != 0}
    return cfg
