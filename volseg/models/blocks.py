"""Building blocks of the U-Net zoo; each takes ``spatial_dims`` first and serves 2D and 3D alike."""

from __future__ import annotations

import torch
from torch import nn

from volseg.errors import VolsegError
from volseg.models import layers


class ConvNormAct(nn.Sequential):
    """conv3 -> norm -> ReLU, the unit every seed architecture is made of."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: str | None):
        super().__init__(
            layers.conv(spatial_dims, in_channels, out_channels),
            layers.norm(norm, spatial_dims, out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """(conv3 -> norm -> ReLU) x 2: the U-Net stage (seed 000 DoubleConv / VGGBlock / conv_block)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: str | None):
        super().__init__(
            ConvNormAct(spatial_dims, in_channels, out_channels, norm),
            ConvNormAct(spatial_dims, out_channels, out_channels, norm),
        )


class UpConv(nn.Module):
    """Upsample a decoder map onto its skip's grid.

    ``mode="interp"``: linear interpolation to the skip's exact size, followed, when ``out_channels``
    is given, by conv3 -> norm -> ReLU (the seeds' ``up_conv``). ``mode="transpose"``: a kernel-2
    stride-2 transposed conv to ``out_channels`` (or ``in_channels``), then pad/crop to the skip's size.
    Resizing to the skip's size, rather than by a fixed factor, is what lets any input size through.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int | None = None,
        mode: str = "interp",
        norm: str | None = None,
    ):
        super().__init__()
        if mode not in ("interp", "transpose"):
            raise VolsegError(f"upsample must be one of ['interp', 'transpose'], got {mode!r}")
        self.mode = mode
        self.out_channels = out_channels or in_channels
        if mode == "transpose":
            self.op: nn.Module = layers.conv_transpose(spatial_dims, in_channels, self.out_channels)
        elif out_channels is not None:
            self.op = ConvNormAct(spatial_dims, in_channels, out_channels, norm)
        else:
            self.op = nn.Identity()

    def forward(self, x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        if self.mode == "transpose":
            return layers.match_size(self.op(x), size)
        return self.op(layers.interpolate(x, size))


class AttentionGate(nn.Module):
    """Additive attention gate of Oktay et al. 2018 ("Attention U-Net: Learning Where to Look for the
    Pancreas"): psi = sigmoid(norm(conv1(ReLU(W_g g + W_x x)))); the skip passed on is x * psi.

    ``g`` is the decoder feature and ``x`` the encoder skip, both on the skip's grid.
    Returns the gated skip and the attention map psi (one channel) for inspection.
    """

    def __init__(
        self,
        spatial_dims: int,
        gate_channels: int,
        skip_channels: int,
        inter_channels: int,
        norm: str | None,
    ):
        super().__init__()

        def project(in_channels: int, out_channels: int) -> nn.Sequential:
            return nn.Sequential(
                layers.conv(spatial_dims, in_channels, out_channels, kernel_size=1),
                layers.norm(norm, spatial_dims, out_channels),
            )

        self.w_g = project(gate_channels, inter_channels)
        self.w_x = project(skip_channels, inter_channels)
        self.psi = nn.Sequential(project(inter_channels, 1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        psi = self.psi(self.relu(self.w_g(g) + self.w_x(x)))
        return x * psi, psi


class RecurrentBlock(nn.Module):
    """Recurrent convolution of R2U-Net (Alom et al. 2018): y = f(x), then ``steps`` times y = f(x + y),
    with one shared f = conv3 -> norm -> ReLU."""

    def __init__(self, spatial_dims: int, channels: int, norm: str | None, steps: int = 2):
        super().__init__()
        if steps < 1:
            raise VolsegError(f"recurrent_steps must be >= 1, got {steps!r}")
        self.steps = steps
        self.conv = ConvNormAct(spatial_dims, channels, channels, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        for _ in range(self.steps):
            y = self.conv(x + y)
        return y


class RRCNNBlock(nn.Module):
    """Recurrent residual stage of R2U-Net: 1x1 conv to the stage width, two recurrent blocks,
    and a residual add of the 1x1 output."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: str | None, steps: int = 2):
        super().__init__()
        self.project = layers.conv(spatial_dims, in_channels, out_channels, kernel_size=1)
        self.recurrent = nn.Sequential(
            RecurrentBlock(spatial_dims, out_channels, norm, steps),
            RecurrentBlock(spatial_dims, out_channels, norm, steps),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        return x + self.recurrent(x)


class ResidualBlock(nn.Module):
    """Residual unit (He et al. 2016) as seed 002 intends it: conv3 -> norm -> ReLU -> conv3 -> norm,
    plus a shortcut (1x1 conv + norm where the width changes), added, then ReLU."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: str | None):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, out_channels, norm),
            layers.conv(spatial_dims, out_channels, out_channels),
            layers.norm(norm, spatial_dims, out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                layers.conv(spatial_dims, in_channels, out_channels, kernel_size=1),
                layers.norm(norm, spatial_dims, out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class NestedNode(nn.Module):
    """UNet++ node X(i, j) (Zhou et al. 2018): DoubleConv over the concatenation of the same-level
    nodes X(i, 0..j-1) and the upsampled X(i+1, j-1)."""

    def __init__(
        self,
        spatial_dims: int,
        level_channels: int,
        below_channels: int,
        index: int,
        norm: str | None,
        upsample: str = "interp",
    ):
        super().__init__()
        up_out = level_channels if upsample == "transpose" else None
        self.up = UpConv(spatial_dims, below_channels, up_out, mode=upsample, norm=norm)
        self.conv = DoubleConv(spatial_dims, index * level_channels + self.up.out_channels, level_channels, norm)

    def forward(self, same_level: list[torch.Tensor], below: torch.Tensor) -> torch.Tensor:
        up = self.up(below, same_level[0].shape[2:])
        return self.conv(torch.cat([*same_level, up], dim=1))
