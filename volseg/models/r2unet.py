"""R2U-Net and R2AttU-Net (Alom et al. 2018, "Recurrent Residual Convolutional Neural Network based on
U-Net (R2U-Net) for Medical Image Segmentation")."""

from __future__ import annotations

from functools import partial

from volseg.models.blocks import RRCNNBlock
from volseg.models.encoder_decoder import EncoderDecoder
from volseg.models.registry import register_model


def _recurrent_unet(attention: bool, doc: str):
    """The builder of a recurrent residual U-Net, with or without attention gates: one body for both models."""

    def build(
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
        return EncoderDecoder(
            spatial_dims,
            in_channels,
            out_channels,
            features,
            partial(RRCNNBlock, steps=recurrent_steps),
            norm,
            upsample=upsample,
            project_up=True,
            attention=attention,
            deep_supervision=deep_supervision,
            init=init,
        )

    build.__doc__ = doc
    return build


r2unet = register_model(
    "r2unet", "R2U-Net: recurrent residual conv stages (Alom 2018)", features_2d=(64, 128, 256, 512, 1024)
)(_recurrent_unet(False, "Seed 000's R2U_Net: RRCNN stages (``recurrent_steps`` = t), ``up_conv`` upsampling."))

r2attunet = register_model(
    "r2attunet",
    "R2AttU-Net: recurrent residual stages + attention gates (Alom 2018, Oktay 2018)",
    features_2d=(64, 128, 256, 512, 1024),
)(_recurrent_unet(True, "Seed 000's R2AttU_Net: R2U-Net with an attention gate on every skip."))
