"""One typed configuration: dataclasses filled from YAML and dotted ``--set key=value`` overrides.

Unknown keys are rejected with the list of valid ones, so a typo never silently falls back to a default.
The resolved config is saved with every run and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from volseg.errors import VolsegError


class ConfigError(VolsegError):
    """A config key or value that does not fit; the message names it and the valid choices."""


@dataclass
class DataConfig:
    manifest: str = "data_manifest.csv"
    modality: str = "MR"  # "CT" or "MR": picks the intensity normalization family
    labels: dict[int, str] = field(default_factory=lambda: {1: "anterior", 2: "posterior"})
    in_channels: int = 1
    # Source label value -> training class, e.g. {7: 1} trains TotalSegmentator's pancreas (7) alone;
    # values not listed become background. None keeps the label values as they are.
    label_remap: dict[int, int] | None = None
    # Label value -> label value: after inference, voxels of the first on the patient's left of the body's
    # midline become the second. With label_remap {.., 3: 3, 4: 3} one kidney class is trained (and may
    # be mirrored across x) and {3: 4} gives the sides back (volseg.runtime.postprocess). None: no split.
    split_at_midline: dict[int, int] | None = None
    # SNOMED CT codes for DICOM SEG segments whose label names volseg's table lacks, e.g.
    # {pancreas_duct: {type: "SCT:69930009:Pancreatic duct", category: "SCT:91723000:Anatomical Structure"}}
    label_codes: dict[str, dict[str, str]] | None = None
    # Label value -> display colour "#rrggbb" on review pages, e.g. {1: "#c83232"}; unlisted labels take
    # the QC pictures' palette (matplotlib's tab10 by label value).
    label_colors: dict[int, str] | None = None
    cache: str = "memory"  # "memory", "disk" (cache_dir) or "none"
    cache_dir: str = ".volseg_cache"


@dataclass
class PreprocessConfig:
    orientation: str = "RAS"
    spacing: list[float] | None = field(default_factory=lambda: [1.0, 1.0, 1.0])  # None keeps native
    image_interp: str = "bilinear"  # or "bicubic"; labels always use nearest
    normalization: str = "zscore"  # "zscore" (per volume), "ct" (dataset statistics), "window" (fixed HU)
    ct_clip: list[float] | None = None  # foreground 0.5 / 99.5 percentiles of the dataset
    ct_mean: float = 0.0
    ct_std: float = 1.0
    hu_window: list[float] | None = None  # [low, high] for "window"
    crop_foreground: bool = False  # crop to the body (CT: HU > -500) or to non-zero voxels (MRI)
    max_resampled_voxels: int = 2**30  # refuse a scan whose resampled volume would be larger (4 GiB float32)


@dataclass
class SamplingConfig:
    patch_size_3d: list[int] = field(default_factory=lambda: [40, 56, 40])
    batch_size_3d: int = 2
    slice_axis: int = 2  # axis (0, 1, 2 in RAS x, y, z) along which 2D slices are taken
    patch_size_2d: list[int] = field(default_factory=lambda: [40, 56])
    batch_size_2d: int = 16
    context_slices: int = 0  # neighbours on each side stacked as channels (2.5D)
    foreground_fraction: float = 0.33
    samples_per_volume: int = 2  # 3D patches drawn per loaded case
    slices_per_volume: int = 8  # 2D slices (or slice stacks) drawn per loaded case


@dataclass
class AugmentConfig:
    # True mirrors every axis, a list only those axes (RAS x=0, y=1, z=2): labels with a side, such as
    # left/right kidney, must not be mirrored across x
    flip: bool | list[int] = True
    rotate_scale: bool = True
    spatial_prob: float = 0.2  # share of samples rotated (+-15 degrees) and scaled
    scale: float = 0.15  # scale factors drawn from 1 +- scale (patient size varies far more than that)
    intensity: bool = True
    gamma: bool = True
    noise: bool = False


@dataclass
class ModelConfig:
    name: str = "unet"
    dims: int = 3
    features: list[int] | None = None  # None: the model's defaults for its dims
    norm: str | None = "default"  # "default": batch in 2D, instance in 3D
    upsample: str = "interp"
    deep_supervision: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {recurrent_steps: 2}


@dataclass
class TrainConfig:
    epochs: int = 20
    iterations_per_epoch: int = 0  # 0: one pass over the training cases
    optimizer: str = "adamw"  # "adamw" (warm-up + cosine) or "sgd" (Nesterov, poly decay; nnU-Net)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    grad_clip: float = 12.0
    amp: bool = True  # fp16 autocast on CUDA; never on CPU
    seed: int = 0
    val_every: int = 2
    val_overlap: float = 0.5
    time_budget_minutes: float = 0.0  # > 0: fit the epochs to this wall-clock budget (set after epoch 1)
    early_stop_patience: int = 0  # validations without improvement before stopping; 0 disables
    num_workers: int = 0
    threads: int = 0  # torch intra-op threads on CPU; 0 leaves torch's default
    sync_batchnorm: bool = False  # under torchrun: synchronise BatchNorm statistics across ranks
    verify_replicas: bool = False  # under torchrun: check after every step that all ranks hold equal weights


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check (and gently convert) a value against a type hint: ints to floats, lists to tuples never."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, args[0], key): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)  # YAML mapping keys such as label values may arrive as strings
    if hint is type(None) and value is None:
        return None
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in valid:
            raise ConfigError(f"unknown config key {dotted!r}; valid keys: {valid}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not a section")
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- ``key.sub=value`` overrides (values parsed as YAML scalars/lists)."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. model.name=attunet")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    return validate(_build(Config, tree))


def config_from_dict(data: dict) -> Config:
    return _build(Config, data)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


_CHOICES = {
    "data.modality": ("CT", "MR"),
    "data.cache": ("memory", "disk", "none"),
    "preprocess.image_interp": ("bilinear", "bicubic"),
    "preprocess.normalization": ("zscore", "ct", "window"),
    "model.dims": (2, 3),
    "model.norm": ("default", "batch", "instance", None),
    "model.upsample": ("interp", "transpose"),
    "train.optimizer": ("adamw", "sgd"),
}


def validate(cfg: Config) -> Config:
    """Fail at once, naming the key, the bad value and the choices, rather than an hour into training."""
    from volseg.models import list_models

    tree = cfg.to_dict()
    for dotted, choices in _CHOICES.items():
        section, key = dotted.split(".")
        if tree[section][key] not in choices:
            raise ConfigError(f"{dotted} must be one of {list(choices)}, got {tree[section][key]!r}")
    if cfg.model.name not in list_models():
        raise ConfigError(f"model.name: unknown model {cfg.model.name!r}; choose one of {list_models()}")
    if not cfg.data.labels:
        raise ConfigError("data.labels: at least one label is needed, e.g. {1: pancreas}")
    unknown = {
        k: v
        for k, v in (cfg.data.split_at_midline or {}).items()
        if k not in cfg.data.labels or v not in cfg.data.labels or k == v
    }
    if unknown:
        raise ConfigError(
            f"data.split_at_midline: both sides must be two different labels of data.labels "
            f"{sorted(cfg.data.labels)}, got {unknown}"
        )
    flip = cfg.augment.flip
    if not isinstance(flip, bool) and not set(flip) <= set(range(cfg.model.dims)):
        raise ConfigError(f"augment.flip: axes must lie in {list(range(cfg.model.dims))}, got {flip}")
    if not 0.0 <= cfg.augment.spatial_prob <= 1.0 or not 0.0 <= cfg.augment.scale < 1.0:
        raise ConfigError(
            f"augment.spatial_prob must be in [0, 1] and augment.scale in [0, 1), got "
            f"{cfg.augment.spatial_prob} and {cfg.augment.scale}"
        )
    bad_colors = {
        k: v for k, v in (cfg.data.label_colors or {}).items() if not re.fullmatch(r"#[0-9a-fA-F]{6}", str(v))
    }
    if bad_colors:
        raise ConfigError(f"data.label_colors: colours must be written #rrggbb, got {bad_colors}")
    if not 0.0 <= cfg.sampling.foreground_fraction <= 1.0:
        raise ConfigError(f"sampling.foreground_fraction must be in [0, 1], got {cfg.sampling.foreground_fraction}")
    return cfg
