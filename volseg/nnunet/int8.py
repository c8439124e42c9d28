"""The OpenVINO int8 twin of an nnU-Net model folder: ``volseg export NNUNET_FOLDER --precision int8``.

The user's nnU-Net folder is never written to. The twin lives in volseg's cache, named by the digest of the
fold checkpoints it was made from, and holds a copy of ``plans.json`` and ``dataset.json``, one int8
OpenVINO model per fold (NNCF post-training quantization, calibrated on windows the model's own sliding
window cuts from given cases) and ``int8.json``: where it came from and, once measured, the agreement of its
labels with fp32's. ``--precision auto`` runs it only where that worst per-label agreement is at least
:data:`volseg.runtime.quantize.MIN_AGREEMENT`, as for volseg's own models.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from volseg.nnunet.model_folder import ModelFolder
from volseg.nnunet.sliding_window import pad_to_patch, predict_logits
from volseg.runtime.cache import cache_folder
from volseg.runtime.quantize import (  # one record for every twin
    BF16_RECORD_NAME,
    IR_NAME,
    RECORD_NAME,
    read_record,
    write_record,
)

# The segmentation head (the last convolution, 1x1x1, writing the logits) stays fp32. On the 3 mm CT model
# it raised int8's liver Dice vs fp32 from 0.957/0.983/0.959 to 0.975/0.992/0.978 (Philips/bundled/IRCADb)
# for a window 0.88 -> 0.91 s (benchmarks/results/nnunet_int8_variants.md).
KEEP_FP32 = ("last",)


def twin_folder(model: ModelFolder) -> Path:
    """The cache folder of this model's folds (their checkpoints' content, not their path)."""
    from volseg.runtime.cache import file_digest

    digest = hashlib.sha256("".join(file_digest(c) for c in model.checkpoints).encode()).hexdigest()[:16]
    return cache_folder() / "nnunet_int8" / digest


def read_bf16(model: ModelFolder) -> dict | None:
    """The bf16 agreement measured for this model's folds (``volseg export --precision bf16``), or None."""
    record = read_record(twin_folder(model), BF16_RECORD_NAME)
    return record if record and record.get("folds") == model.folds else None


def read_twin(model: ModelFolder) -> dict | None:
    """The twin's record, or None when this model's folds have no int8 twin."""
    record = read_record(twin_folder(model))
    if record is None:
        return None
    complete = all((twin_folder(model) / f"fold_{f}" / IR_NAME).is_file() for f in model.folds)
    return record if complete and record.get("folds") == model.folds else None


def calibration_windows(segmenter, cases, count: int = 40, seed: int = 0) -> list[np.ndarray]:
    """``count`` network inputs from the model's own preprocessing over ``cases``: the sliding window's tiles
    (at most ceil(count / cases) from each, chosen at random within it), topped up with patches at random
    positions, flipped at random over the model's mirroring axes, where a case has fewer tiles than that (a CT
    at 3 mm can be one or two tiles: calibrating on those alone sees one view of the body)."""
    rng = random.Random(seed)
    cases = rng.sample(list(cases), len(cases))
    per_case = -(-count // max(1, min(count, len(cases))))
    windows: list[np.ndarray] = []
    model = segmenter.model
    for case in cases:
        if len(windows) >= count:
            break
        kept, seen = [], 0

        def record(x: torch.Tensor) -> torch.Tensor:
            nonlocal seen
            seen += 1
            if len(kept) < per_case:
                kept.append(x.numpy().copy())
            elif (slot := rng.randrange(seen)) < per_case:
                kept[slot] = x.numpy().copy()
            return torch.zeros(x.shape[0], model.labels.heads, *x.shape[2:])

        prepared = segmenter.load(case)["prepared"]
        patch = tuple(int(p) for p in model.configuration["patch_size"])
        predict_logits(prepared.data, [record], patch, model.labels.heads)
        padded, _ = pad_to_patch(prepared.data, patch)
        while len(kept) < per_case:
            kept.append(_random_patch(padded, patch, model.mirror_axes, rng))
        windows += kept
    return windows[:count]


def _random_patch(padded: torch.Tensor, patch: tuple[int, ...], mirror_axes, rng: random.Random) -> np.ndarray:
    spatial = padded.shape[1:]
    lead = len(spatial) - len(patch)  # a 2D model's slice axis
    start = [rng.randrange(s - p + 1) for s, p in zip(spatial[lead:], patch)]
    index = [rng.randrange(s) for s in spatial[:lead]] + [slice(a, a + p) for a, p in zip(start, patch)]
    window = padded[(slice(None), *index)][None]
    flips = [a + 2 for a in (mirror_axes or ()) if rng.random() < 0.5]
    return (torch.flip(window, flips) if flips else window).numpy().copy()


def export_twin(segmenter, calibration_cases, count: int = 40) -> Path:
    """Quantize every fold of ``segmenter`` (an fp32 NnunetSegmenter) and write the twin; returns its folder.
    Any earlier record is removed first: a record must never describe other int8 models."""
    from volseg.runtime.onnx_export import export_onnx_for
    from volseg.runtime.quantize import QuantizeError, file_digest, quantize

    model = segmenter.model
    folder = twin_folder(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_NAME).unlink(missing_ok=True)
    if not calibration_cases:
        raise QuantizeError("no calibration cases: give --calibration FOLDER_OR_MANIFEST with scans the model is for")
    windows = calibration_windows(segmenter, calibration_cases, count)
    patch = tuple(model.configuration["patch_size"])
    for fold, network in zip(model.folds, segmenter.networks):
        onnx = folder / f"fold_{fold}" / "model_fp32.onnx"
        onnx.parent.mkdir(exist_ok=True)
        export_onnx_for(network, torch.zeros(1, model.channels, *patch), onnx)
        quantize(onnx, windows, folder / f"fold_{fold}" / IR_NAME, KEEP_FP32)
        onnx.unlink()
    for name in ("plans.json", "dataset.json"):
        shutil.copy2(model.path / name, folder / name)
    write_record(
        folder,
        {
            "source": str(model.path),
            "folds": model.folds,
            "checkpoints_sha256": [file_digest(c) for c in model.checkpoints],
            "calibration": {"cases": len(calibration_cases), "windows": len(windows)},
            "keep_fp32": list(KEEP_FP32),
        },
    )
    return folder
