"""Which NNCF settings make an nnU-Net model's int8 labels agree with its fp32 labels (issue 30, int8 >= 0.99).

    python benchmarks/nnunet_int8_variants.py --model NNUNET_FOLDER --calibration CT [CT ...]
        --case NAME=CT [NAME=CT ...] [--variant default last mixed ...] [--count 40] [--work runs/int8_variants]

Calibration windows are what volseg's twin export cuts from ``--calibration`` (its
``volseg.nnunet.int8.calibration_windows``, ``--count`` of them). Each ``--variant`` quantizes the model's fp32
ONNX with NNCF from those windows; every ``--case`` is then segmented (TTA off) through the fp32 model and the
int8 model, both in OpenVINO, and the int8 labels are scored against the fp32 labels (Dice per label present in
either; the worst label is the figure ``--precision auto`` judges). Also timed: one window of each int8 model
(median of 5 after a warm-up; run it alone for that column).

Variants: ``default`` (NNCF's defaults, what volseg's own models use), ``last`` (the last convolution, which
writes the logits, kept in fp32), ``first_last``, ``mixed`` (``QuantizationPreset.MIXED``: asymmetric
activations), ``no_overflow_fix`` (8-bit weights in the first layer too; safe on VNNI CPUs), ``full_bias``
(NNCF's full bias correction), ``accuracy_control`` (``nncf.quantize_with_accuracy_control`` with the
agreement of labels on the calibration windows as its metric, ``--max-drop``, after keeping the last
convolution in fp32: it reverts layers to fp32 until the windows agree).

Results are added to ``--out``/nnunet_int8_variants.{json,md}, keyed by variant and calibration, so runs with
other calibrations (e.g. leaving each test CT out) add rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, seconds_per_call, write  # noqa: E402

VARIANTS = ("default", "last", "first_last", "mixed", "no_overflow_fix", "full_bias", "accuracy_control")


def nncf_arguments(variant: str) -> dict:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    return {
        "mixed": {"preset": nncf.QuantizationPreset.MIXED},
        "no_overflow_fix": {"advanced_parameters": AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE)},
        "full_bias": {"fast_bias_correction": False},
    }.get(variant, {})


def quantize_variant(onnx: Path, windows: list[np.ndarray], variant: str, destination: Path, max_drop: float) -> Path:
    import nncf
    import openvino as ov

    from volseg.runtime.quantize import kept_convolutions

    core = ov.Core()
    model = core.read_model(str(onnx))
    keep = {"last": ("last",), "first_last": ("first_last",), "accuracy_control": ("last",)}.get(variant, ())
    scope = nncf.IgnoredScope(names=kept_convolutions(model, keep))
    if variant == "accuracy_control":
        fp32 = core.compile_model(model, "CPU")
        reference = [fp32(w)[fp32.outputs[0]].argmax(1) for w in windows]
        index = {id(w): i for i, w in enumerate(windows)}

        def agreement(compiled, data) -> tuple[float, list[float]]:
            """Dice of all foreground labels together, int8 argmax vs fp32 argmax, over the windows."""
            overlap = total = 0
            per_window = []
            for w in data:
                a, b = compiled(w)[compiled.outputs[0]].argmax(1), reference[index[id(w)]]
                same, both = int(((a == b) & (a > 0)).sum()), int((a > 0).sum() + (b > 0).sum())
                overlap, total = overlap + same, total + both
                per_window.append(2 * same / both if both else 1.0)
            return (2 * overlap / total if total else 1.0), per_window

        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        quantized = nncf.quantize_with_accuracy_control(
            model,
            nncf.Dataset(windows),
            nncf.Dataset(windows),
            agreement,
            max_drop=max_drop,
            subset_size=len(windows),
            ignored_scope=scope,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(ranking_subset_size=12),
        )
    else:
        quantized = nncf.quantize(
            model, nncf.Dataset(windows), subset_size=len(windows), ignored_scope=scope, **nncf_arguments(variant)
        )
    ov.save_model(quantized, str(destination), compress_to_fp16=False)
    return destination


def labels(segmenter, data: dict, forward) -> np.ndarray:
    """The case's labels through ``forward`` (one fold's window -> logits) and the segmenter's own pipeline."""
    segmenter.forwards = [forward]
    return segmenter.predict(data)[0]


def dice_per_label(a: np.ndarray, b: np.ndarray, names: dict) -> dict[str, float]:
    """volseg's Dice per label, for the labels present in either map."""
    from volseg.evaluation.metrics import dice_per_label as dice

    present = [v for v in names if (a == v).any() or (b == v).any()]
    return {names[v]: d for v, d in dice(a, b, present).items()}


