"""Train every zoo model on the same hippocampus split with the same wall-clock budget, evaluate each on
the same held-out test cases, and write a comparison table (Markdown, CSV) and a bar chart.

Usage: python pipelines/compare_models.py [MSD_TASK04_FOLDER] [--out runs/compare] [--minutes 10]
Every model trains in 3D; unet and attunet also in 2D. All steps are `volseg` commands.
Run it on an otherwise idle machine: the budget is wall-clock time.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = [(m, 3) for m in ("unet", "unetpp", "attunet", "r2unet", "r2attunet", "resunet")] + [("unet", 2), ("attunet", 2)]


def volseg(*args) -> None:
    cmd = [sys.executable, "-m", "volseg", *map(str, args)]
    print("+ volseg " + shlex.join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)


def parameters(run: Path) -> int:
    from volseg.checkpoint import load_model
    from volseg.models import count_parameters

    return count_parameters(load_model(run)[0])


def one_model(name: str, dims: int, manifest: Path, out: Path, minutes: float) -> dict:
    run, pred = out / f"{name}_{dims}d", out / f"{name}_{dims}d_pred"
    config = REPO / "configs" / f"hippocampus_{dims}d.yaml"
    if not (run / "last.pt").exists():
        volseg("train", "--config", config, "--manifest", manifest, "--model", name, "--output", run,
               "--set", f"train.time_budget_minutes={minutes}", "--set", "train.epochs=200")
    volseg("infer", manifest, "--split", "test", "--model", run, "-o", pred, "--overwrite")
    volseg("evaluate", "--pred", pred, "--manifest", manifest, "--config", config, "-o", pred / "metrics.csv")
    summary = json.loads((pred / "metrics.json").read_text(encoding="utf-8"))
    history = list(csv.DictReader(open(run / "metrics.csv", encoding="utf-8")))
    infer_rows = list(csv.DictReader(open(pred / "volseg_run.csv", encoding="utf-8")))
    dice = {label: m["dice"]["mean"] for label, m in summary.items()}
    return {
        "model": name, "mode": f"{dims}D", "parameters": parameters(run),
        **{f"dice_{label}": d for label, d in dice.items()},
        "dice_mean": sum(dice.values()) / len(dice),
        "hd95_mm": sum(m["hd95"]["mean"] for m in summary.values()) / len(summary),
        "epochs": len(history),
        "train_minutes": sum(float(r["seconds"]) for r in history) / 60,
        "infer_seconds_per_case": sum(float(r["seconds"]) for r in infer_rows) / len(infer_rows),
    }


def write_outputs(rows: list[dict], out: Path) -> None:
    with open(out / "comparison.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    labels = [k[5:] for k in rows[0] if k.startswith("dice_") and k != "dice_mean"]
    head = ["model", "mode", "parameters", *[f"Dice {l}" for l in labels], "Dice mean", "HD95 mm",
            "epochs", "train min", "infer s/case"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: -r["dice_mean"]):
        cells = [r["model"], r["mode"], f"{r['parameters']:,}", *[f"{r['dice_' + l]:.4f}" for l in labels],
                 f"**{r['dice_mean']:.4f}**", f"{r['hd95_mm']:.2f}", str(r["epochs"]), f"{r['train_minutes']:.1f}",
                 f"{r['infer_seconds_per_case']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "comparison.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    names = [f"{r['model']} {r['mode']}" for r in rows]
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        ax.bar([x + i * width for x in range(len(rows))], [r[f"dice_{label}"] for r in rows], width, label=label)
    ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(rows))], names, rotation=30, ha="right")
    ax.set(ylabel="test Dice", ylim=(0.5, 1.0), title="hippocampus test Dice, same split and time budget")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, nargs="?", default=REPO.parent / "shared/data/msd_task04_hippocampus")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "compare")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget per model")
    parser.add_argument("--only", nargs="*", help="subset, e.g. unet:3 attunet:2")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = args.out / "manifest.csv"
    subprocess.run([sys.executable, str(REPO / "pipelines" / "hippocampus_manifest.py"), str(args.source),
                    str(manifest)], check=True)
    runs = [(m, int(d)) for m, d in (s.split(":") for s in args.only)] if args.only else RUNS
    rows = [one_model(name, dims, manifest, args.out, args.minutes) for name, dims in runs]
    write_outputs(rows, args.out)
    print((args.out / "comparison.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
