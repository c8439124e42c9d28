"""Training: any zoo model, 2D-slice or 3D-patch, CPU or CUDA, resumable, validated with the predictor
that ``volseg infer`` uses. ``train`` is the one public function; the CLI only parses and reports."""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from monai.utils import set_determinism

from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from volseg import distributed
from volseg.atomic import atomic_path, write_csv_atomic
from volseg.checkpoint import (
    FORMAT, CheckpointError, build_network, load_checkpoint, rng_state, save_atomic, set_rng_state,
)
from volseg.config import Config, config_from_dict, save_config
from volseg.data.dataset import checked_datasets, training_loader
from volseg.data.manifest import read_manifest
from volseg.losses import DeepSupervisionLoss, SegmentationLoss
from volseg.metrics import dice_per_label, mean_finite
from volseg.predict import autocast, predict_probabilities, probabilities_to_labels

log = logging.getLogger(__name__)


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken as given."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu" or spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        device = torch.device(spec)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available; use --device cpu or auto")
        return device
    raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N; got {spec!r}")


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    lr: float
    seconds: float
    val_dice: dict[int, float] = field(default_factory=dict)
    loader_wait_share: float = float("nan")  # share of the training loop spent waiting for a batch
    val_seconds: float = 0.0  # of ``seconds``, the part spent validating

    @property
    def val_mean(self) -> float:
        return mean_finite(self.val_dice.values()) if self.val_dice else float("nan")

    def row(self, labels: dict[int, str]) -> dict:
        row = {"epoch": self.epoch, "train_loss": f"{self.train_loss:.5f}", "lr": f"{self.lr:.6g}",
               "seconds": f"{self.seconds:.1f}", "loader_wait_share": _fmt(self.loader_wait_share),
               "val_dice_mean": _fmt(self.val_mean)}
        for value, name in labels.items():
            row[f"val_dice_{name}"] = _fmt(self.val_dice.get(value, float("nan")))
        return row


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.4f}"


class Callbacks:
    """Hooks for a progress display; the library itself only logs."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, loss: float) -> None: ...
    def on_epoch_end(self, record: EpochRecord) -> None: ...


def learning_rate(cfg: Config, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """AdamW: linear warm-up then cosine to 0. SGD: nnU-Net's poly decay (1 - t)^0.9."""
    t = cfg.train
    progress = step / max(total_steps, 1)
    if t.optimizer == "sgd":
        return t.lr * (1 - progress) ** 0.9
    warmup = t.warmup_epochs * steps_per_epoch
    if step < warmup:
        return t.lr * (step + 1) / warmup
    return 0.5 * t.lr * (1 + math.cos(math.pi * (step - warmup) / max(total_steps - warmup, 1)))


