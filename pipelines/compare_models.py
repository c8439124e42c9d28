"""Train every zoo model on the same hippocampus split, evaluate each on the same held-out test cases, and
write two comparison tables: at equal wall-clock time and at equal epochs, each model with several seeds.

Usage: python pipelines/compare_models.py [MSD_TASK04_FOLDER] [--minutes 10] [--epochs 4] [--seeds 0 1]

- Equal time: every model gets ``--minutes`` of training, wall clock (``volseg train --minutes``). The budget
  rule (``volseg.training.schedule.budget_epochs``) fixes the epoch count from a steady-state epoch, not from the
  first one, which also caches the data: a slow-to-cache model is not cut to one epoch.
- Equal epochs: every model trains ``--epochs`` epochs, whatever they cost. Read the two together to tell
  what the budget decides from what the architecture does.

Every model trains in 3D; unet and attunet also in 2D. All steps are `volseg` commands; a run already
scored is reused and one that was killed resumes from its last epoch, so an interrupted comparison picks
up where it stopped. Run it on an otherwise idle machine: the budget is wall-clock time. Results:
``--out``, docs/comparison.{md,csv,png}.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from volseg.files.csv_rows import read_rows

REPO = Path(__file__).resolve().parents[1]
RUNS = [(m, 3) for m in ("unet", "unetpp", "attunet", "r2unet", "r2attunet", "resunet")] + [("unet", 2), ("attunet", 2)]


def volseg(*args) -> None:
    cmd = [sys.executable, "-m", "volseg", *map(str, args)]
    print("+ volseg " + shlex.join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)


def network_cost(run: Path) -> tuple[int, float]:
    """Parameters, and forward FLOPs per voxel of one training patch."""
    from volseg.models import count_parameters, forward_flops
    from volseg.runtime.checkpoint import load_model

    model, cfg = load_model(run)[:2]
    s = cfg.sampling
    patch = s.patch_size_3d if cfg.model.dims == 3 else s.patch_size_2d
    channels = cfg.data.in_channels * (1 + 2 * s.context_slices if cfg.model.dims == 2 else 1)
    return count_parameters(model), forward_flops(model, (1, channels, *patch)) / math.prod(patch)


def one_run(name: str, dims: int, seed: int, manifest: Path, out: Path, length: list[str]) -> dict:
    """Train (or resume), predict and score one model; ``length`` is ``--minutes M`` or ``--epochs N``."""
    run, pred = out / f"{name}_{dims}d_s{seed}", out / f"{name}_{dims}d_s{seed}_pred"
    config = REPO / "configs" / f"hippocampus_{dims}d.yaml"
    if not (pred / "metrics.json").exists():
        # a run killed mid-way continues from its last epoch (a finished one returns at once), never scored half-trained
        resume = ["--resume"] if (run / "last.pt").exists() else []
        volseg(
            "train",
            "--config",
            config,
            "--manifest",
            manifest,
            "--model",
            name,
            "--output",
            run,
            "--set",
            f"train.seed={seed}",
            *length,
            *resume,
        )
        volseg("infer", manifest, "--split", "test", "--model", run, "-o", pred, "--overwrite")
        volseg("evaluate", "--pred", pred, "--manifest", manifest, "--config", config, "-o", pred / "metrics.csv")
    summary = json.loads((pred / "metrics.json").read_text(encoding="utf-8"))
    history = read_rows(run / "training_log.csv")
    infer_rows = read_rows(pred / "volseg_run.csv")
    dice = {label: m["dice"]["mean"] for label, m in summary.items()}
    seconds = [float(r["seconds"]) for r in history]
    parameters, flops = network_cost(run)
    return {
        "model": name,
        "mode": f"{dims}D",
        "seed": seed,
        "parameters": parameters,
        "mflops_per_voxel": flops / 1e6,
        **{f"dice_{label}": d for label, d in dice.items()},
        "dice_mean": sum(dice.values()) / len(dice),
        "hd95_mm": sum(m["hd95"]["mean"] for m in summary.values()) / len(summary),
        "epochs": len(history),
        "train_minutes": sum(seconds) / 60,
        "first_epoch_s": seconds[0],
        "steady_epoch_s": statistics.median(seconds[1:] or seconds),  # epoch 1 also caches the data
        "infer_seconds_per_case": sum(float(r["seconds"]) for r in infer_rows) / len(infer_rows),
    }


def summarize(rows: list[dict]) -> list[dict]:
    """One row per model and mode: the mean over seeds, and the spread (half the range) of the Dice."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["mode"]), []).append(r)
    out = []
    for (model, mode), runs in groups.items():
        row = {"model": model, "mode": mode, "seeds": len(runs)}
        for key in runs[0]:
            if key not in row and key != "seed":
                row[key] = statistics.fmean(r[key] for r in runs)
        row["dice_mean_spread"] = (max(r["dice_mean"] for r in runs) - min(r["dice_mean"] for r in runs)) / 2
        out.append(row)
    return sorted(out, key=lambda r: -r["dice_mean"])


