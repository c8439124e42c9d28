"""``volseg train`` and its torchrun relaunch."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import typer

from volseg.cli.app import (
    app,
    console,
    user_errors,
)
from volseg.errors import VolsegError


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config YAML (defaults fit the embedded data)."),
    manifest_path: Optional[Path] = typer.Option(None, "--manifest", help="Manifest CSV [default: data_manifest.csv]."),
    dims: Optional[int] = typer.Option(None, "--dims", help="2 (slices) or 3 (patches)."),
    model: Optional[str] = typer.Option(None, "--model", help="Zoo model name (see `volseg models`)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder [default: runs/MODEL_DIMSd]."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Number of epochs (also extends a resumed run)."),
    minutes: Optional[float] = typer.Option(
        None,
        "--minutes",
        help="Wall-clock training budget instead of --epochs: the epoch count is fixed after epoch 2.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --output from its last checkpoint (and its schedule)."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Config override key=value, e.g. train.lr=0.01 (repeatable)."
    ),
    nproc: int = typer.Option(
        1, "--nproc", help="Shortcut for `torchrun --nproc_per_node N -m volseg train ...` on this machine."
    ),
) -> None:
    """Train a zoo model on the manifest's train split, validating on its val split.

    Multi-GPU / multi-node: `torchrun --nproc_per_node N [--nnodes M --rdzv-endpoint HOST:PORT] -m volseg train ...`.
    """
    started = time.perf_counter()  # a --minutes budget counts from here: importing torch and MONAI is part of it
    from volseg.cli.progress import TrainingProgress
    from volseg.runtime.distributed import resolve_device
    from volseg.training.planning import training_config
    from volseg.training.trainer import train as run_training

    if nproc > 1:
        _relaunch_with_torchrun(nproc)
    is_main = int(os.environ.get("RANK", "0")) == 0
    with user_errors():
        if minutes is not None and epochs is not None:
            raise VolsegError("--minutes takes a budget > 0 and replaces --epochs; give one of them")
        cfg = training_config(config, overrides, manifest_path, dims, model, minutes)
        resolve_device(device)
        run_dir = output or Path("runs") / f"{cfg.model.name}_{cfg.model.dims}d"
        if is_main:
            console.print(f"training {cfg.model.name} {cfg.model.dims}D on {cfg.data.manifest} -> {run_dir}")
        with TrainingProgress(console, visible=is_main) as progress:
            history = run_training(
                cfg, run_dir, device=device, resume=resume, callbacks=progress, epochs=epochs, started=started
            )
    if history and is_main:
        best = max((r.val_mean for r in history if r.val_dice), default=float("nan"))
        console.print(
            f"done: {len(history)} epochs, last loss {history[-1].train_loss:.4f}, "
            f"best validation Dice {best:.4f}; run folder {run_dir}"
        )


def _relaunch_with_torchrun(nproc: int) -> None:
    """Replace this process with torchrun running the same command minus --nproc."""
    import sys

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "volseg",
            *args,
        ],
    )
