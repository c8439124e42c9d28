"""ONNX export of a network, and the per-checkpoint ONNX cache that the ONNX Runtime and OpenVINO backends
and the int8 quantizer read from.

A file is exported once per weights file (content hash) and torch version, into volseg's cache; the
backends (:mod:`volseg.runtime.backends`) and the quantizer (:mod:`volseg.runtime.quantize`) both sit above this module.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from volseg.config import Config
from volseg.errors import VolsegError
from volseg.files.atomic import atomic_path
from volseg.runtime.cache import cache_folder, file_digest

log = logging.getLogger(__name__)


def installed(name: str) -> bool:
    """Is the optional package ``name`` importable here?"""
    return importlib.util.find_spec(name) is not None


def example_input(cfg: Config) -> torch.Tensor:
    """A (1, C, patch) input of the shape the model was trained on (for export and warm-up)."""
    dims = cfg.model.dims
    channels = cfg.data.in_channels * (2 * cfg.sampling.context_slices + 1 if dims == 2 else 1)
    patch = cfg.sampling.patch_size_3d if dims == 3 else cfg.sampling.patch_size_2d
    return torch.randn(1, channels, *patch)


def export_onnx(model: nn.Module, cfg: Config, path: str | Path) -> Path:
    """ONNX with dynamic batch and spatial sizes (the zoo takes any size), written atomically."""
    x = example_input(cfg)
    dim = torch.export.Dim
    return export_onnx_for(
        model, x, path, {"x": {0: dim("batch"), **{2 + i: dim(f"size{i}") for i in range(x.dim() - 2)}}}
    )


def export_onnx_for(model: nn.Module, example: torch.Tensor, path: str | Path, dynamic_shapes=None) -> Path:
    """ONNX of ``model`` traced on ``example`` (its shape fixed unless ``dynamic_shapes`` frees axes), atomically."""
    missing = [m for m in ("onnx", "onnxscript") if not installed(m)]
    if missing:
        raise VolsegError(f"ONNX export needs {missing}: pip install 'volseg[onnxruntime]' or 'volseg[openvino]'")
    path = Path(path)
    # torch's exporter warns about its own internals (a pytree deprecation, torchvision ops no zoo or nnU-Net
    # network uses): nothing a volseg user can act on, so none of it is printed
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)", FutureWarning)
        torch.onnx.export(
            model.eval().cpu(),
            (example,),
            str(tmp),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
        )
    return path


def cached_onnx(weights: Path, tag: str, export: Callable[[Path], Path]) -> Path:
    """The ONNX file of a weights file (content hash) and ``tag`` in volseg's cache, exported once."""
    digest = file_digest(weights)[:16]
    cache = cache_folder() / "onnx"
    path = cache / f"{digest}{tag}-torch{torch.__version__.split('+')[0]}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX (%s), once", weights, path)
        export(path)
    return path


def checkpoint_onnx(model: nn.Module, cfg: Config, checkpoint: Path) -> Path:
    """The ONNX file of a volseg checkpoint's network (dynamic batch and spatial sizes), exported once."""
    return cached_onnx(checkpoint, "", lambda path: export_onnx(model, cfg, path))