def markdown(summary: list[dict]) -> str:
    labels = [k[5:] for k in summary[0] if k.startswith("dice_") and k not in ("dice_mean", "dice_mean_spread")]
    head = [
        "model",
        "mode",
        "parameters",
        "MFLOP/voxel",
        *[f"Dice {label}" for label in labels],
        "Dice mean ± spread",
        "HD95 mm",
        "epochs",
        "train min",
        "s/epoch (first, steady)",
        "infer s/case",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        cells = [
            r["model"],
            r["mode"],
            f"{r['parameters']:,.0f}",
            f"{r['mflops_per_voxel']:.2f}",
            *[f"{r['dice_' + label]:.4f}" for label in labels],
            f"**{r['dice_mean']:.4f}** ± {r['dice_mean_spread']:.4f}",
            f"{r['hd95_mm']:.2f}",
            f"{r['epochs']:g}",
            f"{r['train_minutes']:.1f}",
            f"{r['first_epoch_s']:.0f}, {r['steady_epoch_s']:.0f}",
            f"{r['infer_seconds_per_case']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(studies: dict[str, list[dict]], docs: Path) -> None:
    """docs/comparison.md (both tables), comparison.csv (every run) and comparison.png (one chart per study)."""
    rows = [{"study": study, **r} for study, runs in studies.items() for r in runs]
    with open(docs / "comparison.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    seeds = sorted({r["seed"] for r in rows})
    text = [
        f"Written by `pipelines/compare_models.py`: every model with seeds {seeds}, scored on the same "
        "10 held-out test cases; ± is half the range over the seeds.\n"
    ]
    for study, runs in studies.items():
        text += [f"## {study}\n", markdown(summarize(runs))]
    (docs / "comparison.md").write_text("\n".join(text), encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(studies), figsize=(6 * len(studies), 4), squeeze=False)
    for ax, (study, runs) in zip(axes[0], studies.items()):
        summary = summarize(runs)
        names = [f"{r['model']} {r['mode']}" for r in summary]
        ax.bar(
            range(len(summary)),
            [r["dice_mean"] for r in summary],
            yerr=[r["dice_mean_spread"] for r in summary],
            capsize=3,
        )
        ax.set_xticks(range(len(summary)), names, rotation=30, ha="right")
        ax.set(ylabel="test Dice (mean of labels)", ylim=(0.5, 1.0), title=study)
    fig.tight_layout()
    fig.savefig(docs / "comparison.png", dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, nargs="?", default=REPO.parent / "shared/data/msd_task04_hippocampus")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "compare")
    parser.add_argument("--minutes", type=float, default=10.0, help="equal time: wall-clock training per model")
    parser.add_argument("--epochs", type=int, default=4, help="equal epochs: epochs per model (0: skip the study)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", nargs="*", help="subset, e.g. unet:3 attunet:2")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where the tables and the chart go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = args.out / "manifest.csv"
    subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "hippocampus_manifest.py"), str(args.source), str(manifest)],
        check=True,
    )
    runs = [(m, int(d)) for m, d in (s.split(":") for s in args.only)] if args.only else RUNS
    studies = {
        f"Equal time: {args.minutes:g} minutes each": (
            args.out / f"time_{args.minutes:g}min",
            ["--minutes", f"{args.minutes:g}"],
        )
    }
    if args.epochs:
        studies[f"Equal epochs: {args.epochs} each"] = (
            args.out / f"epochs_{args.epochs}",
            ["--epochs", str(args.epochs)],
        )
    results = {}
    for study, (out, length) in studies.items():
        out.mkdir(parents=True, exist_ok=True)
        results[study] = [
            one_run(name, dims, seed, manifest, out, length) for name, dims in runs for seed in args.seeds
        ]
        write_outputs(results, args.docs)  # each finished study lands, even if a later one is stopped
    print((args.docs / "comparison.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
