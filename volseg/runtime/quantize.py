"""INT8: NNCF post-training quantization of the OpenVINO model, its calibration, and the agreement record.

Calibration windows are the inputs the model's own sliding window (or slice loop) feeds the network on
training images, recorded while it runs, so the int8 model is calibrated on exactly what it will see.
An int8 model is kept beside its checkpoint (``model_int8.xml``/``.bin``, written by ``volseg export
--precision int8``) with ``int8.json``: the checkpoint's hash, the calibration, and the measured agreement
with fp32 (Dice per label of the int8 labels against the fp32 labels, and both against the references).
``--precision auto`` uses int8 only where that record exists, belongs to this checkpoint and agrees
(every label's worst case Dice >= :data:`MIN_AGREEMENT`); a model without one is quantized on request
into the user's cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from volseg.config import Config
from volseg.errors import VolsegError
from volseg.files.atomic import write_text_atomic
from volseg.files.textio import tolerate_unencodable_output
from volseg.runtime.cache import cache_folder, file_digest
from volseg.runtime.onnx_export import checkpoint_onnx, installed

log = logging.getLogger(__name__)
IR_NAME = "model_int8.xml"
RECORD_NAME = "int8.json"
BF16_RECORD_NAME = "bf16.json"  # bf16's measured agreement with fp32 (no model: OpenVINO runs the fp32 one at bf16)
MIN_AGREEMENT = 0.99  # worst case Dice per label, int8 labels vs fp32 labels
PRECISIONS = ("auto", "fp32", "bf16", "int8")
DEFAULT_KEEP_FP32: tuple[str, ...] = ()  # measured: benchmarks/results/int8.md


class QuantizeError(VolsegError):
    """Quantization that cannot run; the message names the problem."""


def require_nncf() -> None:
    missing = [m for m in ("nncf", "openvino") if not installed(m)]
    if missing:
        raise QuantizeError(f"int8 needs {missing}: pip install 'volseg[openvino]'")


def calibration_windows(
    model: torch.nn.Module,
    cfg: Config,
    images: Sequence[Sequence[Path]],
    count: int = 40,
    overlap: float = 0.5,
    seed: int = 0,
) -> list[np.ndarray]:
    """``count`` network inputs (1, C, ...) recorded from the model's own inference on ``images`` (a list
    of channel-path tuples): its preprocessing, its sliding window or slice loop, at most
    ceil(count / cases) from each case, chosen at random within it, cases in a seeded random order."""
    from volseg.data.transforms import LoadCased, preprocess
    from volseg.models.registry import output_channels
    from volseg.runtime.predict import predict_probabilities

    if not images:
        raise QuantizeError("no calibration images (a manifest's train split, or a folder of images)")
    rng = random.Random(seed)
    shuffled = rng.sample(list(images), len(images))
    per_case = -(-count // min(count, len(shuffled)))  # small volumes give fewer: then more cases are read
    reader, chain = LoadCased(cfg.data.label_remap, cfg), preprocess(cfg, window_overlap=overlap)
    channels = output_channels(len(cfg.data.labels))
    windows: list[np.ndarray] = []
    for case_images in shuffled:
        if len(windows) >= count:
            break
        kept: list[np.ndarray] = []
        n_seen = 0

        def record(batch: torch.Tensor) -> torch.Tensor:
            nonlocal n_seen
            for item in batch:  # reservoir sampling: per_case windows uniformly among all of this case's
                n_seen += 1
                if len(kept) < per_case:
                    kept.append(item[None].numpy().copy())
                elif (slot := rng.randrange(n_seen)) < per_case:
                    kept[slot] = item[None].numpy().copy()
            return torch.zeros(batch.shape[0], channels, *batch.shape[2:])

        data = chain(reader({"image": [str(p) for p in case_images]}))
        predict_probabilities(
            model, data["image"], cfg, torch.device("cpu"), overlap=overlap, batch_size=1, network=record
        )
        windows += kept
    return windows[:count]


def cached_int8(
    model: torch.nn.Module, cfg: Config, checkpoint: Path, calibration: Path | None = None, count: int = 40
) -> Path:
    """The int8 model of ``checkpoint`` in the user's cache, quantized (once) on its training images."""
    require_nncf()
    images, digest = training_images(cfg, calibration)
    path = cached_path(checkpoint, digest)
    if not path.is_file():
        log.warning(
            "quantizing %s to int8 on %d windows of its training images (once; cached at %s)", checkpoint, count, path
        )
        windows = calibration_windows(model, cfg, images, count)
        quantize(checkpoint_onnx(model, cfg, checkpoint), windows, path)
    return path


KEEP_FP32_CHOICES = ("first_last", "last")


