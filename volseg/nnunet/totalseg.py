"""``--model totalsegmentator:TASK``: the nnU-Net folders of a local TotalSegmentator install, run and merged
as TotalSegmentator 2.x runs them (``nnunet.py``, ``nnUNet_predict_image``).

The scan is put in the closest canonical (RAS) orientation, resampled to the task's spacing with
``scipy.ndimage.zoom`` (order 1, TotalSegmentator 2.18.0's ``--resampling_order`` default; truncated to int32,
as ``change_spacing`` does), each part model runs on that
grid (tile step 0.8 for the ``total`` tasks, 0.5 otherwise), part labels are mapped to the task's numbering
(a later part overwrites where it found something), and the label map goes back with order-0 zoom and the
orientation undone. Which dataset folders make a task is read from the installed ``totalsegmentator``
package; without it, from the TotalSegmentator 2.x layout below, numbering structures in part order by the
names in each part's dataset.json.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from volseg.data.io import label_dtype
from volseg.inference.segmenter import ModelInfo, ScanCheck
from volseg.nnunet.model_folder import NnunetFolderError
from volseg.nnunet.preprocess import logits_to_labels, preprocess
from volseg.nnunet.sliding_window import mirrored, predict_logits

PREFIX = "totalsegmentator:"
# TotalSegmentator 2.x (map_tasks_config.TASK_CONFIGS): task -> (dataset ids, spacing mm, trainer)
LAYOUT = {
    "total": ([291, 292, 293, 294, 295], 1.5, "nnUNetTrainerNoMirroring"),
    "total_fast": ([297], 3.0, "nnUNetTrainer_4000epochs_NoMirroring"),
    "total_fastest": ([298], 6.0, "nnUNetTrainer_4000epochs_NoMirroring"),
    "total_mr": ([850, 851], 1.5, "nnUNetTrainer_2000epochs_NoMirroring"),
    "total_mr_fast": ([852], 3.0, "nnUNetTrainer_2000epochs_NoMirroring"),
    "total_mr_fastest": ([853], 6.0, "nnUNetTrainer_2000epochs_NoMirroring"),
    "body": ([299], 1.5, "nnUNetTrainer"),
    "body_fast": ([300], 6.0, "nnUNetTrainer"),
}
WIDE_STEP_TASKS = ("total", "total_v3", "total_mr")  # TotalSegmentator tiles these with step 0.8
# TotalSegmentator's default --resampling_order for the scan (2.18.0: 1; order 3 gave 10.1 M of 11.0 M voxels
# different on the bundled CT at 1.5 mm: benchmarks/results/totalseg_parity.md)
RESAMPLING_ORDER = 1


@dataclass(frozen=True)
class Task:
    name: str  # as given, e.g. total_fast
    base: str  # TotalSegmentator's task, e.g. total
    dataset_ids: list[int]
    spacing: list[float]
    trainer: str
    configuration: str = "3d_fullres"
    plans: str = "nnUNetPlans"
    names: dict[int, str] | None = None  # the task's numbering, when the package is installed
    part_names: dict[int, dict[int, str]] | None = None  # dataset id -> its output value -> name (package)


def weights_folder() -> Path:
    """TotalSegmentator's ``get_weights_dir``."""
    if "TOTALSEG_WEIGHTS_PATH" in os.environ:
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    home = Path("/tmp") if str(Path.home()) == "/" else Path.home()
    return Path(os.environ.get("TOTALSEG_HOME_DIR", home / ".totalsegmentator")) / "nnunet" / "results"


def _split(task: str) -> tuple[str, str]:
    for mode in ("fastest", "fast"):
        if task.endswith("_" + mode):
            return task[: -len(mode) - 1], mode
    return task, "default"


