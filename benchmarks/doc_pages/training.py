"""Renderers of docs/training.md: the default model's training and nnU-Net's recipe in the same CPU hour."""

from __future__ import annotations

from doc_pages.sources import f2, f3, f4, hippocampus, result, source, study, table


def training_default_model() -> str:
    h = hippocampus()
    _, rows = study("Equal time")
    unet2d = next(e for e in rows if e["model"] == "unet" and e["mode"] == "2D")
    return (
        table(
            ["mode", "model", "command", "training", "best val Dice (mean / anterior / posterior)", "test Dice"],
            [
                [
                    "3D",
                    "unet (16-128), patches 40x56x40",
                    "`pipelines/train_default_model.sh`",
                    f"{h['minutes']:.0f} min to its best epoch ({h['epoch']})",
                    f"**{f4(h['best_dice'])}** / {f4(h['best_val']['anterior'])} / {f4(h['best_val']['posterior'])}",
                    f4(h["fp32_mean"]),
                ],
                [
                    "2D",
                    "unet (32-256), axial slices, 2.5D",
                    "`python pipelines/compare_models.py` ([the model comparison](models.md#the-model-comparison))",
                    f"{unet2d['minutes']:.0f} min ({unet2d['epochs']:.0f} epochs), mean of {unet2d['seeds']} seeds",
                    "-",
                    f4(unet2d["dice"]),
                ],
            ],
        )
        + "\n\nSources: the shipped checkpoint's training history (`volseg/pretrained/hippocampus-mri/model.pt`:"
        " minutes are its epochs' summed seconds), its test Dice from `volseg/pretrained/hippocampus-mri/int8.json`"
        f" (fp32, {h['cases']} cases); the 2D row from `docs/comparison.csv`."
    )


def nnunet_budget() -> str:
    data = result("nnunet_budget")
    rows = []
    for r in data["rows"]:
        name = r["recipe"]
        name = (
            "volseg `configs/hippocampus_3d.yaml`"
            if name.startswith("volseg")
            else name.replace("nnU-Net v2", "nnU-Net " + r.get("version", "v2").replace("nnunetv2==", "v"))
        )
        d = r["test_dice"]
        rows.append(
            [
                name,
                r["epochs"],
                f"{r['train_minutes']:.1f}",
                f3(r["val_dice"]),
                f4(d["anterior"]),
                f4(d["posterior"]),
                f"**{f4(d['mean'])}**",
                f2(r["predict_s_per_case"]),
            ]
        )
    vs, nn = data["rows"][0], data["rows"][1]
    return (
        table(
            [
                "recipe",
                "epochs",
                "train min",
                "val Dice",
                "test Dice anterior",
                "test Dice posterior",
                "test Dice mean",
                "predict s/case",
            ],
            rows,
        )
        + f"\n\nvolseg is ahead by {f3(vs['test_dice']['mean'] - nn['test_dice']['mean'])} on test and"
        f" {f3(vs['val_dice'] - nn['val_dice'])} on validation, and predicts"
        f" {nn['predict_s_per_case'] / vs['predict_s_per_case']:.0f}x faster (nnU-Net's time and test score"
        " include its mirroring TTA; volseg's do not). " + source("nnunet_budget")
    )


def train_budget() -> str:
    """``volseg train --minutes 1`` alone and beside CPU-bound processes (benchmarks/train_budget.py)."""
    data = result("train_budget")
    budget = data["minutes"] * 60
    rows = [
        [
            r["neighbour"],
            f"{r['wall_seconds']:.1f} s",
            f"{r['over_budget']:.2f}x",
            str(r["epochs"]),
            "yes" if r["best_pt"] else "no",
            "met" if r["met"] else "not met",
        ]
        for r in data["runs"]
    ]
    return (
        f"`volseg train --dims 3 --model {data['model']} --minutes {data['minutes']:g}` on the embedded data, the "
        f"whole command against its {budget:.0f} s budget (goal: within {data['goal_over_budget']}x, best.pt "
        "written):\n\n"
        + table(["neighbour", "wall", "x budget", "epochs", "best.pt", "goal"], rows)
        + "\n\n"
        + source("train_budget")
    )
