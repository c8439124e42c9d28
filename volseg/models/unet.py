"""U-Net (Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation")."""

from __future__ import annotations

from volseg.models.blocks import DoubleConv
from volseg.models.encoder_decoder import EncoderDecoder
from volseg.models.registry import register_model


@register_model(
    "unet",
    "U-Net: DoubleConv stages, concatenating skips (Ronneberger 2015)",
    features_2d=(32, 64, 128, 256, 512),
)
def unet(
    spatial_dims,
    in_channels,
    out_channels,
    features,
    norm,
    upsample="interp",
    deep_supervision=False,
    init="kaiming",
) -> EncoderDecoder:
    """With (32, 64, 128, 256) it is seed 000's small UNet (BN optional); with (32, ..., 512) and
    BatchNorm its VGG UNet. ``upsample="interp"`` keeps the channels through linear interpolation."""
    return EncoderDecoder(
        spatial_dims,
        in_channels,
        out_channels,
        features,
        DoubleConv,
        norm,
        upsample=upsample,
        deep_supervision=deep_supervision,
        init=init,
    )