def kept_convolutions(model, keep_fp32: Sequence[str]) -> list[str]:
    """The convolutions ``keep_fp32`` names: ``first_last`` the first and the last, ``last`` the last (the
    one that writes the logits, whose int8 rounding moves every label's boundary)."""
    unknown = set(keep_fp32) - set(KEEP_FP32_CHOICES)
    if unknown:
        raise QuantizeError(f"keep_fp32 takes {list(KEEP_FP32_CHOICES)}, got {sorted(unknown)}")
    convolutions = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    if not (convolutions and keep_fp32):
        return []
    return [convolutions[0], convolutions[-1]] if "first_last" in keep_fp32 else [convolutions[-1]]


def quantize(
    source_onnx: Path, windows: list[np.ndarray], destination: Path, keep_fp32: Sequence[str] = DEFAULT_KEEP_FP32
) -> Path:
    """NNCF post-training quantization (its defaults: per-channel weights, fast bias correction) of the
    ONNX model, written as OpenVINO IR at ``destination`` (.xml, with its .bin) atomically.

    ``keep_fp32`` (:data:`KEEP_FP32_CHOICES`) leaves convolutions in fp32: ``first_last`` did not pay on the
    built-in models (README, INT8); nnU-Net twins keep the ``last`` (:mod:`volseg.nnunet.int8`).
    """
    require_nncf()
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)
    tolerate_unencodable_output()  # NNCF draws a progress bar
    model = ov.Core().read_model(str(source_onnx))
    scope = nncf.IgnoredScope(names=kept_convolutions(model, keep_fp32))
    quantized = nncf.quantize(model, nncf.Dataset(windows), subset_size=len(windows), ignored_scope=scope)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.stem}.", dir=destination.parent))
    try:
        ov.save_model(quantized, str(staging / "m.xml"), compress_to_fp16=False)
        # OpenVINO finds the weights by the .xml's stem; the .xml goes in place last, so it means "complete"
        os.replace(staging / "m.bin", destination.with_suffix(".bin"))
        os.replace(staging / "m.xml", destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


@dataclass
class Int8Model:
    path: Path  # the OpenVINO IR (.xml)
    record: dict | None  # int8.json beside it, when there is one for this checkpoint


def beside_checkpoint(checkpoint: Path) -> Int8Model | None:
    """The int8 model written next to ``checkpoint`` by ``volseg export --precision int8``, if it was made
    from this very checkpoint (a retrained run leaves a stale one that must not be used)."""
    folder = Path(checkpoint).parent
    path, record_path = folder / IR_NAME, folder / RECORD_NAME
    if not (path.is_file() and record_path.is_file()):
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("checkpoint_sha256") != file_digest(checkpoint):
        log.warning("%s was made from another checkpoint than %s; not used", path, checkpoint)
        return None
    return Int8Model(path, record)


def bf16_beside_checkpoint(checkpoint: Path) -> dict | None:
    """The bf16 agreement recorded beside ``checkpoint`` by ``volseg export --precision bf16``, if it was
    measured on this very checkpoint."""
    record = read_record(Path(checkpoint).parent, BF16_RECORD_NAME)
    return record if record and record.get("checkpoint_sha256") == file_digest(checkpoint) else None


def agrees(record: dict | None) -> bool:
    """Was int8 (or bf16) measured against fp32 on real cases, with every label's worst case at MIN_AGREEMENT
    or better?"""
    worst = (record or {}).get("agreement", {}).get("dice_vs_fp32_min", {})
    return bool(worst) and min(worst.values()) >= MIN_AGREEMENT


def cached_path(checkpoint: Path, calibration_digest: str) -> Path:
    import openvino

    cache = cache_folder() / "int8"
    name = f"{file_digest(checkpoint)[:16]}-{calibration_digest[:12]}-ov{openvino.__version__.split('-')[0]}.xml"
    return cache / name


def training_images(cfg: Config, calibration: Path | None) -> tuple[list[tuple[Path, ...]], str]:
    """(channel-path tuples, a digest naming them): the train split of ``calibration`` (a manifest) or of
    the model's own manifest, or every image file of a folder."""
    from volseg.data.case_ids import image_files
    from volseg.data.manifest import read_manifest

    source = Path(calibration) if calibration else Path(cfg.data.manifest)
    if not source.exists():
        raise QuantizeError(
            f"{source}: calibration data not found (the model's training manifest); give "
            "--calibration MANIFEST_OR_FOLDER"
        )
    if source.suffix.lower() == ".csv":
        images = [tuple(Path(p) for p in case.images) for case in read_manifest(source) if case.split == "train"]
    else:
        images = [(path,) for path in image_files(source)]
    if not images:
        raise QuantizeError(f"{source}: no training images to calibrate on")
    digest = hashlib.sha256("\n".join(";".join(map(str, i)) for i in images).encode()).hexdigest()
    return images, digest


def measure_agreement(fp32, int8, cases, name: str = "int8") -> dict:
    """Per label: Dice of the int8 (or bf16: ``name``) labels against the fp32 labels (mean and worst case), and
    the mean Dice of each against the reference labels where the cases have them. ``fp32``/``int8`` are
    segmenters of the same model (any :class:`~volseg.inference.segmenter.CaseSegmenter`); ``cases`` are manifest cases
    (volseg.data.manifest.Case, with labels) or inputs (volseg.inference.inputs.CaseInput)."""
    from volseg.data.io import grid_mismatch, read_label
    from volseg.evaluation.metrics import dice_per_label

    names = dict(fp32.info.labels)
    values = sorted(names)
    vs_fp32: dict[str, list[float]] = {names[v]: [] for v in values}
    vs_reference: dict[str, dict[str, list[float]]] = {
        "fp32": {n: [] for n in vs_fp32},
        name: {n: [] for n in vs_fp32},
    }
    for case in cases:
        data = fp32.load(case)  # loaded for each: inverting the preprocessing consumes its record of transforms
        source = data["source_image"]
        labels = {"fp32": fp32.predict(data)[0], name: int8.predict(int8.load(case))[0]}
        for value, d in dice_per_label(labels[name], labels["fp32"], values).items():
            vs_fp32[names[value]].append(d)
        if getattr(case, "label", None) is not None:
            reference = read_label(case.label)
            why = grid_mismatch(reference.affine, reference.shape[1:], source.affine, source.shape[1:])
            if why:
                raise QuantizeError(f"{case.label}: not on the grid of {case.image} ({why})")
            reference = reference[0].numpy()
            for precision, predicted in labels.items():
                for value, d in dice_per_label(predicted, reference, values).items():
                    vs_reference[precision][names[value]].append(d)
    mean = lambda values: float(np.mean(values)) if values else None  # noqa: E731
    return {
        "cases": len(cases),
        "dice_vs_fp32_mean": {n: mean(v) for n, v in vs_fp32.items()},
        "dice_vs_fp32_min": {n: float(min(v)) for n, v in vs_fp32.items() if v},
        "dice_vs_reference": {p: {n: mean(v) for n, v in per.items()} for p, per in vs_reference.items()},
    }


def export_int8(
    checkpoint: Path,
    folder: Path | None = None,
    calibration: Path | None = None,
    count: int = 40,
    keep_fp32: Sequence[str] = DEFAULT_KEEP_FP32,
) -> Path:
    """Quantize ``checkpoint`` and write ``model_int8.xml``/``.bin`` and ``int8.json`` (no agreement yet) into
    ``folder`` (default: beside the checkpoint; another folder gets a copy of the checkpoint, so it is a
    complete model folder). Returns the checkpoint that the int8 model belongs to."""
    from volseg.runtime.checkpoint import load_model

    require_nncf()
    model, cfg, checkpoint = load_model(checkpoint)
    folder = Path(folder) if folder else checkpoint.parent
    if folder.resolve() != checkpoint.parent.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkpoint, folder / checkpoint.name)
        checkpoint = folder / checkpoint.name
    if not os.access(folder, os.W_OK):
        raise QuantizeError(
            f"{folder}: not writable; give -o FOLDER for the int8 model (the checkpoint is copied there)"
        )
    images, _ = training_images(cfg, calibration)
    (folder / RECORD_NAME).unlink(missing_ok=True)  # the old record must never describe the new model
    windows = calibration_windows(model, cfg, images, count)
    quantize(checkpoint_onnx(model, cfg, checkpoint), windows, folder / IR_NAME, keep_fp32)
    write_record(
        folder,
        {
            "checkpoint": checkpoint.name,
            "checkpoint_sha256": file_digest(checkpoint),
            "calibration": {
                "source": str(calibration or cfg.data.manifest),
                "images": len(images),
                "windows": len(windows),
            },
            "keep_fp32": list(keep_fp32),
            "nncf": _version("nncf"),
            "openvino": _version("openvino"),
        },
    )
    return checkpoint


def write_record(folder: Path, record: dict, name: str = RECORD_NAME) -> None:
    write_text_atomic(Path(folder) / name, json.dumps(record, indent=1) + "\n")


def read_record(folder: Path, name: str = RECORD_NAME) -> dict | None:
    """A record written by :func:`write_record` (int8.json, bf16.json), or None where there is none."""
    path = Path(folder) / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
