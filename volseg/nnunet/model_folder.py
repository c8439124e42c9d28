"""An nnU-Net v2 model folder (``TRAINER__PLANS__CONFIGURATION/``) read as nnU-Net's predictor reads it.

The folder holds ``plans.json``, ``dataset.json`` and ``fold_N/checkpoint_{final,best}.pth``. The configuration
is the checkpoint's own (``init_args.configuration``), resolved through ``inherits_from`` and, for plans written
before nnU-Net 2.4, rebuilt into the ``architecture`` entry the way nnU-Net's ``ConfigurationManager`` does.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from volseg.data.scan_screen import TrainingScans
from volseg.errors import VolsegError
from volseg.nnunet.checkpoint import load_nnunet_checkpoint

CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
_FOLD = re.compile(r"fold_(\d+|all)$")


class NnunetFolderError(VolsegError):
    """A model folder that cannot be used; the message is one line naming the file and the problem."""


def is_model_folder(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "plans.json").is_file() and (path / "dataset.json").is_file()


def find_model_folder(path: str | Path) -> Path | None:
    """``path`` itself when it is a model folder; the one ``TRAINER__PLANS__CONFIGURATION`` folder inside a
    dataset's results folder; else None (not an nnU-Net model)."""
    path = Path(path)
    if is_model_folder(path):
        return path
    if path.is_dir():
        inside = [p for p in sorted(path.iterdir()) if p.name.count("__") == 2 and is_model_folder(p)]
        if len(inside) == 1:
            return inside[0]
        if len(inside) > 1:
            raise NnunetFolderError(
                f"{path}: holds {len(inside)} nnU-Net model folders "
                f"({', '.join(p.name for p in inside)}); pass one of them"
            )
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NnunetFolderError(f"{path}: not readable JSON ({e})") from None


@dataclass
class Labels:
    """dataset.json's labels as nnU-Net's LabelManager reads them: output channel -> label value and name."""

    values: list[int]  # the value written for each output channel (channel 0: background for softmax)
    names: dict[int, str]  # foreground value -> name
    regions: list[tuple[int, ...]] | None = None  # region-based: one sigmoid channel per region
    ignore: int | None = None

    @property
    def heads(self) -> int:
        return len(self.regions) if self.regions is not None else len(self.values)

    @classmethod
    def from_dataset(cls, dataset: dict, source: Path) -> Labels:
        labels = dataset.get("labels")
        if not isinstance(labels, dict) or labels.get("background") != 0:
            raise NnunetFolderError(f"{source}: 'labels' must map names to values with background 0")
        ignore = labels.get("ignore")
        entries = {name: value for name, value in labels.items() if name != "ignore"}
        has_regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in entries.values())
        if not has_regions:
            values = sorted({int(v[0] if isinstance(v, (list, tuple)) else v) for v in entries.values()})
            names = {int(v[0] if isinstance(v, (list, tuple)) else v): n for n, v in entries.items()}
            return cls(values, {v: names[v] for v in values if v != 0}, None, ignore)
        order = dataset.get("regions_class_order")
        regions, region_names = [], []
        for name, value in entries.items():
            region = tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)
            if set(region) == {0}:
                continue
            regions.append(region)
            region_names.append(name)
        if not isinstance(order, list) or len(order) != len(regions):
            raise NnunetFolderError(
                f"{source}: region-based labels need 'regions_class_order' with one value per region ({len(regions)})"
            )
        return cls([int(v) for v in order], {int(v): n for v, n in zip(order, region_names)}, regions, ignore)


