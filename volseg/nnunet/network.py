"""The network of an nnU-Net configuration, built with ``dynamic_network_architectures`` as nnU-Net builds it.

nnU-Net locates ``architecture.network_class_name`` and the ``_kw_requires_import`` entries with
``pydoc.locate``, which imports whatever module a plans file names. Here only the U-Nets of
``dynamic_network_architectures`` and layer classes of ``torch.nn`` are accepted, looked up by name.
"""

from __future__ import annotations

from torch import nn

from volseg.nnunet.model_folder import ModelFolder, NnunetFolderError

INSTALL = "pip install --no-deps dynamic-network-architectures  (its timm extra is not needed; ./setup.sh does this)"


def _unet_classes() -> dict:
    try:
        from dynamic_network_architectures.architectures import unet
    except ImportError:
        raise NnunetFolderError(f"nnU-Net models need dynamic_network_architectures: {INSTALL}") from None
    return {
        "PlainConvUNet": unet.PlainConvUNet,
        "ResidualEncoderUNet": unet.ResidualEncoderUNet,
        "ResidualUNet": unet.ResidualUNet,
    }


def _torch_class(dotted: str, source) -> type:
    name = dotted.rsplit(".", 1)[-1]
    found = getattr(nn, name, None)
    if not (dotted.startswith("torch.nn") and isinstance(found, type) and issubclass(found, nn.Module)):
        raise NnunetFolderError(f"{source}: {dotted!r} is not a torch.nn layer; only torch.nn layers are built")
    return found


def build_network(model: ModelFolder) -> nn.Module:
    """The configuration's network (no deep supervision), weights of the first fold loaded, in eval mode."""
    architecture = model.configuration["architecture"]
    source = model.path / "plans.json"
    class_name = architecture["network_class_name"].rsplit(".", 1)[-1]
    classes = _unet_classes()
    if class_name not in classes:
        raise NnunetFolderError(
            f"{source}: network {architecture['network_class_name']!r} is not supported "
            f"(supported: {', '.join(classes)})"
        )
    kwargs = dict(architecture["arch_kwargs"])
    for key in architecture.get("_kw_requires_import", ()):
        if kwargs.get(key) is not None:
            kwargs[key] = _torch_class(kwargs[key], source)
    kwargs["deep_supervision"] = False
    network = classes[class_name](input_channels=model.channels, num_classes=model.labels.heads, **kwargs)
    load_weights(network, model.weights[0], model.checkpoints[0])
    return network.eval()


def load_weights(network: nn.Module, weights: dict, source) -> None:
    try:
        network.load_state_dict(weights)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:200]
        raise NnunetFolderError(f"{source}: weights do not fit the network the plans describe ({first})") from None
