"""R2U-Net and R2AttU-Net (Alom et al. 2018, "Recurrent Residual Convolutional Neural Network based on
U-Net (R2U-Net) for Medical Image Segmentation")."""

from __future__ import annotations

from functools import partial

from volseg.models.blocks import RRCNNBlock
from volseg.models.encoder_decoder import EncoderDecoder
from volseg.models.registry import register_model


def _recurrent(
    spatial_dims,
    in_channels,
    out_channels,
    features,
    norm,
    upsample,
    deep_supervision,
    init,
    recurrent_steps,
    attention,
) -> EncoderDecoder:
    block = partial(RRCNNBlock, steps=recurrent_steps)
    return EncoderDecoder(
        spatial_dims,
        in_channels,
        out_channels,
        features,
        block,
        norm,
        upsample=upsample,
        project_up=True,
        attention=attention,
        deep_supervision=deep_supervision,
        init=init,
    )


@register_model(
    "r2unet",
    "R2U-Net: recurrent residual conv stages (Alom 2018)",
    features_2d=(64, 128, 256, 512, 1024),
)
def r2unet(
    spatial_dims,
    in_channels,
    out_channels,
    features,
    norm,
    upsample="interp",
    recurrent_steps=2,
    deep_supervision=False,
    init="kaiming",
) -> EncoderDecoder:
    """Seed 000's R2U_Net: RRCNN stages (``recurrent_steps`` = t), ``up_conv`` upsampling."""
    return _recurrent(
        spatial_dims,
        in_channels,
        out_channels,
        features,
        norm,
        upsample,
        deep_supervision,
        init,
        recurrent_steps,
        attention=False,
    )


@register_model(
    "r2attunet",
    "R2AttU-Net: recurrent residual stages + attention gates (Alom 2018, Oktay 2018)",
    features_2d=(64, 128, 256, 512, 1024),
)
def r2attunet(
    spatial_dims,
    in_channels,
    out_channels,
    features,
    norm,
    upsample="interp",
    recurrent_steps=2,
    deep_supervision=False,
    init="kaiming",
) -> EncoderDecoder:
    """Seed 000's R2AttU_Net: R2U-Net with an attention gate on every skip."""
    return _recurrent(
        spatial_dims,
        in_channels,
        out_channels,
        features,
        norm,
        upsample,
        deep_supervision,
        init,
        recurrent_steps,
        attention=True,
    )
