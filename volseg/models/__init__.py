"""The U-Net model zoo. Importing this package registers every family."""

from volseg.models import attunet, r2unet, resunet, unet, unetpp  # noqa: F401  (registration)
from volseg.models.registry import (
    build_model,
    count_parameters,
    default_features,
    forward_flops,
    get_spec,
    list_models,
    register_model,
)

__all__ = [
    "build_model",
    "count_parameters",
    "forward_flops",
    "default_features",
    "get_spec",
    "list_models",
    "register_model",
]
