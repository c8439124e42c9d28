"""``volseg export --precision int8``: the int8 model of a volseg checkpoint, or the int8 twin of an nnU-Net
folder, and the agreement of its labels with fp32's measured on given cases and recorded beside it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from volseg.errors import VolsegError


@dataclass
class Int8Export:
    written: Path  # the int8 model (volseg) or twin folder (nnU-Net)
    record_path: Path  # int8.json
    record: dict  # its content; "agreement" when it was measured
    calibration: str  # what it was calibrated on


def _check_cases(check: Path | None, calibration: Path | None, split: str) -> tuple[list, Path | None]:
    from volseg.data.manifest import read_manifest

    source = check or (calibration if calibration and calibration.suffix.lower() == ".csv" else None)
    return ([c for c in read_manifest(source) if c.split == split] if source else []), source


def export_int8_and_measure(
    model: Path,
    folder: Path | None = None,
    calibration: Path | None = None,
    check: Path | None = None,
    check_split: str = "val",
) -> Int8Export:
    """Quantize, then measure int8 against fp32 on ``check``'s ``check_split`` (default: the calibration
    manifest's) through OpenVINO, and record it; without check cases the record has no agreement, so
    ``--precision auto`` keeps fp32."""
    from volseg.nnunet.model_folder import find_model_folder
    from volseg.runtime.quantize import measure_agreement

    nnunet = find_model_folder(model) if Path(model).is_dir() else None
    if nnunet is not None:
        from volseg.nnunet.int8 import RECORD, export_twin, write_record
        from volseg.nnunet.segmenter import NnunetSegmenter

        if folder is not None:
            raise VolsegError("an nnU-Net model's int8 twin goes to volseg's cache ($VOLSEG_CACHE); -o does not apply")
        if calibration is None:
            raise VolsegError(
                "--calibration FOLDER_OR_MANIFEST: scans of the kind the model is for (a manifest's train split)"
            )
        from volseg.inference.inputs import collect_inputs

        cases = collect_inputs([calibration], split="train" if calibration.suffix.lower() == ".csv" else None)
        written = export_twin(NnunetSegmenter(nnunet, backend="torch"), cases)
        record_path = written / RECORD

        def segmenter(precision: str):
            return NnunetSegmenter(nnunet, backend="openvino", precision=precision)
    else:
        from volseg.inference.zoo_segmenter import ZooSegmenter
        from volseg.pretrained import resolve_model
        from volseg.runtime.quantize import IR_NAME, RECORD_NAME, export_int8, write_record

        checkpoint = export_int8(resolve_model(model), folder, calibration)
        written, record_path = checkpoint.parent / IR_NAME, checkpoint.parent / RECORD_NAME

        def segmenter(precision: str):
            return ZooSegmenter(checkpoint, "cpu", backend="openvino", precision=precision)

    record = json.loads(record_path.read_text(encoding="utf-8"))
    cases, source = _check_cases(check, calibration, check_split)
    if cases:
        record["agreement"] = {
            "check": f"{source} split {check_split}",
            **measure_agreement(segmenter("fp32"), segmenter("int8"), cases),
        }
        write_record(record_path.parent, record)
    return Int8Export(written, record_path, record, str(record["calibration"].get("source", calibration)))