def resolve_task(task: str) -> Task:
    """The task's dataset folders and spacing: from the installed package, else :data:`LAYOUT`."""
    base, mode = _split(task)
    try:
        from totalsegmentator.map_tasks_config import TASK_CONFIGS
        from totalsegmentator.map_to_binary import class_map
    except ImportError:
        if task not in LAYOUT:
            raise NnunetFolderError(
                f"{PREFIX}{task}: unknown task without the totalsegmentator package installed "
                f"(known: {', '.join(LAYOUT)}; pip install TotalSegmentator for all)"
            ) from None
        ids, spacing, trainer = LAYOUT[task]
        return Task(task, base, ids, [spacing] * 3, trainer)
    config = TASK_CONFIGS.get(base)
    if config is None:
        raise NnunetFolderError(f"{PREFIX}{task}: TotalSegmentator has no task {base!r}")
    config = config.get("sub_modes", {}).get(mode, config if mode == "default" else None)
    if config is None:
        raise NnunetFolderError(f"{PREFIX}{task}: TotalSegmentator's {base!r} has no {mode} mode")
    if config.get("crop") or config.get("cascade"):
        raise NnunetFolderError(f"{PREFIX}{task}: this task crops to another task's organs first; not supported")
    ids = config["task_id"] if isinstance(config["task_id"], list) else [config["task_id"]]
    spacing = config.get("resample")
    spacing = [float(spacing)] * 3 if isinstance(spacing, (int, float)) else [float(s) for s in spacing]
    return Task(
        task,
        base,
        ids,
        spacing,
        config["trainer"],
        config.get("model", "3d_fullres"),
        config.get("plans") or "nnUNetPlans",
        dict(class_map.get(base, {})) or None,
        _package_parts(ids),
    )


def _package_parts(ids: list[int]) -> dict[int, dict[int, str]] | None:
    """The package's own part maps (``nnunet.py`` maps part outputs by these, not by dataset.json)."""
    if len(ids) < 2:
        return None
    from totalsegmentator import map_to_binary as maps

    for id_map, parts in (
        ("map_taskid_to_partname_ct", "class_map_5_parts"),
        ("map_taskid_to_partname_ct_v3", "class_map_5_parts_total_v3"),
        ("map_taskid_to_partname_mr", "class_map_parts_mr"),
        ("map_taskid_to_partname_headneck_muscles", "class_map_parts_headneck_muscles"),
    ):
        names = getattr(maps, id_map, {})
        if all(i in names for i in ids):
            return {i: dict(getattr(maps, parts)[names[i]]) for i in ids}
    return None


def part_folders(task: Task, root: Path | None = None) -> list[Path]:
    root = root or weights_folder()
    folders = []
    for dataset_id in task.dataset_ids:
        found = sorted(root.glob(f"Dataset{dataset_id:03d}_*/{task.trainer}__{task.plans}__{task.configuration}"))
        if not found:
            raise NnunetFolderError(
                f"{PREFIX}{task.name}: no weights for Dataset{dataset_id:03d} under {root}; on a machine with internet "
                f"run `totalseg_download_weights -t {task.name}` and copy its ~/.totalsegmentator here "
                "(or set TOTALSEG_HOME_DIR)"
            )
        folders.append(found[0])
    return folders


def canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``nib.as_closest_canonical``: the array and affine in RAS axis order, and the orientation used."""
    ornt = nib.orientations.io_orientation(affine)
    return (
        nib.orientations.apply_orientation(array, ornt),
        affine @ nib.orientations.inv_ornt_aff(ornt, array.shape),
        ornt,
    )


def zooms(affine: np.ndarray) -> np.ndarray:
    """The zooms a NIfTI header written with this affine reports (float32 pixdim)."""
    return np.linalg.norm(affine[:3, :3], axis=0).astype(np.float32).astype(np.float64)


class TotalSegmentatorSegmenter:
    """A TotalSegmentator task's part models on one grid, merged into the task's label numbering."""

    def __init__(self, task: str, device: torch.device | str = "cpu", backend: str = "auto", root: Path | None = None):
        from volseg.nnunet.segmenter import NnunetSegmenter

        self.task = resolve_task(task)
        self.parts = [NnunetSegmenter(f, device, backend=backend) for f in part_folders(self.task, root)]
        self.step = 0.8 if self.task.base in WIDE_STEP_TASKS else 0.5
        self.device, self.backend, self.precision = self.parts[0].device, self.parts[0].backend, "fp32"
        names = self.task.names or self._names_in_part_order()
        value_of = {name: value for value, name in names.items()}
        self.luts = []
        for dataset_id, part in zip(self.task.dataset_ids, self.parts):
            outputs = (self.task.part_names or {}).get(dataset_id) or part.model.labels.names
            if len(self.parts) == 1 and self.task.names:  # one model: its values are the task's
                outputs = {value: names.get(value, name) for value, name in outputs.items()}
            lut = np.zeros(max([*outputs, *part.model.labels.names, 0]) + 1, label_dtype(max(names, default=0)))
            for value, name in outputs.items():
                lut[value] = value_of.get(name, 0)
            self.luts.append(lut)
        modality = "MR" if self.task.base.endswith("_mr") else "CT"
        self.info = ModelInfo(
            f"TotalSegmentator {task}",
            self.parts[0].model.path.parent.parent,
            f"TotalSegmentator {task}: {len(self.parts)} nnU-Net part model(s) at {self.task.spacing[0]:g} mm",
            names,
            modality,
            training_scans=dataclasses.replace(self.parts[0].model.training_scans, modality=modality),
        )

    def _names_in_part_order(self) -> dict[int, str]:
        names: dict[int, str] = {}
        for part in self.parts:
            for _, name in sorted(part.model.labels.names.items()):
                if name not in names.values():
                    names[len(names) + 1] = name
        return names

    def load(self, case, check: ScanCheck | None = None) -> dict:
        started = time.perf_counter()
        image = self.parts[0].read(case)
        if check is not None:
            check(image.array, image.affine)
        read = time.perf_counter()
        affine = np.asarray(image.meta["original_affine"], float)
        array, canonical_affine, ornt = canonical(image.array[0].astype(np.float64), affine)
        zoom = zooms(canonical_affine) / np.array(self.task.spacing)
        resampled = ndimage.zoom(array, zoom, mode="nearest", order=RESAMPLING_ORDER).astype(np.int32)
        grid_affine = canonical_affine.copy()
        grid_affine[:3, :3] = grid_affine[:3, :3] / zoom
        spacing = zooms(grid_affine)[::-1]
        prepared = [preprocess(resampled.transpose(2, 1, 0)[None], spacing, part.model) for part in self.parts]
        return {
            "image": image,
            "source_image": image,
            "prepared": prepared,
            "orientation": ornt,
            "canonical_shape": array.shape,
            "timings": {"read": read - started, "preprocess": time.perf_counter() - read},
        }

    def predict(self, data: dict) -> tuple[np.ndarray, None]:
        started = time.perf_counter()
        combined = None
        for part, prepared, lut in zip(self.parts, data["prepared"], self.luts):
            with torch.inference_mode():
                logits = predict_logits(
                    prepared.data,
                    [mirrored(f, None) for f in part.forwards],
                    part.model.configuration["patch_size"],
                    part.model.labels.heads,
                    self.step,
                )
            labels = lut[logits_to_labels(logits, prepared, part.model).transpose(2, 1, 0)]
            combined = labels if combined is None else np.where(labels != 0, labels, combined)
        predicted = time.perf_counter()
        zoom = np.array(data["canonical_shape"]) / np.array(combined.shape)
        back = ndimage.zoom(combined.astype(np.float64), zoom, mode="nearest", order=0).astype(combined.dtype)
        undo = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), data["orientation"])
        labels = nib.orientations.apply_orientation(back, undo)
        data["timings"].update(network=predicted - started, export=time.perf_counter() - predicted)
        return labels, None
