"""Residual U-Net: U-Net whose stages are residual units (seed 002 and seed 000's last section)."""

from __future__ import annotations

from volseg.models.blocks import ResidualBlock
from volseg.models.encoder_decoder import EncoderDecoder
from volseg.models.registry import register_model


@register_model(
    "resunet",
    "Residual U-Net: residual-unit stages, concatenating skips (Zhang 2018)",
    features_2d=(64, 128, 256, 512, 1024),
)
def resunet(
    spatial_dims,
    in_channels,
    out_channels,
    features,
    norm,
    upsample="interp",
    deep_supervision=False,
    init="kaiming",
) -> EncoderDecoder:
    """U-Net with every encoder and decoder stage a residual unit (He et al. 2016, "Deep Residual
    Learning"; as a U-Net: Zhang, Liu & Wang 2018, "Road Extraction by Deep Residual U-Net"):
    conv3-norm-ReLU-conv3-norm plus a 1x1-projected shortcut, added, ReLU; skips still concatenate.

    This implements the intent of seed 002's ``UNetWithResidualConnections``, whose code cannot run:
    every encoder stage takes ``n_channels`` inputs, and its residual blocks' widths do not match the
    decoder's. Here each stage's residual unit maps its true input width to the stage width.
    """
    return EncoderDecoder(
        spatial_dims,
        in_channels,
        out_channels,
        features,
        ResidualBlock,
        norm,
        upsample=upsample,
        deep_supervision=deep_supervision,
        init=init,
    )
