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
    from volseg.inference.model_spec import read_model_spec
    from volseg.runtime.quantize import RECORD_NAME, measure_agreement, write_record

    spec = read_model_spec(model)
    if spec.kind == "totalsegmentator":
        raise VolsegError(
            f"{model}: export a TotalSegmentator task's part folders one by one (each is an nnU-Net folder)"
        )
    nnunet = spec.path if spec.kind == "nnunet" else None
    if nnunet is not None:
        from volseg.nnunet.int8 import export_twin
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
        record_path = written / RECORD_NAME

        def segmenter(precision: str):
            return NnunetSegmenter(nnunet, backend="openvino", precision=precision)
    else:
        from volseg.inference.zoo_segmenter import ZooSegmenter
        from volseg.runtime.quantize import IR_NAME, export_int8

        checkpoint = export_int8(spec.path, folder, calibration)
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


def export_model(
    model: Path,
    precision: str,
    output: Path | None = None,
    calibration: Path | None = None,
    check: Path | None = None,
    check_split: str = "val",
) -> list[str]:
    """``volseg export``: fp32 ONNX (``output`` is the file) or the int8 model and its measured agreement. Returns
    the lines that tell a user what was written, the agreement per label and the verdict ``--precision auto``
    will act on."""
    if precision == "fp32":
        from volseg.inference.model_spec import read_model_spec
        from volseg.runtime.checkpoint import load_model
        from volseg.runtime.onnx_export import export_onnx

        if output is None:
            raise VolsegError("--output FILE.onnx is needed for an fp32 export")
        spec = read_model_spec(model)
        if spec.kind != "volseg":
            raise VolsegError(f"{model}: fp32 ONNX export is for volseg models; an nnU-Net folder exports int8 only")
        network, cfg, checkpoint = load_model(spec.path)
        export_onnx(network, cfg, output)
        return [f"wrote {output} ({cfg.model.name} {cfg.model.dims}D from {checkpoint})"]
    if precision != "int8":
        raise VolsegError(f"--precision must be fp32 or int8, got {precision!r}")
    done = export_int8_and_measure(model, output, calibration, check, check_split)
    calibrated = f"{done.record['calibration']['windows']} windows of {done.calibration}"
    return [f"wrote {done.written} (int8, calibrated on {calibrated})", *agreement_lines(done, check_split)]


def agreement_lines(done: Int8Export, check_split: str) -> list[str]:
    """The int8 agreement per label, and the verdict: does ``--precision auto`` use the int8 model?"""
    from volseg.runtime.quantize import MIN_AGREEMENT, agrees

    agreement = done.record.get("agreement")
    if not agreement:
        return [
            f"agreement not measured (no {check_split!r} cases: give --check MANIFEST --check-split SPLIT); "
            "--precision auto will keep fp32 for this model"
        ]
    lines = []
    for name, worst in agreement["dice_vs_fp32_min"].items():
        ref = agreement["dice_vs_reference"]
        against = (
            f"; vs reference {ref['fp32'][name]:.4f} fp32, {ref['int8'][name]:.4f} int8"
            if ref["fp32"].get(name) is not None
            else ""
        )
        mean = agreement["dice_vs_fp32_mean"][name]
        lines.append(f"  {name}: int8 vs fp32 Dice mean {mean:.4f}, worst {worst:.4f}{against}")
    verdict = (
        "--precision auto uses it on CPU"
        if agrees(done.record)
        else f"below {MIN_AGREEMENT}: --precision auto keeps fp32 (--precision int8 forces it)"
    )
    return [*lines, f"{agreement['cases']} cases; recorded in {done.record_path}: {verdict}"]
