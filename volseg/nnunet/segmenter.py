"""An nnU-Net v2 model folder as a volseg segmenter (:class:`~volseg.inference.segmenter.CaseSegmenter`).

The scan is read by volseg (NIfTI, NRRD/MHA, DICOM series), presented to the model as nnU-Net's reader would
present it ((C, z, y, x) with SimpleITK's axis order and spacing), preprocessed, predicted with every fold,
exported, and its labels written on the scan's own grid.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from volseg.data import io
from volseg.errors import VolsegError
from volseg.inference.segmenter import ModelInfo, ScanCheck
from volseg.nnunet.model_folder import ModelFolder, NnunetFolderError
from volseg.nnunet.network import build_network, load_weights
from volseg.nnunet.preprocess import logits_to_labels, preprocess
from volseg.nnunet.sliding_window import mirrored, predict_logits
from volseg.runtime import backends, onnx_export
from volseg.runtime.predict import autocast

READERS = ("SimpleITKIO", "NibabelIO", "NibabelIOWithReorient")


def source_spacing(image) -> list[float]:
    """The voxel spacing nnU-Net's readers report, (x, y, z): a NIfTI's pixdim, else the affine's columns."""
    header = image.meta.get("nifti_header")
    if header is not None:
        header_class = nib.Nifti2Header if len(header) == 540 else nib.Nifti1Header
        return [float(z) for z in header_class(binaryblock=bytes(header)).get_zooms()[:3]]
    return [float(v) for v in np.linalg.norm(np.asarray(image.meta["original_affine"], float)[:3, :3], axis=0)]


