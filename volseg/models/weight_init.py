"""Weight initialization schemes of seed 000's ``init_weights``."""

from __future__ import annotations

from torch import nn

from volseg.errors import VolsegError
from volseg.models import layers

INITS = ("normal", "xavier", "kaiming", "orthogonal")


def initialize(model: nn.Module, scheme: str, gain: float = 0.02) -> None:
    """Conv/linear weights from the named scheme, biases 0; norm scales normal(1, gain), shifts 0."""
    if scheme not in INITS:
        raise VolsegError(f"init must be one of {list(INITS)}, got {scheme!r}")
    for m in model.modules():
        if isinstance(m, (*layers.CONV_TYPES, nn.Linear)):
            if scheme == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif scheme == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, layers.NORM_TYPES) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