@dataclass
class ModelFolder:
    path: Path
    plans: dict
    dataset: dict
    configuration_name: str
    configuration: dict
    labels: Labels
    checkpoints: list[Path]  # one per fold, in fold order
    folds: list[str]
    trainer: str
    mirror_axes: tuple[int, ...] | None  # the checkpoint's inference_allowed_mirroring_axes
    weights: list[dict] = field(repr=False, default_factory=list)  # one state dict per fold

    @property
    def channels(self) -> int:
        return len(self.dataset.get("channel_names") or self.dataset.get("modality") or {})

    @property
    def modality(self) -> str:
        """CT when the channels are CT, else MR (what the default series rules need to know)."""
        names = (self.dataset.get("channel_names") or self.dataset.get("modality") or {}).values()
        return "CT" if any(str(n).casefold() == "ct" for n in names) else "MR"

    @property
    def training_scans(self) -> TrainingScans:
        """The modality and the median field of view of the dataset nnU-Net planned the model for."""
        shape = self.plans.get("original_median_shape_after_transp")
        spacing = self.plans.get("original_median_spacing_after_transp")
        extent = tuple(float(n) * float(s) for n, s in zip(shape, spacing)) if shape and spacing else None
        return TrainingScans(self.modality, extent, "plans.json: the dataset's median shape and spacing")

    @property
    def name(self) -> str:
        """``Dataset###_Name/TRAINER__PLANS__CONFIGURATION`` as nnU-Net users say it."""
        return f"{self.path.parent.name}/{self.path.name}"

    @classmethod
    def open(cls, path: str | Path, folds: list[str] | None = None, checkpoint: str = "final") -> ModelFolder:
        path = Path(path)
        if not is_model_folder(path):
            raise NnunetFolderError(f"{path}: not an nnU-Net model folder (needs plans.json, dataset.json, fold_N/)")
        if checkpoint not in CHECKPOINTS:
            raise NnunetFolderError(f"--checkpoint must be one of {list(CHECKPOINTS)}, got {checkpoint!r}")
        plans, dataset = _read_json(path / "plans.json"), _read_json(path / "dataset.json")
        present = sorted(
            (
                m[1]
                for p in path.iterdir()
                if p.is_dir() and (m := _FOLD.match(p.name)) and (p / CHECKPOINTS[checkpoint]).is_file()
            ),
            key=lambda f: (f == "all", f.zfill(4)),
        )
        chosen = [str(f) for f in folds] if folds else present
        missing = [f for f in chosen if f not in present]
        if missing or not chosen:
            raise NnunetFolderError(
                f"{path}: no {CHECKPOINTS[checkpoint]} for fold(s) {', '.join(missing) or 'any'}"
                f" (present: {', '.join(present) or 'none'})"
            )
        files = [path / f"fold_{f}" / CHECKPOINTS[checkpoint] for f in chosen]
        loaded = [load_nnunet_checkpoint(f) for f in files]
        first = loaded[0]
        configuration_name = first.get("init_args", {}).get("configuration") or path.name.split("__")[-1]
        configuration = resolve_configuration(plans, configuration_name, path / "plans.json")
        if configuration.get("previous_stage") or "cascade" in configuration_name:
            raise NnunetFolderError(
                f"{path}: {configuration_name} is a cascade stage (it needs the low-resolution "
                "stage's labels as input); cascades are not supported, use 3d_fullres"
            )
        mirror = first.get("inference_allowed_mirroring_axes")
        return cls(
            path,
            plans,
            dataset,
            configuration_name,
            configuration,
            Labels.from_dataset(dataset, path / "dataset.json"),
            files,
            chosen,
            str(first.get("trainer_name", path.name.split("__")[0])),
            tuple(int(a) for a in mirror) if mirror is not None else None,
            [c["network_weights"] for c in loaded],
        )


def resolve_configuration(plans: dict, name: str, source: Path) -> dict:
    """The configuration with ``inherits_from`` applied and an ``architecture`` entry (rebuilt from the
    pre-2.4 keys when the plans are older), as nnU-Net's PlansManager and ConfigurationManager do."""
    configurations = plans.get("configurations", {})
    chain, current = [], name
    while True:
        if current not in configurations:
            raise NnunetFolderError(f"{source}: no configuration {current!r} (has {', '.join(configurations)})")
        if current in chain:
            raise NnunetFolderError(f"{source}: configurations inherit in a circle ({' -> '.join(chain)})")
        chain.append(current)
        parent = configurations[current].get("inherits_from")
        if parent is None:
            break
        current = parent
    resolved: dict = {}
    for step in reversed(chain):
        resolved.update(copy.deepcopy(configurations[step]))
    resolved.pop("inherits_from", None)
    if "architecture" not in resolved:
        resolved["architecture"] = _architecture_from_old_plans(resolved, source)
    return resolved


def _architecture_from_old_plans(cfg: dict, source: Path) -> dict:
    """nnU-Net 2.0-2.3 plans (TotalSegmentator's among them) name a UNet class and its widths instead."""
    try:
        unet = cfg["UNet_class_name"]
        stages = len(cfg["n_conv_per_stage_encoder"])
        dims = len(cfg["patch_size"])
        per_stage = "n_conv_per_stage" if unet == "PlainConvUNet" else "n_blocks_per_stage"
        if unet not in ("PlainConvUNet", "ResidualEncoderUNet"):
            raise NnunetFolderError(
                f"{source}: unknown UNet_class_name {unet!r} (PlainConvUNet or ResidualEncoderUNet)"
            )
        kwargs = {
            "n_stages": stages,
            "features_per_stage": [
                min(cfg["UNet_base_num_features"] * 2**i, cfg["unet_max_num_features"]) for i in range(stages)
            ],
            "conv_op": f"torch.nn.modules.conv.Conv{dims}d",
            "kernel_sizes": cfg["conv_kernel_sizes"],
            "strides": cfg["pool_op_kernel_sizes"],
            per_stage: cfg["n_conv_per_stage_encoder"],
            "n_conv_per_stage_decoder": cfg["n_conv_per_stage_decoder"],
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dims}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        }
    except KeyError as e:
        raise NnunetFolderError(
            f"{source}: the configuration has neither 'architecture' nor the older {e} key"
        ) from None
    return {
        "network_class_name": unet,
        "arch_kwargs": kwargs,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