class NnunetSegmenter:
    """Every fold of a model folder (``folds`` to choose), nnU-Net's preprocessing and export around them."""

    def __init__(
        self,
        folder: str | Path,
        device: torch.device | str = "cpu",
        tta: bool = False,
        folds: list[str] | None = None,
        checkpoint: str = "final",
        keep_largest: bool = False,
        overlap: float = 0.5,
        backend: str = "torch",
        precision: str = "fp32",
    ):
        self.model = ModelFolder.open(folder, folds, checkpoint)
        reader = str(self.model.plans.get("image_reader_writer", "SimpleITKIO"))
        if reader not in READERS:
            raise NnunetFolderError(
                f"{self.model.path / 'plans.json'}: image reader {reader!r} is not supported "
                f"(supported: {', '.join(READERS)})"
            )
        self.reorient = reader == "NibabelIOWithReorient"
        self.device = torch.device(device)
        self.tta, self.keep_largest, self.step = tta, keep_largest, 1.0 - overlap
        if not 0.0 < self.step <= 1.0:
            raise VolsegError(f"--overlap must be in [0, 1), got {overlap}")
        self.backend, self.precision, self.int8 = self._engine_choice(backend, precision)
        self.forwards = [self._engine(i) for i in range(len(self.model.folds))]
        folds = ",".join(self.model.folds)
        self.info = ModelInfo(
            name=self.model.name,
            source=self.model.path,
            summary=f"nnU-Net {self.model.configuration_name}, fold{'s' if len(self.model.folds) > 1 else ''} "
            f"{folds}{', mirroring TTA' if tta and self.mirror_axes else ''}",
            labels=dict(self.model.labels.names),
            modality=self.model.modality,
            training_scans=self.model.training_scans,
        )

    @functools.cached_property
    def networks(self) -> list[torch.nn.Module]:
        """Every fold's torch network, built when first needed (the torch backend, an ONNX or int8 export): an
        OpenVINO run from a cached ONNX file or int8 twin never builds them, 0.5 s of a 3D CT model's start-up."""
        first = build_network(self.model).to(self.device)
        networks = [first]
        for weights, source in zip(self.model.weights[1:], self.model.checkpoints[1:]):
            network = copy.deepcopy(first)
            load_weights(network, weights, source)
            networks.append(network.eval())
        self.model.weights = []  # loaded into the networks; not kept twice
        return networks

    @property
    def mirror_axes(self) -> tuple[int, ...] | None:
        return self.model.mirror_axes

    def _engine_choice(self, backend: str, precision: str) -> tuple[str, str, Path | None]:
        """(backend, precision, the int8 twin's folder when int8 runs), by volseg's one precision policy
        (:func:`~volseg.runtime.backends.choose_engine`); a twin is made by ``volseg export``, never here."""
        from volseg.nnunet.int8 import read_bf16, read_twin, twin_folder

        record = read_twin(self.model) if precision in ("auto", "int8") else None
        bf16 = read_bf16(self.model) if precision == "auto" else None
        backend, precision = backends.choose_engine(backend, precision, self.device, record, bf16)
        if precision != "int8":
            return backend, precision, None
        if record is None:
            raise VolsegError(
                f"{self.model.path}: no int8 twin for these folds; make it with `volseg export "
                f"{self.model.path} --precision int8 --calibration CASES`"
            )
        return backend, precision, twin_folder(self.model)

    def _engine(self, index: int):
        """Fold ``index``'s window -> logits function on the chosen backend (ONNX exported once per checkpoint
        and architecture)."""
        if self.int8 is not None:
            from volseg.nnunet.int8 import IR_NAME

            return backends.openvino_backend(self.int8 / f"fold_{self.model.folds[index]}" / IR_NAME)
        if self.backend == "torch":
            network = self.networks[index]

            def forward(x: torch.Tensor) -> torch.Tensor:
                with autocast(self.device):  # fp16 on CUDA, as nnU-Net's predictor runs there; nothing on CPU
                    return network(x.to(self.device)).float().cpu()

            return forward
        patch = tuple(self.model.configuration["patch_size"])
        example = torch.zeros(1, self.model.channels, *patch)
        architecture = json.dumps(self.model.configuration["architecture"], sort_keys=True).encode()
        onnx = onnx_export.cached_onnx(
            self.model.checkpoints[index],
            f"-nnunet-{'x'.join(map(str, patch))}-{hashlib.sha256(architecture).hexdigest()[:8]}",
            lambda path: onnx_export.export_onnx_for(self.networks[index], example, path),
        )
        if self.backend == "onnxruntime":
            return backends.onnxruntime_backend(onnx)
        return backends.openvino_backend(onnx, self.precision)

    def read(self, case) -> io.Scan:
        """The case's scan as read, (C, X, Y, Z): no MONAI on this path (see :mod:`volseg.data.io`)."""
        return io.read_scans(case.images)

    def load(self, case, check: ScanCheck | None = None) -> dict:
        started = time.perf_counter()
        image = self.read(case)
        if check is not None:
            check(image.array, image.affine)
        if image.shape[0] != self.model.channels:
            raise VolsegError(
                f"{case.source}: the model takes {self.model.channels} channel(s) "
                f"({self.model.dataset.get('channel_names')}), the case has {image.shape[0]}"
            )
        read = time.perf_counter()
        array, spacing = image.array, source_spacing(image)
        ornt = None
        if self.reorient:
            ornt = nib.orientations.io_orientation(np.asarray(image.meta["original_affine"], float))
            array = np.stack([nib.orientations.apply_orientation(c, ornt) for c in array])
            spacing = [spacing[int(axis)] for axis in ornt[:, 0]]
        prepared = preprocess(array.transpose(0, 3, 2, 1), spacing[::-1], self.model)
        return {
            "image": image,
            "source_image": image,
            "prepared": prepared,
            "orientation": ornt,
            "timings": {"read": read - started, "preprocess": time.perf_counter() - read},
        }

    def predict(self, data: dict, split_sides: bool = True) -> tuple[np.ndarray, None]:
        timings = data.setdefault("timings", {})
        prepared = data["prepared"]
        started = time.perf_counter()
        axes = self.mirror_axes if self.tta else None
        with torch.inference_mode():
            logits = predict_logits(
                prepared.data,
                [mirrored(f, axes) for f in self.forwards],
                self.model.configuration["patch_size"],
                self.model.labels.heads,
                self.step,
            )
        predicted = time.perf_counter()
        labels = logits_to_labels(logits, prepared, self.model).transpose(2, 1, 0)
        if data.get("orientation") is not None:
            back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), data["orientation"])
            labels = nib.orientations.apply_orientation(labels, back)
        if self.keep_largest:
            from volseg.runtime.postprocess import keep_largest_component

            labels = keep_largest_component(labels, list(self.model.labels.names))
        timings.update(network=predicted - started, export=time.perf_counter() - predicted)
        return labels, None
