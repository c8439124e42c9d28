"""Checkpoints: atomic writes, safe loads (``weights_only=True``), and rebuilding a model from a run.

A checkpoint carries everything prediction needs (weights, the resolved config with its preprocessing
plan and label names), so ``volseg infer --model RUN`` needs nothing else.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from volseg.config import Config, config_from_dict
from volseg.errors import VolsegError
from volseg.files.atomic import atomic_path
from volseg.models.registry import output_channels

FORMAT = "volseg-checkpoint-v1"
CHECKPOINT_NAMES = ("best.pt", "last.pt")


class CheckpointError(VolsegError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def save_atomic(payload: dict, path: str | Path) -> Path:
    """Written atomically (:func:`volseg.files.atomic.atomic_path`) and fsync'd before the rename: a reader (or a
    crash, power loss included) never sees a half-written checkpoint under the final name."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with ``weights_only=True``: tensors and plain containers only, so a checkpoint can never run
    code on load. Anything else is refused with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused, it holds Python objects beyond tensors and plain data, which could run code "
            f"when loaded ({reason[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a volseg checkpoint (no '{FORMAT}' format marker)")
    return payload


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its best checkpoint (else its last); a file is taken as given."""
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: run folder holds no {' or '.join(CHECKPOINT_NAMES)}")
    return path


def build_network(cfg: Config) -> nn.Module:
    """The network a config describes (input channels include 2.5D neighbour slices)."""
    from volseg.models import build_model

    m = cfg.model
    in_channels = cfg.data.in_channels * (2 * cfg.sampling.context_slices + 1 if m.dims == 2 else 1)
    kwargs: dict[str, Any] = dict(m.options)
    if m.norm != "default":
        kwargs["norm"] = m.norm
    return build_model(
        m.name,
        m.dims,
        in_channels,
        output_channels(len(cfg.data.labels)),
        features=m.features,
        upsample=m.upsample,
        deep_supervision=m.deep_supervision,
        **kwargs,
    )


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Config, Path]:
    """Rebuild the network from a run folder or checkpoint and load its weights, reporting any mismatch."""
    checkpoint = resolve_checkpoint(path)
    model, cfg = model_from_payload(load_checkpoint(checkpoint), checkpoint, device)
    return model, cfg, checkpoint


def model_from_payload(payload: dict, checkpoint: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Config]:
    """The network and config of a checkpoint already loaded (``payload``, read from ``checkpoint``), for a
    caller that needs more of the payload than the model and must not read the file twice."""
    if not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{checkpoint}: no config in checkpoint (not saved by volseg train?)")
    try:
        cfg = config_from_dict(payload["config"])
        model = build_network(cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{checkpoint}: its config does not describe a buildable model: {e}") from None
    state = payload.get("model")
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint}: no model weights in checkpoint")
    expected, found = set(model.state_dict()), set(state)
    if expected != found:
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        raise CheckpointError(
            f"{checkpoint}: weights do not match a {cfg.model.name} {cfg.model.dims}D model: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        mismatch = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        raise CheckpointError(f"{checkpoint}: weights do not fit the model: {'; '.join(mismatch[:3])}") from None
    return model.to(device).eval(), cfg


def rng_state() -> dict:
    """Every RNG state as tensors and plain values, so it survives ``weights_only`` loading."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def slim_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Copy a checkpoint without optimizer, scaler and RNG state: what prediction needs, a third the size."""
    payload = load_checkpoint(resolve_checkpoint(source))
    keep = ("format", "model", "config", "label_names", "epoch", "best_dice", "history", "training_scans")
    return save_atomic({k: payload[k] for k in keep if k in payload}, target)
