"""Where an nnU-Net model's CPU time goes in volseg, and what bounds its speed against ``nnUNetv2_predict``.

    python benchmarks/nnunet_engines.py --model NNUNET_FOLDER --case CT.nii.gz [--repeats 3] [--out benchmarks/results]

1. One sliding window (the plans' patch) through each engine volseg has, in this process: torch eager fp32 (the
   runtime ``nnUNetv2_predict`` uses), OpenVINO fp32, OpenVINO bf16 (only on a CPU with native bf16) and the
   model's OpenVINO int8 twin (only when ``volseg export FOLDER --precision int8`` made one). Median of
   ``--repeats`` calls after a warm-up; GFLOP per window from torch's FlopCounterMode, so GFLOP/s is what the
   engine achieves on this network.
2. One whole case (``--case``), file to file minus start-up, through volseg's NnunetSegmenter with OpenVINO fp32
   and int8: its read, preprocess, network and export seconds, and the number of windows.

From the two: the best whole-case speed-up any fp32 engine could reach over nnU-Net on this case is nnU-Net's
whole time (given with ``--nnunet-seconds``, e.g. from ``nnunet_models.json``) over volseg's network time alone.
Run it alone: these are wall-clock times on a shared machine. Writes nnunet_engines.json and nnunet_engines.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, seconds_per_call, write  # noqa: E402


def window_gflop(network: torch.nn.Module, window: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(window)
    return counter.get_total_flops() / 1e9


def engine_rows(folder: Path, repeats: int) -> tuple[list[dict], list[int]]:
    """Seconds per window for each engine available here."""
    from volseg.errors import VolsegError
    from volseg.nnunet.segmenter import NnunetSegmenter

    settings = [("torch", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8")]
    rows, patch, gflop = [], None, None
    for backend, precision in settings:
        try:
            segmenter = NnunetSegmenter(folder, backend=backend, precision=precision)
        except VolsegError as e:
            rows.append({"engine": f"{backend} {precision}", "skipped": str(e)})
            continue
        patch = [int(p) for p in segmenter.model.configuration["patch_size"]]
        window = torch.randn(1, segmenter.model.channels, *patch)
        if gflop is None:
            gflop = window_gflop(segmenter.networks[0], window)
        forward = segmenter.forwards[0]
        with torch.inference_mode():
            times = seconds_per_call(lambda f=forward: f(window), repeats)
        seconds = statistics.median(times)
        rows.append(
            {
                "engine": f"{backend} {precision}",
                "window_s": seconds,
                "times_s": times,
                "gflop": gflop,
                "gflop_per_s": gflop / seconds,
            }
        )
        print(f"{backend} {precision}: {seconds:.2f} s per window ({gflop / seconds:.0f} GFLOP/s)", flush=True)
    return rows, patch


def case_rows(folder: Path, case: Path) -> list[dict]:
    """One whole case through NnunetSegmenter, stage by stage, fp32 and int8 (OpenVINO)."""
    from volseg.errors import VolsegError
    from volseg.inference.inputs import CaseInput
    from volseg.nnunet.segmenter import NnunetSegmenter
    from volseg.nnunet.sliding_window import pad_to_patch, tiles

    rows = []
    for precision in ("fp32", "int8"):
        try:
            segmenter = NnunetSegmenter(folder, backend="openvino", precision=precision)
        except VolsegError as e:
            rows.append({"precision": precision, "skipped": str(e)})
            continue
        patch = tuple(int(p) for p in segmenter.model.configuration["patch_size"])
        segmenter.forwards[0](torch.zeros(1, segmenter.model.channels, *patch))  # compile outside the timing
        started = time.perf_counter()
        data = segmenter.load(CaseInput(case.name, (case,)))
        segmenter.predict(data)
        total = time.perf_counter() - started
        padded, _ = pad_to_patch(data["prepared"].data, patch)
        rows.append(
            {
                "precision": precision,
                "stages": data["timings"],
                "total_s": total,
                "windows": len(tiles(padded.shape[1:], patch)),
                "prepared_shape": list(data["prepared"].data.shape[1:]),
            }
        )
        print(f"case, {precision}: {total:.1f} s, stages {data['timings']}", flush=True)
    return rows


def markdown(result: dict) -> list[str]:
    lines = [
        "# nnU-Net model on volseg's engines: one window, one whole case",
        "",
        f"Model: `{result['model']}`, patch {'x'.join(map(str, result['patch']))}; case: `{result['case']}`.",
        "",
        "| engine | s per window | GFLOP per window | GFLOP/s |",
        "|---|---|---|---|",
    ]
    for r in result["engines"]:
        if "skipped" in r:
            lines.append(f"| {r['engine']} | skipped: {r['skipped']} | | |")
        else:
            lines.append(f"| {r['engine']} | {r['window_s']:.2f} | {r['gflop']:.0f} | {r['gflop_per_s']:.0f} |")
    lines += ["", "| whole case (no start-up) | windows | read s | preprocess s | network s | export s | total s |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in result["case_runs"]:
        if "skipped" in r:
            lines.append(f"| OpenVINO {r['precision']} | skipped: {r['skipped']} | | | | | |")
            continue
        s = r["stages"]
        lines.append(
            f"| OpenVINO {r['precision']} | {r['windows']} | {s['read']:.1f} | {s['preprocess']:.1f} | "
            f"{s['network']:.1f} | {s['export']:.1f} | {r['total_s']:.1f} |"
        )
    if result.get("nnunet_seconds"):
        fp32 = next((r for r in result["case_runs"] if r.get("precision") == "fp32" and "stages" in r), None)
        if fp32:
            bound = result["nnunet_seconds"] / fp32["stages"]["network"]
            lines += [
                "",
                f"nnUNetv2_predict on this case: {result['nnunet_seconds']:.1f} s; volseg's fp32 network alone: "
                f"{fp32['stages']['network']:.1f} s, so no fp32 run of this case can be more than {bound:.2f}x "
                "faster than nnU-Net, whatever the rest costs.",
            ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an nnU-Net model folder")
    parser.add_argument("--case", type=Path, required=True, help="a scan the model is for (NIfTI)")
    parser.add_argument("--nnunet-seconds", type=float, help="nnUNetv2_predict's whole time on --case (TTA off)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="nnunet_engines")
    args = parser.parse_args()
    made = provenance(__file__)
    engines, patch = engine_rows(args.model, args.repeats)
    result = {
        "model": f"{args.model.resolve().parent.name}/{args.model.resolve().name}",
        "case": args.case.name,
        "patch": patch,
        "threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()),
        "engines": engines,
        "case_runs": case_rows(args.model, args.case),
        "nnunet_seconds": args.nnunet_seconds,
    }
    print(write(args.out, args.name, result, markdown(result), made))


if __name__ == "__main__":
    main()
