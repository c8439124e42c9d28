"""The one place that maps ``spatial_dims`` to concrete torch layers.

Every block and model asks this module for its convolution, normalization, pooling and
interpolation mode, so the whole zoo serves 2D and 3D from one code path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPATIAL_DIMS = (2, 3)
NORMS = ("batch", "instance", None)

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_MAX_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_LINEAR_INTERP = {2: "bilinear", 3: "trilinear"}

# For code that must recognise layers of any dimension (weight init, export).
CONV_TYPES = (*_CONV.values(), *_CONV_TRANSPOSE.values())
NORM_TYPES = (*_BATCH_NORM.values(), *_INSTANCE_NORM.values())


def check_spatial_dims(spatial_dims: int) -> int:
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Module:
    """A 'same'-padded convolution with bias (the seeds keep the bias even before BatchNorm)."""
    cls = _CONV[check_spatial_dims(spatial_dims)]
    return cls(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def conv_transpose(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """Kernel-2 stride-2 transposed convolution: doubles every spatial size."""
    return _CONV_TRANSPOSE[check_spatial_dims(spatial_dims)](in_channels, out_channels, 2, stride=2)


def norm(kind: str | None, spatial_dims: int, channels: int) -> nn.Module:
    """BatchNorm, affine InstanceNorm (as nnU-Net uses for small 3D batches) or nothing."""
    check_spatial_dims(spatial_dims)
    if kind == "batch":
        return _BATCH_NORM[spatial_dims](channels)
    if kind == "instance":
        return _INSTANCE_NORM[spatial_dims](channels, affine=True)
    if kind is None:
        return nn.Identity()
    raise ValueError(f"norm must be one of {list(NORMS)}, got {kind!r}")


def default_norm(spatial_dims: int) -> str:
    """BatchNorm for 2D (the reference models); InstanceNorm for 3D, where batches hold 1-2 patches."""
    return "batch" if check_spatial_dims(spatial_dims) == 2 else "instance"


def max_pool(spatial_dims: int) -> nn.Module:
    """2x max pooling; ceil_mode keeps odd sizes (and size 1) from shrinking to nothing."""
    return _MAX_POOL[check_spatial_dims(spatial_dims)](kernel_size=2, stride=2, ceil_mode=True)


def interpolate(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Linear (bi/trilinear) resize of a feature map to an exact spatial size."""
    mode = _LINEAR_INTERP[check_spatial_dims(x.dim() - 2)]
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def match_size(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad or crop the trailing edge of every spatial axis so ``x`` has exactly ``size``."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    pad: list[int] = []
    for have, want in reversed(list(zip(x.shape[2:], size))):
        pad += [0, max(want - have, 0)]
    x = F.pad(x, pad)
    index = (slice(None), slice(None)) + tuple(slice(0, s) for s in size)
    return x[index]