def budget_epochs(history: list[EpochRecord], budget_seconds: float, cap: int, val_every: int) -> int:
    """The epoch count that fits a wall-clock budget, decided twice. After epoch 1 a first count from it;
    that epoch also caches the data and warms up, so it is the slowest and the count is low. After epoch 2
    the count is fixed from the time left and a steady-state epoch (epoch 2's training loop plus its share
    of validation), so a model that is slow to cache is not also cut to too few epochs."""
    spent = sum(r.seconds for r in history)
    if len(history) == 1:
        return min(cap, max(1, int(budget_seconds // history[0].seconds)))
    last = history[-1]
    validation = max(r.val_seconds for r in history) / max(val_every, 1)
    steady = max(last.seconds - last.val_seconds + validation, 1e-9)
    return min(cap, len(history) + int(max(0.0, budget_seconds - spent) // steady))


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=0.99, nesterov=True, weight_decay=t.weight_decay)
    raise ValueError(f"train.optimizer must be one of ['adamw', 'sgd'], got {t.optimizer!r}")


def seed_epoch(seed: int, epoch: int, transform, rank: int = 0) -> None:
    """Re-seed every RNG from (seed, epoch, rank): an epoch's samples do not depend on how we got there,
    so a resumed run replays exactly what the uninterrupted one would have done."""
    s = seed * 100_003 + epoch + 7919 * rank
    set_determinism(seed=s)
    random.seed(s)
    transform.set_random_state(seed=s % 2**32)


def _batches(loader, steps: int) -> Iterator[dict]:
    done = 0
    while done < steps:
        for batch in loader:
            yield batch
            done += 1
            if done == steps:
                return


def validate(model, dataset, cfg: Config, device: torch.device, ctx: distributed.Context) -> dict[int, float]:
    """Mean Dice per label over whole validation volumes, predicted exactly as ``volseg infer`` does.
    Under torchrun each rank predicts every world_size-th case and the scores are gathered. A label that
    only ``data.split_at_midline`` makes is not scored: the network's class holds both sides."""
    split_only = set((cfg.data.split_at_midline or {}).values())
    labels = [v for v in cfg.data.labels if v not in split_only]
    scores = []
    for index in range(ctx.rank, len(dataset), ctx.world_size):
        item = dataset[index]
        probs = predict_probabilities(model, item["image"], cfg, device, overlap=cfg.train.val_overlap)
        scores.append(dice_per_label(probabilities_to_labels(probs), item["label"][0].round().long(), labels))
    model.train()
    scores = [s for rank_scores in distributed.gather(ctx, scores) for s in rank_scores]
    return {v: float(np.mean([s[v] for s in scores])) for v in labels if scores}


def _write_metrics(history: list[EpochRecord], labels: dict[int, str], run_dir: Path) -> None:
    rows = [r.row(labels) for r in history]
    write_csv_atomic(run_dir / "metrics.csv", list(rows[0]), rows)
    _plot_curves(history, labels, run_dir / "curves.png")


def _plot_curves(history: list[EpochRecord], labels: dict[int, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r.epoch for r in history], [r.train_loss for r in history], marker=".")
    ax_loss.set(title="training loss", xlabel="epoch")
    validated = [r for r in history if r.val_dice]
    for value, name in labels.items():
        ax_dice.plot([r.epoch for r in validated], [r.val_dice.get(value, np.nan) for r in validated], marker=".", label=name)
    ax_dice.plot([r.epoch for r in validated], [r.val_mean for r in validated], "k--", label="mean")
    ax_dice.set(title="validation Dice", xlabel="epoch", ylim=(0, 1))
    ax_dice.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: tensorboard not installed
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(cfg: Config, run_dir: str | Path, device: str = "auto", resume: bool = False,
          callbacks: Callbacks | None = None, epochs: int | None = None) -> list[EpochRecord]:
    """Train ``cfg.model`` on the manifest's train split, validating on its val split.

    Leaves ``run_dir`` with config.yaml, last.pt, best.pt, metrics.csv and curves.png.
    With ``resume`` it continues from ``run_dir/last.pt`` with the config saved there; ``epochs``, when
    given, replaces ``train.epochs`` (to extend a finished run). ``train.time_budget_minutes`` fixes the
    number of epochs after the second one (:func:`budget_epochs`), so the schedule completes in budget.
    Under ``torchrun`` it trains with DistributedDataParallel; rank 0 alone writes the run folder.
    """
    ctx = distributed.setup(device)
    try:
        return _train(cfg, Path(run_dir), resolve_device(distributed.device_for(ctx, device)), resume,
                      callbacks or Callbacks(), epochs, ctx)
    finally:
        distributed.teardown(ctx)


def _train(cfg: Config, run_dir: Path, dev: torch.device, resume: bool, callbacks: Callbacks,
           epochs: int | None, ctx: distributed.Context) -> list[EpochRecord]:
    last_path = run_dir / "last.pt"
    state = None
    if ctx.is_main:
        for stale in run_dir.glob(".*.tmp*"):  # temporary files of writes a killed run never finished
            stale.unlink()
    if resume:
        if not last_path.is_file():
            raise CheckpointError(f"{last_path}: no checkpoint to resume from")
        state = load_checkpoint(last_path)
        cfg = config_from_dict(state["config"])
    elif last_path.exists():
        raise ValueError(f"{run_dir} already holds a training run; pass --resume to continue it or choose another --output")
    if epochs is not None:
        cfg.train.epochs = epochs
    if state is not None and state["epoch"] >= cfg.train.epochs:
        log.info("%s already finished at epoch %d", run_dir, state["epoch"])  # no data to read, nothing to train
        return [EpochRecord(**h) for h in state["history"]]
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dims = cfg.model.dims

    cases = read_manifest(cfg.data.manifest)
    train_cases = [c for c in cases if c.split == "train"]
    val_cases = [c for c in cases if c.split == "val" and c.label is not None]
    if not train_cases:
        raise ValueError(f"{cfg.data.manifest}: no cases with split 'train'")
    # every bad file named before an hour of training; with the memory cache, each file is read once
    train_ds, val_ds = checked_datasets(train_cases, val_cases, cfg, dims, num_workers=cfg.train.num_workers)

    set_determinism(seed=cfg.train.seed)
    network = build_network(cfg).to(dev)
    if ctx.enabled and cfg.train.sync_batchnorm:
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    model = DistributedDataParallel(network, device_ids=[dev.index] if dev.type == "cuda" else None) if ctx.enabled else network
    optimizer = make_optimizer(cfg, model)
    loss_fn = DeepSupervisionLoss(SegmentationLoss(len(cfg.data.labels)))
    use_amp = cfg.train.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    sampler = DistributedSampler(train_ds, ctx.world_size, ctx.rank, seed=cfg.train.seed) if ctx.enabled else None
    loader = training_loader(train_ds, cfg, dims, num_workers=cfg.train.num_workers, sampler=sampler)
    steps_per_epoch = cfg.train.iterations_per_epoch or len(loader)
    total_steps = steps_per_epoch * cfg.train.epochs

    start_epoch, best, history = 1, -1.0, []
    if state is not None:
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_epoch, best = state["epoch"] + 1, state["best_dice"]
        history = [EpochRecord(**h) for h in state["history"]]  # older checkpoints lack the newer fields
        log.info("resuming %s at epoch %d", run_dir, start_epoch)
    elif ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    distributed.barrier(ctx)
    writer = _tensorboard(run_dir) if ctx.is_main else None

    # a time budget only ever shortens the run; a run resumed before its count was fixed keeps the first cap
    epoch_cap = state.get("epoch_cap", cfg.train.epochs) if state is not None and epochs is None else cfg.train.epochs
    for epoch in itertools.count(start_epoch):
        if epoch > cfg.train.epochs:  # the time budget may have shortened the run
            break
        seed_epoch(cfg.train.seed, epoch, train_ds.transform, ctx.rank)
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        callbacks.on_epoch_start(epoch, cfg.train.epochs, steps_per_epoch)
        started, losses, loader_wait = time.perf_counter(), [], 0.0
        fetch_started = started
        for i, batch in enumerate(_batches(loader, steps_per_epoch)):
            loader_wait += time.perf_counter() - fetch_started
            step = (epoch - 1) * steps_per_epoch + i
            lr = learning_rate(cfg, step, total_steps, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = batch["image"].to(dev), batch["label"].to(dev)
            with autocast(dev) if use_amp else nullcontext():
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ctx.enabled and cfg.train.verify_replicas:
                verify_replicas(network, ctx)
            losses.append(float(loss.detach()))  # also waits for the device, so loader_wait is honest on CUDA
            callbacks.on_step(losses[-1])
            fetch_started = time.perf_counter()
        loop_seconds = time.perf_counter() - started
        record = EpochRecord(epoch, distributed.mean(ctx, float(np.mean(losses))), lr, 0.0,
                             loader_wait_share=distributed.mean(ctx, loader_wait / loop_seconds))
        if val_ds is not None and (epoch % cfg.train.val_every == 0 or epoch == cfg.train.epochs):
            validation_started = time.perf_counter()
            record.val_dice = validate(network, val_ds, cfg, dev, ctx)
            record.val_seconds = max(distributed.gather(ctx, time.perf_counter() - validation_started))
        record.seconds = max(distributed.gather(ctx, time.perf_counter() - started))
        history.append(record)
        if epoch in (1, 2) and cfg.train.time_budget_minutes > 0:
            cfg.train.epochs = budget_epochs(history, cfg.train.time_budget_minutes * 60, epoch_cap, cfg.train.val_every)
            total_steps = steps_per_epoch * cfg.train.epochs
            log.info("time budget %.1f min: %d epochs", cfg.train.time_budget_minutes, cfg.train.epochs)
            if ctx.is_main:
                save_config(cfg, run_dir / "config.yaml")
        improved = bool(record.val_dice) and record.val_mean > best
        best = record.val_mean if improved else best
        if ctx.is_main:
            _save_epoch(run_dir, network, optimizer, scaler if use_amp else None, cfg, history, best,
                        save_best=improved or val_ds is None, epoch_cap=epoch_cap)
            if writer is not None:
                writer.add_scalar("loss/train", record.train_loss, epoch)
                for value, d in record.val_dice.items():
                    writer.add_scalar(f"dice/{cfg.data.labels[value]}", d, epoch)
        distributed.barrier(ctx)  # no rank runs ahead of a checkpoint
        callbacks.on_epoch_end(record)
        log.info("epoch %d loss %.4f val dice %s loader wait %.0f%%", epoch, record.train_loss, record.val_dice,
                 100 * record.loader_wait_share)
        if _should_stop(history, cfg.train.early_stop_patience):
            log.info("early stop: no validation improvement in %d validations", cfg.train.early_stop_patience)
            break
    if writer is not None:
        writer.close()
    return history


def _save_epoch(run_dir: Path, network, optimizer, scaler, cfg: Config, history: list[EpochRecord], best: float,
                save_best: bool, epoch_cap: int) -> None:
    """last.pt every epoch, best.pt on improvement (atomic), then metrics.csv and the curves."""
    payload = {
        "format": FORMAT, "model": network.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None, "epoch": history[-1].epoch,
        "best_dice": best, "config": cfg.to_dict(), "rng": rng_state(), "label_names": dict(cfg.data.labels),
        "epoch_cap": epoch_cap,  # the configured epochs, before a time budget shortened them
        "history": [asdict(r) for r in history],  # every field, so a resume loses none
    }
    if save_best:
        save_atomic(payload, run_dir / "best.pt")
    save_atomic(payload, run_dir / "last.pt")
    _write_metrics(history, cfg.data.labels, run_dir)


def verify_replicas(network: torch.nn.Module, ctx: distributed.Context) -> None:
    """Raise if the ranks' weights differ (a bit-exact checksum of every parameter, gathered)."""
    checksum = torch.stack([p.detach().double().sum() for p in network.parameters()]).cpu()
    sums = distributed.gather(ctx, checksum)
    if any(not torch.equal(sums[0], other) for other in sums[1:]):
        raise RuntimeError("DDP replicas diverged: parameter checksums differ between ranks")


def _should_stop(history: list[EpochRecord], patience: int) -> bool:
    validated = [r.val_mean for r in history if r.val_dice]
    if not patience or len(validated) <= patience:
        return False
    return max(validated[-patience:]) <= max(validated[:-patience])