def reverted(xml: Path) -> int:
    """Convolutions whose weights are a bare fp32 constant (int8 ones are int8 constants scaled back): kept or
    reverted to fp32."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    convolutions = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    return sum(op.input_value(1).get_node().get_type_name() == "Constant" for op in convolutions)


def markdown(rows: list[dict]) -> list[str]:
    cases = sorted({c for r in rows for c in r["cases"]})
    lines = [
        "# nnU-Net int8 twins: NNCF settings against agreement with fp32 (issue 30)",
        "",
        "Each row: one NNCF quantization of the model's fp32 ONNX from calibration windows cut by volseg's twin "
        "export, then every CT segmented (TTA off) through OpenVINO fp32 and int8; Dice of the int8 labels against "
        "the fp32 labels, worst label per CT (all labels' Dice in the JSON). fp32 convolutions: those left "
        "without int8 weights. s per window: one int8 window, median of 5.",
        "",
        "| model | calibration | variant | fp32 convolutions | s per window | " + " | ".join(cases) + " | quantize s |",
        "|---" * (6 + len(cases)) + "|",
    ]
    for r in rows:
        worst = [
            f"{min(r['cases'][c]['dice_vs_fp32'].values()):.4f}"
            if c in r["cases"] and r["cases"][c]["dice_vs_fp32"]
            else "—"
            for c in cases
        ]
        lines.append(
            f"| {r['model']} | {r['calibration']} | {r['variant']} | {r['fp32_convolutions']} | "
            f"{r['window_s']:.3f} | " + " | ".join(worst) + f" | {r['quantize_s']:.0f} |"
        )
    lines += ["", "Rows made by:"]
    for made in {r["made"]["command"]: r["made"] for r in rows}.values():
        lines.append(f"- `{made['command']}` ({made['date']}, commit {made['commit']})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--calibration", type=Path, nargs="+", required=True)
    parser.add_argument("--case", nargs="+", required=True, help="NAME=CT")
    parser.add_argument("--variant", nargs="+", default=["default", "last"], choices=VARIANTS)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--max-drop", type=float, default=0.005)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "int8_variants")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    made = provenance(__file__)
    started = time.time()

    from volseg.inference.inputs import collect_inputs
    from volseg.nnunet.int8 import calibration_windows
    from volseg.nnunet.segmenter import NnunetSegmenter
    from volseg.runtime import backends
    from volseg.runtime.onnx_export import export_onnx_for

    segmenter = NnunetSegmenter(args.model, backend="openvino", precision="fp32")
    if len(segmenter.model.folds) != 1:
        raise SystemExit("give a model folder with one fold (--model), or quantize folds one at a time")
    names = {int(v): n for v, n in segmenter.model.labels.names.items() if int(v) > 0}
    calibration_name = "+".join(sorted(p.name.split(".")[0] for p in args.calibration))
    work = args.work / segmenter.model.name / calibration_name
    work.mkdir(parents=True, exist_ok=True)
    patch = tuple(int(p) for p in segmenter.model.configuration["patch_size"])
    onnx = work.parent / "fp32.onnx"
    if not onnx.exists():
        export_onnx_for(segmenter.networks[0], torch.zeros(1, segmenter.model.channels, *patch), onnx)
    windows_path = work / f"windows{args.count}.npy"
    if not windows_path.exists():
        windows = calibration_windows(segmenter, collect_inputs(args.calibration), args.count)
        np.save(windows_path, np.stack(windows))
    windows = list(np.load(windows_path))

    cases = {}
    for item in args.case:
        name, _, path = item.partition("=")
        data = segmenter.load(collect_inputs([path])[0])
        cases[name] = (data, segmenter.predict(data)[0])  # fp32, before any variant replaces the forward

    results_path = args.out / "nnunet_int8_variants.json"
    previous = json.loads(results_path.read_text(encoding="utf-8"))["rows"] if results_path.exists() else []
    rows = [
        r
        for r in previous
        if (r["model"], r["calibration"]) != (segmenter.model.name, calibration_name)
        or r["variant"] not in args.variant
    ]
    for variant in args.variant:
        t = time.time()
        xml = quantize_variant(onnx, windows, variant, work / f"{variant}.xml", args.max_drop)
        quantize_s = time.time() - t
        forward = backends.openvino_backend(xml)
        window = torch.from_numpy(windows[0])
        row = {
            "model": segmenter.model.name,
            "calibration": calibration_name,
            "calibration_windows": len(windows),
            "variant": variant,
            "fp32_convolutions": reverted(xml),
            "window_s": statistics.median(seconds_per_call(lambda: forward(window), 5)),
            "quantize_s": quantize_s,
            "made": {"command": made["command"], "date": made["date"], "commit": made["commit"]},
            "cases": {},
        }
        for name, (data, fp32) in cases.items():
            int8 = labels(segmenter, data, forward)
            row["cases"][name] = {
                "dice_vs_fp32": dice_per_label(int8, fp32, names),
                "voxels_fp32": {names[v]: int((fp32 == v).sum()) for v in names},
                "voxels_int8": {names[v]: int((int8 == v).sum()) for v in names},
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"rows": rows, "seconds": time.time() - started}
    print(write(args.out, "nnunet_int8_variants", result, markdown(rows), made))


if __name__ == "__main__":
    main()
