"""INT8 vs fp32 (OpenVINO) for a model: label agreement per label, Dice against references, window time.

Usage: python benchmarks/int8.py [--model hippocampus-mri] [--calibration data_manifest.csv]
                                [--check data_manifest.csv --split test] [--keep-fp32 none first_last ...]
                                [--name int8] [--out benchmarks/results] [--quick]
Each --keep-fp32 variant (``none`` or ``first_last``) is
quantized by volseg's own ``export_int8`` (NNCF defaults, 40 calibration windows recorded from the model's
inference on the calibration images) into a temporary model folder, then the check cases are segmented
by the fp32 and the int8 model through the same ZooSegmenter. Window time: the median of 5 forward passes
of one window of the model's patch size, after one warm-up, fp32 and int8 compiled the same way.
Writes <name>.json and <name>.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, seconds_per_call, write  # noqa: E402


def window_seconds(segmenter, cfg, repeats: int = 5) -> float:
    from volseg.runtime.onnx_export import example_input

    x = example_input(cfg)
    return statistics.median(seconds_per_call(lambda: segmenter.network(x), repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hippocampus-mri")
    parser.add_argument("--calibration", type=Path, default=REPO / "data_manifest.csv")
    parser.add_argument("--check", type=Path, default=REPO / "data_manifest.csv", help="manifest of check cases")
    parser.add_argument("--split", default="test")
    parser.add_argument("--keep-fp32", nargs="+", default=["none", "first_last"])
    parser.add_argument("--name", default="int8")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="two check cases, one variant (the test suite)")
    args = parser.parse_args()
    made = provenance(__file__)

    from volseg.data.manifest import read_manifest
    from volseg.inference.zoo_segmenter import ZooSegmenter
    from volseg.pretrained import resolve_model
    from volseg.runtime.quantize import export_int8, measure_agreement

    torch.manual_seed(0)
    cases = [c for c in read_manifest(args.check) if c.split == args.split]
    variants = args.keep_fp32
    if args.quick:
        cases, variants = cases[:2], variants[:1]
    source = resolve_model(args.model)
    fp32 = ZooSegmenter(source, "cpu", backend="openvino", precision="fp32")
    fp32_window = window_seconds(fp32, fp32.cfg)
    rows = []
    for variant in variants:
        keep = () if variant == "none" else (variant,)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            checkpoint = export_int8(source, Path(tmp), args.calibration, keep_fp32=keep)
            quantize_s = time.perf_counter() - start
            int8 = ZooSegmenter(checkpoint, "cpu", backend="openvino", precision="int8")
            assert int8.precision == "int8"
            agreement = measure_agreement(fp32, int8, cases)
            int8_window = window_seconds(int8, int8.cfg)
        rows.append(
            {
                "keep_fp32": variant,
                "quantize_s": quantize_s,
                "window_s": int8_window,
                "speedup_vs_fp32": fp32_window / int8_window,
                **agreement,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "model": str(args.model),
        "architecture": f"{fp32.cfg.model.name} {fp32.cfg.model.dims}D {list(fp32.cfg.model.features)}",
        "window": list(
            fp32.cfg.sampling.patch_size_3d if fp32.cfg.model.dims == 3 else fp32.cfg.sampling.patch_size_2d
        ),
        "check": f"{args.check.name} split {args.split}",
        "cases": len(cases),
        "fp32_window_s": fp32_window,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
    print(write(args.out, args.name, report, markdown(report), made))


def markdown(report: dict) -> list[str]:
    labels = list(report["rows"][0]["dice_vs_fp32_min"]) if report["rows"] else []
    lines = [
        f"Model: {report['model']} ({report['architecture']}), window {'x'.join(map(str, report['window']))}; "
        f"check cases: {report['cases']} ({report['check']}); OpenVINO fp32 window "
        f"{1000 * report['fp32_window_s']:.1f} ms.",
        "",
        "| kept in fp32 | window ms | speed-up vs fp32 | "
        + " | ".join(f"{n} vs fp32 mean / worst | {n} vs reference fp32 -> int8" for n in labels)
        + " |",
        "|---|---|---|" + "---|---|" * len(labels),
    ]
    for r in report["rows"]:
        cells = []
        for n in labels:
            ref = r["dice_vs_reference"]
            ref_cell = f"{ref['fp32'][n]:.4f} -> {ref['int8'][n]:.4f}" if ref["fp32"][n] is not None else "n/a"
            cells += [f"{r['dice_vs_fp32_mean'][n]:.4f} / {r['dice_vs_fp32_min'][n]:.4f}", ref_cell]
        lines.append(
            f"| {r['keep_fp32']} | {1000 * r['window_s']:.1f} | {r['speedup_vs_fp32']:.2f}x | "
            + " | ".join(cells)
            + " |"
        )
    return lines


if __name__ == "__main__":
    main()
