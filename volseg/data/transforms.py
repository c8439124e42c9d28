"""MONAI transform chains: loading, invertible per-modality preprocessing, 2D/3D sampling, augmentation.

The deterministic part (load -> reorient -> resample -> [crop] -> normalize) ends before the first random
transform, so MONAI's Cache/PersistentDataset store it once and an epoch never resamples again. Every
spatial step is invertible: :func:`to_source_grid` maps a prediction back onto the scan's own grid.
"""

from __future__ import annotations

import numpy as np
import torch
from monai import transforms as mt
from monai.data import MetaTensor

from volseg.config import Config
from volseg.data import io
from volseg.data.resample import SeparableResample
from volseg.errors import VolsegError

KEYS = ("image", "label")
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # volseg.data.io always returns RAS affines
_IMAGE_INTERP = {"bilinear": "bilinear", "bicubic": 3}  # 3: cubic spline (scipy backend)


class LoadCased(mt.MapTransform):
    """Read ``image`` (a list of channel paths) and optional ``label`` into MetaTensors via volseg.data.io,
    mapping label values through ``label_remap`` (unlisted values become background) when given."""

    def __init__(self, label_remap: dict[int, int] | None = None, cfg: Config | None = None) -> None:
        super().__init__(KEYS, allow_missing_keys=True)
        self.label_remap = label_remap
        self.limits = resampling_limits(cfg) if cfg is not None else {}

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        d["image"] = io.read_channels(d["image"], **self.limits)
        if d.get("label"):
            d["label"] = remap_labels(io.read_label(d["label"]), self.label_remap)
        else:
            d.pop("label", None)
        return d


def resampling_limits(cfg: Config) -> dict:
    """read_image's arguments that refuse, from the header, a scan this config's resampling would blow up."""
    p = cfg.preprocess
    return {"resample_to": p.spacing, "max_resampled_voxels": p.max_resampled_voxels} if p.spacing else {}


def remap_labels(label: torch.Tensor, remap: dict[int, int] | None) -> torch.Tensor:
    if not remap:
        return label
    out = torch.zeros_like(label)
    for source, target in remap.items():
        out[label == source] = target
    return out


def _normalization(cfg: Config) -> mt.Transform:
    p = cfg.preprocess
    if p.normalization == "zscore":
        return mt.NormalizeIntensityd("image", channel_wise=True)
    if p.normalization == "ct":
        if not p.ct_clip:
            raise VolsegError("preprocess.normalization 'ct' needs preprocess.ct_clip (run `volseg plan`)")
        lo, hi = p.ct_clip
        return mt.ScaleIntensityRanged(
            "image", a_min=lo, a_max=hi, b_min=(lo - p.ct_mean) / p.ct_std, b_max=(hi - p.ct_mean) / p.ct_std, clip=True
        )
    if p.normalization == "window":
        if not p.hu_window:
            raise VolsegError("preprocess.normalization 'window' needs preprocess.hu_window [low, high]")
        lo, hi = p.hu_window
        return mt.ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=-1.0, b_max=1.0, clip=True)
    raise VolsegError(f"preprocess.normalization must be one of ['zscore', 'ct', 'window'], got {p.normalization!r}")


CROP_MARGIN_VOXELS = 4
BODY_HU = -500  # above air and lung parenchyma, below every soft tissue


def body_mask_fn(cfg: Config):
    """What ``crop_foreground`` keeps: the body (HU above -500) for CT, non-zero voxels otherwise
    (skull-stripped or cropped MRI). For a CT the air around the patient is about half of a 512x512
    field of view; skipping it saves that share of the network's work, and inversion pads it back as
    background."""
    if cfg.preprocess.normalization in ("ct", "window"):
        return lambda x: x > BODY_HU
    return lambda x: x != 0


