"""volseg's hippocampus recipe beside nnU-Net v2's default recipe: same split, same wall-clock budget, same
epoch rule, scored by the same `volseg evaluate` on the same 10 held-out test cases.

    python benchmarks/nnunet_budget.py [--minutes 60] [--source ../shared/data/msd_task04_hippocampus]

- The split is volseg's (``pipelines/hippocampus_manifest.py``: 176 train / 44 val, the 10 bundled test
  cases held out); nnU-Net gets it as its fold 0 (``splits_final.json``).
- nnU-Net v2 (``nnunetv2==2.8.1``) runs in a virtual environment of its own (``--venv``, created when
  missing: pip's nnunetv2 brings its own torch build). Its recipe is its default: ``3d_fullres`` plans,
  network, augmentation, loss, SGD with poly decay, mirroring at test time. Its default epoch (250
  iterations) would take over half an hour here, so epochs are 25 iterations (and 5 validation
  iterations, the default's ratio), and the epoch count is fixed like volseg's
  (``volseg.training.schedule.budget_epochs``): from epoch 1, then from a steady-state epoch 2 and the time left.
- volseg trains ``--config`` (default: the default model's recipe) with ``volseg train --minutes``.
- Budgets are training wall clock (nnU-Net's preprocessing and both final validations are timed apart;
  its "train min" is the sum of its logged epoch times, start-up excluded). Checked end to end with a
  30-second budget of 2-iteration epochs: preprocessing 37 s, the trainer, validation and prediction.

Writes nnunet_budget.json and nnunet_budget.md to ``--out``. Run it alone: the budget is wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.nnunet_env import NNUNET, Trainer, ensure, environment, run  # noqa: E402
from benchmarks.record import provenance, write  # noqa: E402
from volseg.runtime.checkpoint import load_checkpoint  # noqa: E402

DATASET = "Dataset004_Hippocampus"
LABELS = {"background": 0, "anterior": 1, "posterior": 2}

# written into nnU-Net's package (in the benchmark's own virtual environment) by benchmarks/nnunet_env.py
TRAINER_CODE = '''
import os
from time import time

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerBudget(nnUNetTrainer):
    """nnU-Net's default recipe in a wall-clock budget: short epochs, their number fixed like volseg's."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = int(os.environ.get("VOLSEG_NNUNET_ITERATIONS", "25"))
        self.num_val_iterations_per_epoch = max(1, self.num_iterations_per_epoch // 5)
        self.budget_seconds = float(os.environ["VOLSEG_NNUNET_BUDGET_MINUTES"]) * 60
        self.num_epochs = 1000

    def _fit_epochs(self, seconds, spent):
        if len(seconds) == 1:
            epochs = max(1, int(self.budget_seconds // seconds[0]))
        else:
            epochs = len(seconds) + int(max(0.0, self.budget_seconds - spent) // seconds[1])
        self.num_epochs = max(len(seconds), min(1000, epochs))
        self.lr_scheduler.max_steps = self.num_epochs
        self.print_to_log_file(f"time budget {self.budget_seconds / 60:.1f} min: {self.num_epochs} epochs")

    def run_training(self):
        started = time()
        self.on_train_start()
        seconds = []
        while self.current_epoch < self.num_epochs:
            epoch_started = time() if seconds else started  # epoch 1 also pays the start-up, as in volseg
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = [self.train_step(next(self.dataloader_train)) for _ in range(self.num_iterations_per_epoch)]
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                outputs = [self.validation_step(next(self.dataloader_val))
                           for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(outputs)
            self.on_epoch_end()
            seconds.append(time() - epoch_started)
            if len(seconds) <= 2:
                self._fit_epochs(seconds, time() - started)
        self.on_train_end()
'''


TRAINER = Trainer("nnUNetTrainerBudget", "volseg_budget", TRAINER_CODE)


def nnunet_raw(manifest: Path, raw: Path) -> dict[str, list[str]]:
    """The manifest as nnU-Net's raw dataset (links, no copies); returns the case ids per split."""
    from volseg.data.manifest import read_manifest

    folder = raw / DATASET
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case in read_manifest(manifest):
        splits[case.split].append(case.case_id)
        images = "imagesTs" if case.split == "test" else "imagesTr"
        links = [(folder / images / f"{case.case_id}_0000.nii.gz", case.images[0])]
        if case.split != "test":
            links.append((folder / "labelsTr" / f"{case.case_id}.nii.gz", case.label))
        for link, target in links:
            if not link.exists():
                link.symlink_to(Path(target).resolve())
    dataset = {
        "channel_names": {"0": "MRI"},
        "labels": LABELS,
        "file_ending": ".nii.gz",
        "numTraining": len(splits["train"]) + len(splits["val"]),
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1), encoding="utf-8")
    return splits


def write_splits(preprocessed: Path, splits: dict[str, list[str]]) -> None:
    """volseg's train/val split as nnU-Net's fold 0 (``splits_final.json`` in the preprocessed dataset)."""
    (preprocessed / "splits_final.json").write_text(
        json.dumps([{"train": splits["train"], "val": splits["val"]}]), encoding="utf-8"
    )


def test_dice(pred: Path, manifest: Path, config: Path) -> dict[str, float]:
    run(
        [
            sys.executable,
            "-m",
            "volseg",
            "evaluate",
            "--pred",
            pred,
            "--manifest",
            manifest,
            "--split",
            "test",
            "--config",
            config,
            "-o",
            pred / "metrics.csv",
        ]
    )
    summary = json.loads((pred / "metrics.json").read_text(encoding="utf-8"))
    dice = {label: m["dice"]["mean"] for label, m in summary.items()}
    return {**dice, "mean": sum(dice.values()) / len(dice)}


def nnunet(bin_dir: Path, work: Path, manifest: Path, splits: dict, minutes: float, config: Path) -> dict:
    env = environment(work, VOLSEG_NNUNET_BUDGET_MINUTES=str(minutes))
    timings = work / "nnunet_timings.json"  # measured once; a rerun reuses the steps and keeps their times
    row: dict = {
        "recipe": "nnU-Net v2 default (3d_fullres), 25-iteration epochs",
        "version": NNUNET,
        **(json.loads(timings.read_text(encoding="utf-8")) if timings.exists() else {}),
    }
    preprocessed = work / "nnUNet_preprocessed" / DATASET
    if not (preprocessed / "nnUNetPlans.json").exists():
        row["preprocess_s"] = run(
            [
                bin_dir / "nnUNetv2_plan_and_preprocess",
                "-d",
                "4",
                "-c",
                "3d_fullres",
                "-np",
                "2",
                "--verify_dataset_integrity",
            ],
            env,
        )
    write_splits(preprocessed, splits)
    results = work / "nnUNet_results" / DATASET / "nnUNetTrainerBudget__nnUNetPlans__3d_fullres" / "fold_0"
    if not (results / "checkpoint_final.pth").exists():
        started = time.perf_counter()
        run(
            [
                bin_dir / "nnUNetv2_train",
                "4",
                "3d_fullres",
                "0",
                "-tr",
                "nnUNetTrainerBudget",
                "-device",
                "cpu",
                "--npz",
            ],
            env,
        )
        row["train_and_validation_s"] = time.perf_counter() - started
    timings.write_text(
        json.dumps({k: row[k] for k in ("preprocess_s", "train_and_validation_s") if k in row}), encoding="utf-8"
    )
    log = sorted(results.glob("training_log_*.txt"))[-1].read_text(encoding="utf-8")
    epoch_seconds = [
        float(line.split("Epoch time:")[1].split()[0]) for line in log.splitlines() if "Epoch time:" in line
    ]
    row.update(epochs=len(epoch_seconds), train_minutes=sum(epoch_seconds) / 60)
    row["val_dice"] = json.loads((results / "validation" / "summary.json").read_text(encoding="utf-8"))[
        "foreground_mean"
    ]["Dice"]
    pred = work / "nnunet_test_pred"
    started = time.perf_counter()
    run(
        [
            bin_dir / "nnUNetv2_predict",
            "-i",
            work / "nnUNet_raw" / DATASET / "imagesTs",
            "-o",
            pred,
            "-d",
            "4",
            "-c",
            "3d_fullres",
            "-f",
            "0",
            "-tr",
            "nnUNetTrainerBudget",
            "-chk",
            "checkpoint_final.pth",
            "-device",
            "cpu",
        ],
        env,
    )
    row["predict_s_per_case"] = (time.perf_counter() - started) / len(splits["test"])
    row["test_dice"] = test_dice(pred, manifest, config)
    return row


def volseg_recipe(work: Path, manifest: Path, minutes: float, config: Path, test_cases: int) -> dict:
    train = work / "volseg_train"
    resume = ["--resume"] if (train / "last.pt").exists() else []  # a finished run returns at once
    run(
        [
            sys.executable,
            "-m",
            "volseg",
            "train",
            "--config",
            config,
            "--manifest",
            manifest,
            "--output",
            train,
            "--minutes",
            f"{minutes:g}",
            *resume,
        ]
    )
    run_record = load_checkpoint(train / "last.pt")  # every epoch's record, and the best validation so far
    pred = work / "volseg_test_pred"
    started = time.perf_counter()
    run(
        [
            sys.executable,
            "-m",
            "volseg",
            "infer",
            manifest,
            "--split",
            "test",
            "--model",
            train,
            "-o",
            pred,
            "--overwrite",
        ]
    )
    return {
        "recipe": f"volseg {config.relative_to(REPO).as_posix()}",
        "epochs": len(run_record["history"]),
        "train_minutes": sum(r["seconds"] for r in run_record["history"]) / 60,
        "val_dice": run_record["best_dice"],  # best.pt's score: the checkpoint `volseg infer` uses
        "predict_s_per_case": (time.perf_counter() - started) / test_cases,
        "test_dice": test_dice(pred, manifest, config),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "msd_task04_hippocampus")
    parser.add_argument("--minutes", type=float, default=60.0, help="training wall-clock budget of each recipe")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "hippocampus_3d.yaml", help="volseg's recipe")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "nnunet_budget")
    parser.add_argument("--venv", type=Path, default=REPO / "runs" / "nnunet_venv")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    made = provenance(__file__)
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = args.work / "manifest.csv"
    run([sys.executable, REPO / "pipelines" / "hippocampus_manifest.py", args.source, manifest])
    splits = nnunet_raw(manifest, args.work / "nnUNet_raw")
    rows = [
        volseg_recipe(args.work, manifest, args.minutes, args.config.resolve(), len(splits["test"])),
        nnunet(ensure(args.venv, [TRAINER]), args.work, manifest, splits, args.minutes, args.config),
    ]
    lines = [
        f"# volseg vs nnU-Net v2 in {args.minutes:g} CPU-minutes of training (hippocampus, same split)",
        "",
        f"{len(splits['train'])} train / {len(splits['val'])} val cases; test: the {len(splits['test'])} bundled "
        "test cases, scored by `volseg evaluate`. Command: `" + made["command"] + "`.",
        "",
        "| recipe | epochs | train min | val Dice | test Dice anterior | test Dice posterior | test Dice mean | predict s/case |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["test_dice"]
        lines.append(
            f"| {r['recipe']} | {r['epochs']} | {r['train_minutes']:.1f} | {r['val_dice']:.3f} | "
            f"{d['anterior']:.4f} | {d['posterior']:.4f} | **{d['mean']:.4f}** | {r['predict_s_per_case']:.2f} |"
        )
    print(write(args.out, "nnunet_budget", {"minutes": args.minutes, "rows": rows}, lines, made))


if __name__ == "__main__":
    main()
