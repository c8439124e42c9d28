"""The trained models shipped with volseg, chosen by name (``volseg infer --model abdomen-ct``).

Each lives in its own folder, ``volseg/pretrained/<name>/``, as ``model.pt`` (a slim checkpoint: weights and
the resolved config) beside its ``MODEL_CARD.md``. ``volseg infer`` and ``volseg demo`` use
:data:`DEFAULT` when no --model is given.
"""

from __future__ import annotations

from pathlib import Path

from volseg.runtime.checkpoint import CheckpointError

FOLDER = Path(__file__).parent
DEFAULT = "hippocampus-mri"
BUILTIN = {
    "hippocampus-mri": "anterior and posterior hippocampus, T1 MRI crops (MSD Task04, manual labels)",
    "abdomen-ct": "DEMONSTRATION ONLY, not for use on patients (learned from one CT): liver, spleen, kidneys at 3 mm",
}
# One line printed when a run starts with a model that must not be mistaken for a clinical one
WARNINGS = {
    "abdomen-ct": "abdomen-ct is a demonstration trained on one patient's CT, not for use on patients; for CT organs "
    "use an nnU-Net or TotalSegmentator model (--model NNUNET_FOLDER or totalsegmentator:total)",
}


def model_file(name: str) -> Path:
    return FOLDER / name / "model.pt"


def resolve_model(spec: str | Path | None) -> Path:
    """A run folder or checkpoint path as given, a built-in model's file by name, or the default model."""
    if spec is None:
        spec = DEFAULT
    path = Path(spec)
    if path.exists() or str(spec) not in BUILTIN:
        if not path.exists() and not path.suffix and len(path.parts) == 1:
            raise CheckpointError(
                f"{spec}: no such run folder or checkpoint, and not a built-in model (built-in: {', '.join(BUILTIN)})"
            )
        return path
    if not model_file(str(spec)).is_file():
        raise CheckpointError(
            f"{model_file(str(spec))}: the built-in model {spec!r} is not installed; pass --model "
            "RUN_FOLDER_OR_CHECKPOINT (a folder written by `volseg train`)"
        )
    return model_file(str(spec))


def describe_builtin() -> list[str]:
    """One line per built-in model: what it segments, its network and labels, its file, and whether its int8
    twin is used on CPU (the recorded agreement decides)."""
    from volseg.runtime.checkpoint import load_checkpoint
    from volseg.runtime.quantize import MIN_AGREEMENT, agrees, beside_checkpoint

    lines = []
    for name, what in BUILTIN.items():
        path = model_file(name)
        title = name + (" (default)" if name == DEFAULT else "")
        if not path.is_file():
            lines.append(f"{title}: not installed ({path})")
            continue
        config = load_checkpoint(path)["config"]
        labels = ", ".join(f"{v} {n}" for v, n in config["data"]["labels"].items())
        int8 = beside_checkpoint(path)
        used = "used on CPU" if int8 and agrees(int8.record) else f"fp32 kept: agreement below {MIN_AGREEMENT}"
        twin = f"; int8 twin ({used})" if int8 else ""
        network = f"{config['model']['name']} {config['model']['dims']}D"
        lines.append(f"{title}: {what}; {network}; labels {labels}; {path} ({path.stat().st_size / 1e6:.1f} MB){twin}")
    return lines
