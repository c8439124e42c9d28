"""The one entry point: run every benchmark, then write the performance goals they measure, met or not.

Usage: python benchmarks/run.py [--quick] [--out benchmarks/results]
Runs models.py (zoo vs MONAI, default model's forward GFLOP/s) and whole_volume.py (a 512x512x120 CT
through the pancreas 3D model, stage by stage, vs MONAI), each writing its own JSON and Markdown, then
summary.json (``goals``: each goal with its measured value) and summary.md. The DDP throughput benchmark
needs torchrun and is run on its own (benchmarks/ddp_throughput.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks.record import provenance, write  # noqa: E402

MEMORY_LIMIT_MB = 4096


def goals(models: dict, whole: dict) -> list[dict]:
    """(goal, measured, met) for each performance goal of the project (issue 7)."""
    rows = {r["kind"]: r for r in whole["rows"]}
    ours = rows.get("auto") or rows[next(k for k in rows if k != "monai")]
    fastest = max((r for r in whole["rows"] if r["kind"] != "monai"), key=lambda r: r["speedup_vs_monai"])
    default = max((r for r in models["rows"] if r["kind"] == "default"), key=lambda r: r["gflops_per_s"])
    out = [
        {
            "goal": "whole-volume CT inference >= 2.5x faster than MONAI sliding_window_inference (eager fp32, "
            "same weights and overlap)",
            "measured": f"{ours['speedup_vs_monai']:.2f}x ({ours['backend']})",
            "met": ours["speedup_vs_monai"] >= 2.5,
        },
        {
            "goal": "same labels as MONAI (Dice >= 0.999)",
            "measured": f"{ours['dice_vs_monai']:.4f} (inside the body {ours['dice_vs_monai_in_body']:.4f})",
            "met": ours["dice_vs_monai"] >= 0.999,
        },
        {
            "goal": "whole-volume CT inference, fastest CPU path, >= 8x faster than MONAI with labels at Dice >= 0.99 "
            "vs MONAI per label (issue 16)",
            "measured": f"{fastest['speedup_vs_monai']:.2f}x ({fastest['backend']} {fastest.get('precision', 'fp32')}), "
            f"Dice {fastest['dice_vs_monai']:.4f}",
            "met": fastest["speedup_vs_monai"] >= 8 and fastest["dice_vs_monai"] >= 0.99,
        },
        {
            "goal": "default 3D model forward >= 60% of fp32 matmul GFLOP/s",
            "measured": f"{100 * default['share_of_matmul_peak']:.0f}% ({default['gflops_per_s']:.0f} of "
            f"{models['matmul_gflops_per_s']:.0f} GFLOP/s, {default['counterpart']})",
            "met": default["share_of_matmul_peak"] >= 0.6,
        },
        {
            "goal": "non-network stages <= 10% of whole-volume time",
            "measured": f"{100 * ours['non_network_share']:.1f}%",
            "met": ours["non_network_share"] <= 0.10,
        },
        {
            "goal": f"peak memory < {MEMORY_LIMIT_MB} MB for the CT",
            "measured": f"{ours['peak_memory_mb']:.0f} MB",
            "met": ours["peak_memory_mb"] < MEMORY_LIMIT_MB,
        },
    ]
    for r in models["rows"]:
        if "train_step_vs_monai" in r:
            out.append(
                {
                    "goal": f"{r['model']} training step no slower than MONAI's at matched widths (per GFLOP "
                    "where the architecture differs)",
                    "measured": f"{r['train_step_vs_monai']:.2f}x time, {r['train_time_per_gflop_vs_monai']:.2f}x "
                    "time per GFLOP",
                    "met": r["train_step_vs_monai"] <= 1.0 or r["train_time_per_gflop_vs_monai"] <= 1.0,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny setting for the test suite")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    made = provenance(__file__)
    quick = {"models.py": ["--quick", "--models", "unet"], "whole_volume.py": ["--quick", "--backends", "auto", "int8"]}
    for script in ("models.py", "whole_volume.py"):
        options = quick[script] if args.quick else []
        subprocess.run([sys.executable, str(HERE / script), *options, "--out", str(args.out)], check=True)
    models = json.loads((args.out / "models.json").read_text(encoding="utf-8"))
    whole = json.loads((args.out / "whole_volume.json").read_text(encoding="utf-8"))
    results = goals(models, whole)
    lines = ["| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else 'no'} |" for g in results]
    print(write(args.out, "summary", {"goals": results}, lines, made))


if __name__ == "__main__":
    main()
