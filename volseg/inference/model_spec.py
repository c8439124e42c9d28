"""What ``--model`` names, read in one place: ``totalsegmentator:TASK`` (a local TotalSegmentator install's
part models), an nnU-Net v2 model folder (``TRAINER__PLANS__CONFIGURATION/`` or the dataset folder holding
one), or a volseg model: a run folder, a checkpoint or a built-in name (None: the default built-in model).
Opening the model (:mod:`volseg.inference.open_model`), exporting it and the command line's caution all start
from the :class:`ModelSpec` this module reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "volseg", "nnunet" or "totalsegmentator"
    path: Path | None  # the checkpoint (volseg) or the model folder (nnunet)
    task: str | None = None  # TotalSegmentator's task
    caution: str | None = None  # a built-in demonstration model's one-line note, printed when it runs


def read_model_spec(model: str | Path | None) -> ModelSpec:
    """The kind of model ``model`` names and where it is; a name that is none of them is refused in one line."""
    from volseg.nnunet.model_folder import find_model_folder
    from volseg.nnunet.totalseg import PREFIX
    from volseg.pretrained import DEFAULT, WARNINGS, resolve_model

    if model is not None and str(model).startswith(PREFIX):
        return ModelSpec("totalsegmentator", None, task=str(model)[len(PREFIX) :])
    folder = find_model_folder(model) if model is not None and Path(model).is_dir() else None
    if folder is not None:
        return ModelSpec("nnunet", Path(folder))
    return ModelSpec("volseg", resolve_model(model), caution=WARNINGS.get(str(model if model is not None else DEFAULT)))
