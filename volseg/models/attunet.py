"""Attention U-Net (Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the Pancreas")."""

from __future__ import annotations

from volseg.models.blocks import DoubleConv
from volseg.models.encoder_decoder import EncoderDecoder
from volseg.models.registry import register_model


@register_model(
    "attunet",
    "Attention U-Net: additive attention gate on every skip (Oktay 2018)",
    features_2d=(64, 128, 256, 512, 1024),
)
def attunet(
    spatial_dims,
    in_channels,
    out_channels,
    features,
    norm,
    upsample="interp",
    deep_supervision=False,
    init="kaiming",
) -> EncoderDecoder:
    """Seed 000's AttU_Net: DoubleConv stages, ``up_conv`` (upsample + conv3-norm-ReLU to the skip
    width), gate(g=upsampled decoder, x=skip) with F_int = skip width / 2, concat, DoubleConv.
    Use ``model.forward_with_attention(x)`` to get the gates' maps."""
    return EncoderDecoder(
        spatial_dims,
        in_channels,
        out_channels,
        features,
        DoubleConv,
        norm,
        upsample=upsample,
        project_up=True,
        attention=True,
        deep_supervision=deep_supervision,
        init=init,
    )
