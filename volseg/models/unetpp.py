"""UNet++ (Zhou et al. 2018, "UNet++: A Nested U-Net Architecture for Medical Image Segmentation")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from volseg.models import layers
from volseg.models.blocks import DoubleConv, NestedNode
from volseg.models.encoder_decoder import check_features, encoder_stages
from volseg.models.registry import register_model
from volseg.models.weight_init import initialize


class NestedUNet(nn.Module):
    """Nested U-Net: node X(i, j) joins X(i, 0..j-1) with the upsampled X(i+1, j-1) (seeds 000, 004).

    Output: the last head, on X(0, L-1). With ``deep_supervision`` every X(0, j) has a 1x1 head; in
    training mode the model returns all of them, the deepest-nested (final) head first, then
    X(0, L-2) ... X(0, 1), all at full resolution. In eval mode it returns the final head alone.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        norm: str | None,
        upsample: str = "interp",
        deep_supervision: bool = False,
        init: str | None = "kaiming",
    ):
        super().__init__()
        layers.check_spatial_dims(spatial_dims)
        features = check_features(features)
        self.spatial_dims = spatial_dims
        self.depth = len(features)
        self.deep_supervision = deep_supervision
        self.pool = layers.max_pool(spatial_dims)
        self.encoder = encoder_stages(spatial_dims, in_channels, features, DoubleConv, norm)
        # nodes[f"{i}_{j}"] for j >= 1, i + j < depth
        self.nodes = nn.ModuleDict(
            {
                f"{i}_{j}": NestedNode(spatial_dims, features[i], features[i + 1], j, norm, upsample)
                for j in range(1, self.depth)
                for i in range(self.depth - j)
            }
        )
        n_heads = self.depth - 1 if deep_supervision else 1
        self.heads = nn.ModuleList(
            layers.conv(spatial_dims, features[0], out_channels, kernel_size=1) for _ in range(n_heads)
        )
        if init is not None:
            initialize(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        grid: list[list[torch.Tensor]] = []  # grid[i][j] = X(i, j)
        for i, stage in enumerate(self.encoder):
            x = stage(self.pool(x) if i else x)
            grid.append([x])
            for j in range(1, i + 1):  # the new column this encoder level unlocks, bottom-up
                level = i - j
                grid[level].append(self.nodes[f"{level}_{j}"](grid[level], grid[level + 1][j - 1]))
        top = grid[0]  # X(0, 0..L-1)
        if not self.deep_supervision:
            return self.heads[0](top[-1])
        # heads[k] sits on X(0, k + 1); return the final one first.
        outputs = [head(node) for head, node in zip(self.heads, top[1:])][::-1]
        return outputs if self.training else outputs[0]


@register_model(
    "unetpp",
    "UNet++: nested dense skip pathways, optional deep supervision (Zhou 2018)",
    features_2d=(32, 64, 128, 256, 512),
)
def unetpp(
    spatial_dims,
    in_channels,
    out_channels,
    features,
    norm,
    upsample="interp",
    deep_supervision=False,
    init="kaiming",
) -> NestedUNet:
    """Seed 000's NestedUNet: VGG (DoubleConv) nodes, linear upsampling, 1x1 heads."""
    return NestedUNet(
        spatial_dims,
        in_channels,
        out_channels,
        features,
        norm,
        upsample=upsample,
        deep_supervision=deep_supervision,
        init=init,
    )