def window_aligned_box(box_start, box_end, shape, roi_size, overlap: float) -> tuple[list[int], list[int]]:
    """Widen a crop box to the sliding windows (MONAI's grid on the uncropped ``shape``) that touch it.

    Sliding-window inference on the widened crop then runs exactly the windows the uncropped volume
    would run over the box, with the same Gaussian weights, so every voxel inside the box gets the
    same probabilities: the crop skips air without changing a label inside the body. A dimension no
    longer than its window is not cropped (MONAI pads it to one window either way).
    """
    start, end = [], []
    for lo, hi, size, roi in zip(box_start, box_end, shape, roi_size):
        lo, hi, size, roi = int(lo), int(hi), int(size), int(roi)
        if size <= roi:
            start.append(0), end.append(size)
            continue
        step = max(int(roi * (1 - overlap)), 1)  # monai.inferers.utils._get_scan_interval
        windows = [min(k * step, size - roi) for k in range(-(-(size - roi) // step) + 1)]
        touching = [w for w in windows if w < hi and w + roi > lo]
        start.append(min(touching)), end.append(max(touching) + roi)
    return start, end


class CropBodyd(mt.CropForegroundd):
    """CropForegroundd whose box is widened to whole sliding windows (see :func:`window_aligned_box`)."""

    def __init__(self, select_fn, roi_size, overlap: float) -> None:
        super().__init__(
            KEYS,
            source_key="image",
            select_fn=select_fn,
            margin=CROP_MARGIN_VOXELS,
            allow_smaller=True,
            allow_missing_keys=True,
        )
        box = self.cropper.compute_bounding_box

        def aligned(img):
            lo, hi = box(img)
            return tuple(np.asarray(b) for b in window_aligned_box(lo, hi, img.shape[1:], roi_size, overlap))

        self.cropper.compute_bounding_box = aligned


def preprocess(cfg: Config, window_overlap: float | None = None) -> mt.Compose:
    """Deterministic preprocessing of a case dict (label optional); every spatial step is invertible.

    ``window_overlap``: the sliding-window overlap inference will use; a 3D model's body crop is then
    aligned to the windows so that it cannot change a label inside the body.
    """
    p = cfg.preprocess
    steps: list = [mt.Orientationd(KEYS, axcodes=p.orientation, labels=RAS_LABELS, allow_missing_keys=True)]
    if p.spacing is not None:
        if p.image_interp not in _IMAGE_INTERP:
            raise VolsegError(f"preprocess.image_interp must be one of {list(_IMAGE_INTERP)}, got {p.image_interp!r}")
        spacing = mt.Spacingd(
            KEYS,
            pixdim=p.spacing,
            mode=(_IMAGE_INTERP[p.image_interp], "nearest"),
            dtype=np.float32,
            allow_missing_keys=True,
        )
        resample = spacing.spacing_transform.sp_resample  # its inverse maps predictions back: make it fast
        spacing.spacing_transform.sp_resample = SeparableResample(
            mode=resample.mode,
            padding_mode=resample.padding_mode,
            align_corners=resample.align_corners,
            dtype=resample.dtype,
        )
        steps.append(spacing)
    if p.crop_foreground and window_overlap is not None and cfg.model.dims == 3:
        steps.append(CropBodyd(body_mask_fn(cfg), cfg.sampling.patch_size_3d, window_overlap))
    elif p.crop_foreground:
        steps.append(
            mt.CropForegroundd(
                KEYS,
                source_key="image",
                select_fn=body_mask_fn(cfg),
                margin=CROP_MARGIN_VOXELS,
                allow_smaller=True,
                allow_missing_keys=True,
            )
        )
    steps.append(_normalization(cfg))
    steps.append(mt.EnsureTyped(KEYS, dtype=torch.float32, allow_missing_keys=True))
    return mt.Compose(steps)


def load_and_preprocess(cfg: Config) -> mt.Compose:
    return mt.Compose([LoadCased(cfg.data.label_remap, cfg), preprocess(cfg)])


class FoldSlicesToChannelsd(mt.MapTransform):
    """(C, X, Y, S) crop with the slice axis last -> image (C*S, X, Y), label = centre slice (1, X, Y)."""

    def __init__(self) -> None:
        super().__init__(KEYS, allow_missing_keys=True)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        image = d["image"]
        d["image"] = torch.as_tensor(image).movedim(-1, 1).reshape(-1, *image.shape[1:3])
        if "label" in d:
            label = torch.as_tensor(d["label"])
            d["label"] = label[..., label.shape[-1] // 2]
        return d


class MoveAxisLastd(mt.MapTransform):
    """Put the planned slice axis last so 2D samples are crops of thickness 2k+1 along it."""

    def __init__(self, axis: int) -> None:
        super().__init__(KEYS, allow_missing_keys=True)
        self.axis = axis

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = torch.as_tensor(d[key]).movedim(1 + self.axis, -1)
        return d


def _augmentations(cfg: Config, spatial_dims: int) -> list:
    a = cfg.augment
    steps: list = []
    if a.rotate_scale:
        steps.append(
            mt.RandAffined(
                KEYS,
                prob=a.spatial_prob,
                rotate_range=[np.deg2rad(15)] * (1 if spatial_dims == 2 else 3),
                scale_range=[a.scale] * spatial_dims,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            )
        )
    flip_axes = (range(spatial_dims) if a.flip else ()) if isinstance(a.flip, bool) else a.flip
    for axis in flip_axes:
        steps.append(mt.RandFlipd(KEYS, prob=0.5, spatial_axis=axis))
    if a.intensity:
        steps += [
            mt.RandScaleIntensityd("image", factors=0.15, prob=0.15),
            mt.RandShiftIntensityd("image", offsets=0.1, prob=0.15),
        ]
    if a.gamma:
        steps.append(mt.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.15))
    if a.noise:
        steps.append(mt.RandGaussianNoised("image", std=0.1, prob=0.1))
    return steps


def training_samples(cfg: Config, spatial_dims: int) -> mt.Compose:
    """Random part of the training chain: foreground-oversampled patches (3D) or slices (2D), augmented.

    A ``foreground_fraction`` of the samples is centred on a foreground voxel (nnU-Net's oversampling);
    the rest are centred anywhere in the volume.
    """
    s = cfg.sampling
    fg = s.foreground_fraction
    if spatial_dims == 3:
        size = list(s.patch_size_3d)
        steps: list = [mt.SpatialPadd(KEYS, spatial_size=size)]
    else:
        size = [*s.patch_size_2d, 2 * s.context_slices + 1]
        steps = [MoveAxisLastd(s.slice_axis), mt.SpatialPadd(KEYS, spatial_size=size)]
        if s.context_slices:
            steps.append(mt.BorderPadd(KEYS, spatial_border=[0, 0, s.context_slices]))
    steps.append(
        mt.RandCropByPosNegLabeld(
            KEYS,
            label_key="label",
            spatial_size=size,
            pos=fg,
            neg=1 - fg,
            num_samples=s.samples_per_volume if spatial_dims == 3 else s.slices_per_volume,
        )
    )
    if spatial_dims == 2:
        steps.append(FoldSlicesToChannelsd())
    steps += _augmentations(cfg, spatial_dims)
    steps.append(mt.EnsureTyped(KEYS, dtype=torch.float32, track_meta=False))
    return mt.Compose(steps)


def to_source_grid(
    prediction: torch.Tensor, preprocessed_image: MetaTensor, preprocessing: mt.Compose, nearest: bool = False
) -> MetaTensor:
    """Invert ``preprocessing`` on a (C, ...) prediction made on ``preprocessed_image``'s grid.

    Probabilities go back with linear interpolation (``nearest=False``), label maps with nearest.
    The result has the source scan's shape and ``affine``.
    """
    pred = MetaTensor(
        torch.as_tensor(prediction).float(),
        meta=dict(preprocessed_image.meta),
        applied_operations=list(preprocessed_image.applied_operations),
    )
    inverter = mt.Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=nearest)
    return inverter({"pred": pred, "image": preprocessed_image})["pred"]
