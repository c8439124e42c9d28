"""nnU-Net checkpoints read without running pickled code.

nnU-Net itself loads ``checkpoint_final.pth`` with ``weights_only=False``: a planted checkpoint would run any
code on load. Here it is ``torch.load(weights_only=True)`` with the few numpy types that real nnU-Net
checkpoints hold (numpy float scalars in its training log and best-EMA Dice); anything else is refused with
one line naming the file and the type.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch

from volseg.errors import VolsegError


def _allowed_globals() -> list:
    """numpy scalars as numpy 1.x and 2.x pickle them (the reconstructor, ``dtype`` and its dtype classes)."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    kinds = [np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_]
    return [scalar, np.dtype, *(type(np.dtype(k)) for k in kinds)]


def load_nnunet_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict; ``network_weights`` is checked to be a state dict of tensors."""
    path = Path(path)
    if not path.is_file():
        raise VolsegError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = found[1] if found else str(e).strip().splitlines()[0][:120]
        raise VolsegError(
            f"{path}: refused, it holds {what}; only tensors, plain data and numpy scalars are read "
            "(other objects can run code when loaded)"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise VolsegError(f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0][:160]})") from None
    weights = payload.get("network_weights") if isinstance(payload, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise VolsegError(f"{path}: not an nnU-Net checkpoint (no 'network_weights' state dict)")
    return payload
