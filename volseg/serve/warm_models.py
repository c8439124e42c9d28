"""The models a server keeps open: each ``--model`` opened once per precision offered, described for ``/info/``
as MONAI Label's clients read it, and segmenting one stored image per request.

What Slicer's module needs of an answer decides the shape of a result: a uint8 label map on the input's grid
whose values run 1..N with no gap, and ``label_names`` mapping each name to its value. volseg's label values
(an nnU-Net region-based dataset's ``regions_class_order`` among them) are renumbered 1..N in value order; the
label map itself is the one ``volseg infer`` writes for the same file (the same reader, model and writer).
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volseg.data import io
from volseg.data.scan_screen import ScanRefused, mismatch
from volseg.errors import VolsegError
from volseg.inference.inputs import CaseInput
from volseg.inference.open_model import InferenceOptions, open_segmenter
from volseg.serve.refusal import RequestRefused

RESULT_EXTENSIONS = (".nrrd", ".nii.gz")


@dataclass(frozen=True)
class Request:
    """What a client may choose per request (the model's ``config`` in ``/info/``) and the answer's format."""

    tta: bool = False
    precision: str | None = None  # None: the model's first
    extension: str = ".nii.gz"


@dataclass(frozen=True)
class Segmented:
    payload: bytes  # the label file
    extension: str
    label_names: dict[str, int]
    seconds: dict[str, float]  # read, predict (what `volseg infer` does per case), write


class WarmModel:
    """One ``--model``, open: an engine per precision offered (the first is the default)."""

    def __init__(self, key: str, engines: dict) -> None:
        self.key, self.engines = key, engines
        self.info = next(iter(engines.values())).info
        self.values = sorted(self.info.labels)  # label value -> 1..N in this order
        self.label_names = {self.info.labels[v]: i + 1 for i, v in enumerate(self.values)}
        # a zoo model or nnU-Net folder trained mirrored; TotalSegmentator's parts run without mirroring here
        self.offers_tta = all(bool(getattr(e, "mirror_axes", None)) for e in engines.values())

    def describe(self) -> dict:
        config: dict = {"tta": False} if self.offers_tta else {}
        if len(self.engines) > 1:
            config["precision"] = list(self.engines)  # a list: Slicer shows a choice, the first selected
        return {
            "type": "segmentation",
            "labels": self.label_names,
            "dimension": 3,
            "description": f"{self.info.summary} ({self.info.modality}), {', '.join(self.engines)}",
            "config": config,
        }

    def request(self, params: str | None) -> Request:
        """The ``params`` field of ``POST /infer/{model}``, checked (a 400 names what is wrong)."""
        try:
            values = json.loads(params) if params else {}
        except json.JSONDecodeError:
            raise RequestRefused(400, "params: not JSON") from None
        if not isinstance(values, dict):
            raise RequestRefused(400, "params: expected a JSON object")
        tta = values.get("tta", False)
        if not isinstance(tta, bool) or (tta and not self.offers_tta):
            raise RequestRefused(400, f"params.tta: {self.key} takes false{' or true' if self.offers_tta else ''}")
        precision = values.get("precision")
        if precision is not None and precision not in self.engines:
            raise RequestRefused(400, f"params.precision: {self.key} offers {', '.join(self.engines)}")
        extension = values.get("result_extension") or ".nii.gz"
        if extension not in RESULT_EXTENSIONS:
            raise RequestRefused(400, f"params.result_extension: one of {', '.join(RESULT_EXTENSIONS)}")
        if values.get("result_dtype", "uint8") != "uint8" or len(self.values) > 255:
            raise RequestRefused(400, "params.result_dtype: label maps are uint8 (at most 255 labels)")
        return Request(tta, precision, extension)

    def segment(self, image: Path, request: Request) -> Segmented:
        """Segment a stored image as ``volseg infer`` would (runs in the inference thread, one at a time)."""
        engine = self.engines[request.precision or next(iter(self.engines))]
        if self.offers_tta:
            engine.tta = request.tta
        started = time.perf_counter()
        try:
            data = engine.load(CaseInput("image", (image,)), self._refuse_unlike(engine))
            read = time.perf_counter()
            labels, _ = engine.predict(data)
        except ScanRefused as e:
            raise RequestRefused(422, str(e)) from None
        except (VolsegError, ValueError, OSError) as e:  # the model cannot read or segment this image
            raise RequestRefused(
                422, f"{self.key} cannot segment this image: {e}".replace(str(image), "image")
            ) from None
        predicted = time.perf_counter()
        lookup = np.zeros(max(self.values) + 1, dtype=np.uint8)
        lookup[self.values] = np.arange(1, len(self.values) + 1)
        payload = _label_file(lookup[labels], data["image"], request.extension)
        seconds = {"read": read - started, "predict": predicted - read, "write": time.perf_counter() - predicted}
        return Segmented(payload, request.extension, self.label_names, seconds)

    def _refuse_unlike(self, engine):
        """The check a scan gets as soon as it is read: what ``volseg infer --strict`` refuses, refused."""

        def check(voxels, affine) -> None:
            if why := mismatch(engine.info.training_scans, voxels, affine):
                raise ScanRefused(f"{self.key} refuses this image: {why}")

        return check


def open_models(models: list[str], options: InferenceOptions, precisions: list[str]) -> dict[str, WarmModel]:
    """Each model opened once per precision (precisions that resolve to the same engine count once), keyed by a
    URL-safe name; any model that cannot open stops the start-up with its one-line error."""
    warm: dict[str, WarmModel] = {}
    for model in models:
        engines: dict = {}
        for precision in precisions:
            engine = open_segmenter(model, dataclasses.replace(options, precision=precision))
            engines.setdefault(engine.precision, engine)
        key = _unique(re.sub(r"[^A-Za-z0-9._-]+", "_", engines[next(iter(engines))].info.name), warm)
        warm[key] = WarmModel(key, engines)
    return warm


def _unique(key: str, taken: dict) -> str:
    n, candidate = 2, key
    while candidate in taken:
        candidate, n = f"{key}-{n}", n + 1
    return candidate


def _label_file(labels: np.ndarray, reference, extension: str) -> bytes:
    """The label map as a file on the reference's grid: written by ``volseg infer``'s own writer (NIfTI), then
    converted by SimpleITK when NRRD is asked for (geometry kept)."""
    with tempfile.TemporaryDirectory(prefix="volseg-serve-") as folder:
        nifti = io.write_label(labels, reference, Path(folder) / f"{secrets.token_hex(4)}.nii.gz")
        if extension == ".nrrd":
            import SimpleITK as sitk

            nrrd = nifti.with_suffix("").with_suffix(".nrrd")
            sitk.WriteImage(sitk.ReadImage(str(nifti)), str(nrrd), useCompression=True)
            return nrrd.read_bytes()
        return nifti.read_bytes()
