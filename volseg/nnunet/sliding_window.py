"""nnU-Net's sliding window (``nnUNetPredictor.predict_sliding_window_return_logits``), reproduced.

The image is padded (centred, zeros) to at least one patch; tiles start at ``compute_steps_for_sliding_window``'s
positions for a step of half a patch; each tile's logits (averaged over mirror images when asked) are
weighted by a Gaussian of sigma 1/8 patch, scaled to peak 10, and summed, like the weights, in float16, then
divided. Folds are summed in float16 and divided by their count. Keeping nnU-Net's float16 accumulation is
what makes the labels agree voxel for voxel where the logits of two classes are close.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

Network = Callable[[torch.Tensor], torch.Tensor]  # (1, C, *patch) -> (1, K, *patch) logits, float32


@lru_cache(maxsize=4)
def gaussian(patch: tuple[int, ...]) -> torch.Tensor:
    """``compute_gaussian(patch, sigma_scale=1/8, value_scaling_factor=10)`` in float16."""
    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    weights = gaussian_filter(impulse, [p / 8 for p in patch], 0, mode="constant", cval=0)
    weights /= np.max(weights) / 10
    weights = torch.from_numpy(weights).to(torch.float16)
    weights[weights == 0] = torch.min(weights[weights != 0])
    return weights


def steps(image_size: Sequence[int], patch: Sequence[int], step: float = 0.5) -> list[list[int]]:
    """``compute_steps_for_sliding_window``: evenly spread tile starts, the last one flush with the end."""
    out = []
    for size, tile in zip(image_size, patch):
        n = int(np.ceil((size - tile) / (tile * step))) + 1
        stride = (size - tile) / (n - 1) if n > 1 else 99999999999
        out.append([int(np.round(stride * i)) for i in range(n)])
    return out


def pad_to_patch(data: torch.Tensor, patch: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """``pad_nd_image(data, patch, 'constant', value=0)``: centred, the odd voxel after; and the slicer back."""
    spatial = data.shape[-len(patch) :]
    below, above = [], []
    for size, tile in zip(spatial, patch):
        missing = max(tile - size, 0)
        below.append(missing // 2)
        above.append(missing // 2 + missing % 2)
    if not any(below) and not any(above):
        return data, tuple(slice(None) for _ in spatial)
    pad = [p for b, a in zip(reversed(below), reversed(above)) for p in (b, a)]
    padded = torch.nn.functional.pad(data, pad, mode="constant", value=0)
    return padded, tuple(slice(b, b + s) for b, s in zip(below, spatial))


def mirrored(network: Network, axes: Sequence[int] | None) -> Network:
    """``_internal_maybe_mirror_and_predict``: the mean over every non-empty combination of flips of
    ``axes`` (spatial axes, 0-based) and the unflipped tile."""
    if not axes:
        return network
    dims = [a + 2 for a in axes]
    combos = [c for r in range(len(dims)) for c in itertools.combinations(dims, r + 1)]

    def run(x: torch.Tensor) -> torch.Tensor:
        total = network(x)
        for flip in combos:
            total += torch.flip(network(torch.flip(x, flip)), flip)
        return total / (len(combos) + 1)

    return run


def tiles(shape: Sequence[int], patch: Sequence[int], step: float = 0.5) -> list[tuple[slice, ...]]:
    """Spatial slicers of every tile; a 2D patch on a 3D image tiles each slice of the first axis."""
    if len(patch) < len(shape):
        starts = steps(shape[1:], patch, step)
        return [
            (d, *[slice(s, s + t) for s, t in zip(corner, patch)])
            for d in range(shape[0])
            for corner in itertools.product(*starts)
        ]
    return [
        tuple(slice(s, s + t) for s, t in zip(corner, patch))
        for corner in itertools.product(*steps(shape, patch, step))
    ]


def predict_logits(
    data: torch.Tensor, networks: Sequence[Network], patch: Sequence[int], heads: int, step: float = 0.5
) -> torch.Tensor:
    """Float16 logits (K, *spatial) of a preprocessed (C, *spatial) image, averaged over ``networks`` (folds)."""
    patch = tuple(int(p) for p in patch)
    padded, unpad = pad_to_patch(data, patch)
    shape = tuple(padded.shape[1:])
    weights = gaussian(patch)
    total = None
    for network in networks:
        logits = torch.zeros((heads, *shape), dtype=torch.half)
        counts = torch.zeros(shape, dtype=torch.half)
        for tile in tiles(shape, patch, step):
            window = padded[(slice(None), *tile)]  # a 2d tile's slice index drops out here
            prediction = network(window[None].contiguous())[0] * weights
            logits[(slice(None), *tile)] += prediction
            counts[tile] += weights
        torch.div(logits, counts, out=logits)
        total = logits if total is None else total.add_(logits)
    if len(networks) > 1:
        total /= len(networks)
    return total[(slice(None), *(slice(None),) * (len(shape) - len(unpad)), *unpad)]
