"""The model shipped with volseg, used by ``volseg infer`` and ``volseg demo`` when no --model is given."""

from __future__ import annotations

from pathlib import Path

from volseg.checkpoint import CheckpointError

MODEL_FILE = Path(__file__).with_name("model.pt")


def default_model_path() -> Path:
    if not MODEL_FILE.is_file():
        raise CheckpointError(
            f"{MODEL_FILE}: no default model is installed; pass --model RUN_FOLDER_OR_CHECKPOINT "
            "(a folder written by `volseg train`)"
        )
    return MODEL_FILE
