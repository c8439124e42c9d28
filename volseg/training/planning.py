"""Configs for training, as the command line builds them: ``volseg plan`` (a manifest's fingerprint planned
into a config, with the zoo model's widths: the data floor plans but never imports the model zoo) and
``volseg train``'s flags over a YAML config (:func:`training_config`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from volseg.config import Config, load_config, save_config
from volseg.data.discover import label_names_from_dataset_json
from volseg.data.manifest import declared_labels, read_manifest
from volseg.data.plan import fingerprint, plan
from volseg.errors import VolsegError
from volseg.models.registry import default_features, list_models


def plan_manifest(
    manifest: Path,
    output: Path,
    base: Path | None = None,
    overrides: Sequence[str] = (),
    memory_gb: float = 4.0,
    modality: str = "auto",
    label_names: dict[int, str] | None = None,
) -> Config:
    """``volseg plan``: fingerprint the manifest's labelled cases, plan a config from them on top of ``base``
    and its ``overrides``, and write it to ``output`` with ``NAME.fingerprint.json`` beside it. Label names:
    ``label_names``, else the manifest's declared labels, else a dataset.json beside the images."""
    cases = read_manifest(manifest)
    base_cfg = load_config(base, list(overrides))
    fp = fingerprint(cases, label_remap=base_cfg.data.label_remap)
    names = label_names or declared_labels(manifest) or label_names_from_dataset_json(cases[0].image.parent.parent)
    model = base_cfg.model
    widths = {
        d: tuple(model.features) if model.features and model.dims == d else default_features(model.name, d)
        for d in (2, 3)
    }
    cfg = plan(fp, base_cfg, widths, memory_budget_gb=memory_gb, modality=modality, label_names=names)
    cfg.data.manifest = str(manifest)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_config(cfg, output)
    fp.save(output.with_suffix(".fingerprint.json"))
    return cfg


def training_config(
    config: Path | None = None,
    overrides: Sequence[str] = (),
    manifest: Path | None = None,
    dims: int | None = None,
    model: str | None = None,
    minutes: float | None = None,
) -> Config:
    """The YAML config (None: the defaults, which fit the embedded data), then ``--set`` overrides, then the
    named flags, which win."""
    flags = list(overrides)
    if dims is not None:
        if dims not in (2, 3):
            raise VolsegError(f"--dims must be 2 or 3, got {dims}")
        flags.append(f"model.dims={dims}")
    if model is not None:
        if model not in list_models():
            raise VolsegError(f"unknown model {model!r}; choose one of {list_models()}")
        flags.append(f"model.name={model}")
    if manifest is not None:
        flags.append(f"data.manifest={manifest}")
    if minutes is not None:
        if minutes <= 0:
            raise VolsegError("--minutes takes a budget > 0 and replaces --epochs; give one of them")
        flags.append(f"train.time_budget_minutes={minutes}")
    return load_config(config, flags)
