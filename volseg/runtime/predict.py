"""Whole-volume prediction on a preprocessed image: the one predictor shared by validation and inference.

3D models run MONAI's sliding-window inference with Gaussian blending; 2D models run batched slice-wise
along the planned slice axis (with the same neighbouring-slice channels as in training). Mirroring
test-time augmentation averages over every flip of the spatial axes.

What is blended and averaged are the logits, and softmax (sigmoid for one channel) comes once at the end, as
nnU-Net and MONAI's ``sliding_window_inference`` do: blending probabilities instead was the whole of volseg's
disagreement with MONAI on the abdominal CT (right kidney Dice 0.9885 between the two;
benchmarks/whole_volume.py measures it).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from volseg.config import Config
from volseg.errors import VolsegError

log = logging.getLogger(__name__)
Network = Callable[[torch.Tensor], torch.Tensor]  # a batch (B, C, ...) -> per-voxel maps (B, K, ...)


def autocast(device: torch.device):
    """fp16 autocast on CUDA only: CPUs without native bf16 run reduced precision far slower than fp32."""
    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()


def activate(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def _sliding_window(
    network: Network, image: torch.Tensor, cfg: Config, device: torch.device, overlap: float, sw_batch_size: int
) -> torch.Tensor:
    from monai.inferers import sliding_window_inference  # here: nnU-Net folders use this module without MONAI

    def run(stitch_device: torch.device) -> torch.Tensor:
        with autocast(device):
            return sliding_window_inference(
                image[None],
                roi_size=cfg.sampling.patch_size_3d,
                sw_batch_size=sw_batch_size,
                predictor=network,
                overlap=overlap,
                mode="gaussian",
                sw_device=device,
                device=stitch_device,
            )[0]

    if device.type != "cuda":
        return run(device)
    try:
        return run(device)
    except torch.cuda.OutOfMemoryError:
        log.warning("CUDA out of memory while stitching; retrying with the stitching buffer on the CPU")
        torch.cuda.empty_cache()
        return run(torch.device("cpu"))


def _slice_wise(
    network: Network, image: torch.Tensor, cfg: Config, device: torch.device, batch_size: int
) -> torch.Tensor:
    axis, k = cfg.sampling.slice_axis, cfg.sampling.context_slices
    volume = image.movedim(1 + axis, 1)  # (C, S, H, W)
    padded = F.pad(volume, (0, 0, 0, 0, k, k)) if k else volume
    n_slices = volume.shape[1]
    outputs = []
    for start in range(0, n_slices, batch_size):
        stop = min(start + batch_size, n_slices)
        stacks = torch.stack([padded[:, i : i + 2 * k + 1].reshape(-1, *volume.shape[2:]) for i in range(start, stop)])
        with autocast(device):
            outputs.append(network(stacks.to(device)).cpu())
    probs = torch.cat(outputs)  # (S, K, H, W)
    return probs.movedim(0, 1).movedim(1, 1 + axis)


def mirror_axes(cfg: Config) -> list[int]:
    """The volume axes (0-2) the model was trained mirrored along: test-time mirroring uses only those, as
    nnU-Net does. A model never shown a mirrored patient (e.g. one with left/right labels) answers a
    mirrored one with nonsense, and averaging it in would wipe out its labels."""
    in_plane = [0, 1, 2] if cfg.model.dims == 3 else [a for a in range(3) if a != cfg.sampling.slice_axis]
    flip = cfg.augment.flip
    trained = range(len(in_plane)) if flip is True else () if flip is False else flip
    return [in_plane[i] for i in trained]


def predict_probabilities(
    model: nn.Module,
    image: torch.Tensor,
    cfg: Config,
    device: torch.device,
    overlap: float = 0.5,
    tta: bool = False,
    batch_size: int | None = None,
    network: Network | None = None,
    activation: Callable[[torch.Tensor], torch.Tensor] | None = activate,
) -> torch.Tensor:
    """Class probabilities (K, X, Y, Z) for a preprocessed (C, X, Y, Z) image, on the CPU.

    ``network`` replaces the default batch -> logits function (a backend's engine). ``activation`` turns the
    blended logits into probabilities; None keeps the blended maps as they are (attention maps).
    ``tta`` averages the mirror images along :func:`mirror_axes` (2^n passes).
    """
    model.eval()
    network = network or (lambda x: model(x).float())
    image = torch.as_tensor(image).float()
    spatial_dims = cfg.model.dims
    flips = [()]
    if tta:
        axes = [a + 1 for a in mirror_axes(cfg)]  # tensor dims: channel first
        flips = [f for r in range(len(axes) + 1) for f in itertools.combinations(axes, r)]
    total = None
    with torch.inference_mode():
        for flip in flips:
            x = image.flip(flip) if flip else image
            if spatial_dims == 3:
                probs = _sliding_window(network, x, cfg, device, overlap, batch_size or cfg.sampling.batch_size_3d)
            else:
                probs = _slice_wise(network, x, cfg, device, batch_size or max(cfg.sampling.batch_size_2d, 16))
            probs = probs.cpu().flip(flip) if flip else probs.cpu()
            total = probs if total is None else total + probs
        total = total / len(flips)
        return activation(total[None])[0] if activation is not None else total


def attention_network(model: nn.Module) -> Network:
    """The full-resolution attention gate's map, for models that expose ``forward_with_attention``."""
    if not getattr(model, "has_attention", False):
        raise VolsegError(f"{type(model).__name__} has no attention gates; attention maps need attunet or r2attunet")
    return lambda x: model.forward_with_attention(x)[1][0].float()  # blended as they are: activation=None


def probabilities_to_labels(probs: torch.Tensor) -> torch.Tensor:
    """(K, ...) probabilities -> (...) integer labels: threshold 0.5 for one sigmoid channel, else argmax
    (the first class on ties, as ``argmax``). Computed as a running maximum over the K channel planes:
    ``argmax(0)`` reduces across the outermost, strided axis and took 4.3 s for 5 x 512x512x129 here."""
    probs = torch.as_tensor(probs)
    if probs.shape[0] == 1:
        return (probs[0] > 0.5).to(torch.int64)
    best, labels = probs[0].clone(), torch.zeros(probs.shape[1:], dtype=torch.int64)
    for k in range(1, probs.shape[0]):
        higher = probs[k] > best
        labels[higher] = k
        torch.maximum(best, probs[k], out=best)
    return labels
