"""The encoder-decoder skeleton shared by unet, attunet, r2unet, r2attunet and resunet.

The families differ only in their stage block, whether the upsampling path projects to the skip width
(the seeds' ``up_conv``) and whether skips pass through an attention gate; everything else, including
odd-size handling and deep supervision, lives here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from volseg.errors import VolsegError
from volseg.models import layers
from volseg.models.blocks import AttentionGate, UpConv
from volseg.models.weight_init import initialize

# (spatial_dims, in_channels, out_channels, norm) -> stage module
StageBlock = Callable[[int, int, int, "str | None"], nn.Module]


def check_features(features: Sequence[int]) -> tuple[int, ...]:
    features = tuple(int(f) for f in features)
    if len(features) < 2:
        raise VolsegError(f"features needs at least 2 widths (one pooling), got {features!r}")
    return features


def encoder_stages(
    spatial_dims: int, in_channels: int, features: Sequence[int], block: StageBlock, norm: str | None
) -> nn.ModuleList:
    """One stage per width; stage i > 0 runs after a 2x pooling of stage i - 1's output."""
    return nn.ModuleList(
        block(spatial_dims, c_in, c_out, norm) for c_in, c_out in zip((in_channels, *features), features)
    )


class EncoderDecoder(nn.Module):
    """U-shaped network: ``len(features)`` stages, 2x max-pool between them, concatenating skips.

    Output: logits with the input's spatial size. With ``deep_supervision`` in training mode, a list of
    logits from every decoder stage, full resolution first, each at its own stage's resolution.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        block: StageBlock,
        norm: str | None,
        upsample: str = "interp",
        project_up: bool = False,
        attention: bool = False,
        deep_supervision: bool = False,
        init: str | None = "kaiming",
    ):
        super().__init__()
        layers.check_spatial_dims(spatial_dims)
        features = check_features(features)
        self.spatial_dims = spatial_dims
        self.features = features
        self.deep_supervision = deep_supervision

        self.pool = layers.max_pool(spatial_dims)
        self.encoder = encoder_stages(spatial_dims, in_channels, features, block, norm)
        self.up = nn.ModuleList()
        self.gates = nn.ModuleList() if attention else None
        self.decoder = nn.ModuleList()
        for skip, below in zip(features[:-1], features[1:]):  # decoder stage i joins skip i and stage i+1
            up_out = skip if (project_up or upsample == "transpose") else None
            up = UpConv(spatial_dims, below, up_out, mode=upsample, norm=norm)
            self.up.append(up)
            if self.gates is not None:
                self.gates.append(AttentionGate(spatial_dims, up.out_channels, skip, max(skip // 2, 1), norm))
            self.decoder.append(block(spatial_dims, skip + up.out_channels, skip, norm))
        self.head = layers.conv(spatial_dims, features[0], out_channels, kernel_size=1)
        self.aux_heads = (
            nn.ModuleList(layers.conv(spatial_dims, f, out_channels, kernel_size=1) for f in features[1:-1])
            if deep_supervision
            else None
        )
        if init is not None:
            initialize(self, init)

    def _forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Return decoder outputs (full resolution first) and attention maps (full resolution first)."""
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(self.pool(x) if i else x)
            skips.append(x)
        decoded, attention_maps = [], []
        for i in reversed(range(len(self.decoder))):
            skip = skips[i]
            g = self.up[i](x, skip.shape[2:])
            if self.gates is not None:
                skip, psi = self.gates[i](g, skip)
                attention_maps.insert(0, psi)
            x = self.decoder[i](torch.cat([skip, g], dim=1))
            decoded.insert(0, x)
        return decoded, attention_maps

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        decoded, _ = self._forward(x)
        logits = self.head(decoded[0])
        if self.aux_heads is None or not self.training:
            return logits
        return [logits, *(head(d) for head, d in zip(self.aux_heads, decoded[1:]))]

    @property
    def has_attention(self) -> bool:
        return self.gates is not None

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits plus the attention maps of every gate, full resolution first (empty without gates)."""
        decoded, attention_maps = self._forward(x)
        return self.head(decoded[0]), attention_maps
