"""Model registry: ``@register_model`` fills a plain dict that is the single source of the CLI's choices."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from volseg.errors import VolsegError
from volseg.models import layers

# Widths used when none are given: the seeds' reference widths in 2D; a compact nnU-Net-like
# pyramid in 3D, where the 2D widths would cost 8x the memory per stage.
DEFAULT_FEATURES_3D = (16, 32, 64, 128, 256)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    features_2d: tuple[int, ...]

    def options(self) -> list[str]:
        """Keyword options the builder accepts beyond the common constructor vocabulary."""
        common = {"spatial_dims", "in_channels", "out_channels", "features", "norm"}
        return [p for p in inspect.signature(self.builder).parameters if p not in common]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, features_2d: Sequence[int]):
    """Register ``builder(spatial_dims, in_channels, out_channels, features, norm, **options)``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelSpec(name, builder, description, tuple(features_2d))
        return builder

    return wrap


def output_channels(n_labels: int) -> int:
    """One sigmoid channel for a single foreground label, else background + one softmax channel each."""
    return 1 if n_labels == 1 else n_labels + 1


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise VolsegError(f"unknown model {name!r}; choose one of {list_models()}") from None


def default_features(name: str, spatial_dims: int) -> tuple[int, ...]:
    spec = get_spec(name)
    return spec.features_2d if layers.check_spatial_dims(spatial_dims) == 2 else DEFAULT_FEATURES_3D


_UNSET = object()


def build_model(
    name: str,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    features: Sequence[int] | None = None,
    norm: str | None = _UNSET,  # type: ignore[assignment]
    **options,
) -> nn.Module:
    """Build a registered model. ``features`` defaults to :func:`default_features`; ``norm`` to
    BatchNorm in 2D and InstanceNorm in 3D (pass ``None`` explicitly for no normalization)."""
    spec = get_spec(name)
    layers.check_spatial_dims(spatial_dims)
    unknown = sorted(set(options) - set(spec.options()))
    if unknown:
        raise VolsegError(f"model {name!r} has no option {unknown[0]!r}; valid options: {spec.options()}")
    if norm is _UNSET:
        norm = layers.default_norm(spatial_dims)
    if norm not in layers.NORMS:
        raise VolsegError(f"norm must be one of {list(layers.NORMS)}, got {norm!r}")
    return spec.builder(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(features) if features is not None else default_features(name, spatial_dims),
        norm=norm,
        **options,
    )


def forward_check(name: str, shape: tuple[int, int, int] = (35, 51, 35)) -> float:
    """One 3D forward pass of ``name`` at its defaults on an odd-sized volume (sizes no pooling divides): the
    seconds it took; a wrong output shape or a non-finite value raises VolsegError."""
    import time

    import torch

    model = build_model(name, spatial_dims=3, in_channels=1, out_channels=2).eval()
    started = time.perf_counter()
    with torch.inference_mode():
        y = model(torch.randn(1, 1, *shape))
    if tuple(y.shape) != (1, 2, *shape) or not torch.isfinite(y).all():
        raise VolsegError(f"{name}: bad forward output {tuple(y.shape)} for input (1, 1, {', '.join(map(str, shape))})")
    return time.perf_counter() - started


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one inference forward pass on a zero input of ``input_shape`` (torch's FlopCounterMode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(input_shape, device=next(model.parameters()).device))
    model.train(was_training)
    return counter.get_total_flops()
