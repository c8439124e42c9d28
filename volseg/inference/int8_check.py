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
    if precision == "bf16":
        done = measure_bf16(model, check, check_split)
        return [f"measured bf16 against fp32 for {model}", *agreement_lines(done, check_split, "bf16")]
    if precision != "int8":
        raise VolsegError(f"--precision must be fp32, bf16 or int8, got {precision!r}")
    done = export_int8_and_measure(model, output, calibration, check, check_split)
    calibrated = f"{done.record['calibration']['windows']} windows of {done.calibration}"
    return [f"wrote {done.written} (int8, calibrated on {calibrated})", *agreement_lines(done, check_split)]


def measure_bf16(model: Path, check: Path | None, check_split: str = "val") -> Int8Export:
    """bf16 (OpenVINO running the fp32 model at bf16 precision) against fp32 on ``check``'s ``check_split``,
    recorded as ``bf16.json`` where ``--precision auto`` looks for it: beside a volseg checkpoint, or in an
    nnU-Net model's cache folder. Needs a CPU that computes bf16 natively, as running it does."""
    import torch

    from volseg.inference.model_spec import read_model_spec
    from volseg.runtime.backends import require_bf16
    from volseg.runtime.quantize import BF16_RECORD_NAME, file_digest, measure_agreement, write_record

    require_bf16("openvino", torch.device("cpu"))
    cases, source = _check_cases(check, None, check_split)
    if not cases:
        raise VolsegError(
            f"--precision bf16 measures bf16 against fp32: give --check MANIFEST with {check_split!r} cases"
        )
    spec = read_model_spec(model)
    if spec.kind == "nnunet":
        from volseg.nnunet.int8 import twin_folder
        from volseg.nnunet.segmenter import NnunetSegmenter

        def segmenter(precision: str):
            return NnunetSegmenter(spec.path, backend="openvino", precision=precision)

        fp32 = segmenter("fp32")
        folder, identity = twin_folder(fp32.model), {"folds": fp32.model.folds}
    elif spec.kind == "volseg":
        from volseg.inference.zoo_segmenter import ZooSegmenter
        from volseg.runtime.checkpoint import resolve_checkpoint

        checkpoint = resolve_checkpoint(spec.path)

        def segmenter(precision: str):
            return ZooSegmenter(checkpoint, "cpu", backend="openvino", precision=precision)

        fp32 = segmenter("fp32")
        folder, identity = checkpoint.parent, {"checkpoint_sha256": file_digest(checkpoint)}
    else:
        raise VolsegError(f"{model}: measure a TotalSegmentator task's part folders one by one")
    agreement = measure_agreement(fp32, segmenter("bf16"), cases, "bf16")
    record = {"precision": "bf16", **identity, "agreement": {"check": f"{source} split {check_split}", **agreement}}
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder, record, BF16_RECORD_NAME)
    return Int8Export(folder, folder / BF16_RECORD_NAME, record, "")


def agreement_lines(done: Int8Export, check_split: str, name: str = "int8") -> list[str]:
    """The int8 (or bf16) agreement per label, and the verdict: does ``--precision auto`` use it?"""
    from volseg.runtime.quantize import MIN_AGREEMENT, agrees

    agreement = done.record.get("agreement")
    if not agreement:
        return [
            f"agreement not measured (no {check_split!r} cases: give --check MANIFEST --check-split SPLIT); "
            "--precision auto will keep fp32 for this model"
        ]
    lines = []
    for label, worst in agreement["dice_vs_fp32_min"].items():
        ref = agreement["dice_vs_reference"]
        against = (
            f"; vs reference {ref['fp32'][label]:.4f} fp32, {ref[name][label]:.4f} {name}"
            if ref["fp32"].get(label) is not None
            else ""
        )
        mean = agreement["dice_vs_fp32_mean"][label]
        lines.append(f"  {label}: {name} vs fp32 Dice mean {mean:.4f}, worst {worst:.4f}{against}")
    verdict = (
        "--precision auto uses it on CPU" + (" (where no agreeing int8 model is)" if name == "bf16" else "")
        if agrees(done.record)
        else f"below {MIN_AGREEMENT}: --precision auto keeps fp32 (--precision {name} forces it)"
    )
    return [*lines, f"{agreement['cases']} cases; recorded in {done.record_path}: {verdict}"]
