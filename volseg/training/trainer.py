"""Training: any zoo model, 2D-slice or 3D-patch, CPU or CUDA, resumable, validated with the predictor
that ``volseg infer`` uses. ``train`` runs a :class:`Trainer` (named steps, like nnU-Net's); how long it
runs and how the learning rate moves is :mod:`volseg.training.schedule`. The CLI only parses and reports."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.utils import set_determinism
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from volseg.config import Config, config_from_dict, save_config
from volseg.data import io
from volseg.data.dataset import checked_datasets, training_loader
from volseg.data.manifest import read_manifest
from volseg.data.scan_screen import TrainingScans, extent_mm, median_extent
from volseg.errors import VolsegError
from volseg.evaluation.metrics import dice_per_label, mean_finite
from volseg.files.atomic import atomic_path, write_csv_atomic
from volseg.runtime import distributed
from volseg.runtime.checkpoint import (
    FORMAT,
    CheckpointError,
    build_network,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from volseg.runtime.predict import autocast, predict_probabilities, probabilities_to_labels
from volseg.training.losses import DeepSupervisionLoss, SegmentationLoss
from volseg.training.schedule import Schedule, learning_rate

log = logging.getLogger(__name__)
# a run folder's per-epoch numbers; not metrics.csv, the name of `volseg evaluate`'s per-case scores
TRAINING_LOG = "training_log.csv"


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    lr: float
    seconds: float
    val_dice: dict[int, float] = field(default_factory=dict)
    loader_wait_share: float = float("nan")  # share of the training loop spent waiting for a batch
    val_seconds: float = 0.0  # of ``seconds``, the part spent validating
    steps_per_second: float = float("nan")  # optimizer steps over the training loop's own seconds (this rank)
    peak_gpu_memory_mb: float = float("nan")  # the most GPU memory the epoch's tensors held (CUDA only)

    @property
    def val_mean(self) -> float:
        return mean_finite(self.val_dice.values()) if self.val_dice else float("nan")

    def row(self, labels: dict[int, str]) -> dict:
        row = {
            "epoch": self.epoch,
            "train_loss": f"{self.train_loss:.5f}",
            "lr": f"{self.lr:.6g}",
            "seconds": f"{self.seconds:.1f}",
            "loader_wait_share": _fmt(self.loader_wait_share),
            "steps_per_second": _fmt(self.steps_per_second),
            "peak_gpu_memory_mb": "" if math.isnan(self.peak_gpu_memory_mb) else f"{self.peak_gpu_memory_mb:.0f}",
            "val_dice_mean": _fmt(self.val_mean),
        }
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


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=0.99, nesterov=True, weight_decay=t.weight_decay)
    raise VolsegError(f"train.optimizer must be one of ['adamw', 'sgd'], got {t.optimizer!r}")


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


def validation_dice(model, dataset, cfg: Config, device: torch.device, ctx: distributed.Context) -> dict[int, float]:
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
    write_csv_atomic(run_dir / TRAINING_LOG, list(rows[0]), rows)
    _plot_curves(history, labels, run_dir / "curves.png")


def _plot_curves(history: list[EpochRecord], labels: dict[int, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r.epoch for r in history], [r.train_loss for r in history], marker="o")
    ax_loss.set(title="training loss", xlabel="epoch")
    validated = [r for r in history if r.val_dice]
    for value, name in labels.items():
        ax_dice.plot(
            [r.epoch for r in validated], [r.val_dice.get(value, np.nan) for r in validated], marker="o", label=name
        )
    ax_dice.plot([r.epoch for r in validated], [r.val_mean for r in validated], "k--", marker="o", label="mean")
    ax_dice.set(title="validation Dice", xlabel="epoch", ylim=(0, 1))
    ax_dice.legend(loc="lower right")
    if not validated:
        ax_dice.text(0.5, 0.5, "not validated yet", ha="center", va="center", transform=ax_dice.transAxes)
    for ax in (ax_loss, ax_dice):  # whole epochs, readable from the first one on
        ax.set_xlim(0.5, history[-1].epoch + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
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


def train(
    cfg: Config,
    run_dir: str | Path,
    device: str = "auto",
    resume: bool = False,
    callbacks: Callbacks | None = None,
    epochs: int | None = None,
    started: float | None = None,
) -> list[EpochRecord]:
    """Train ``cfg.model`` on the manifest's train split, validating on its val split (a :class:`Trainer`).

    Leaves ``run_dir`` with config.yaml, last.pt, best.pt, training_log.csv and curves.png.
    With ``resume`` it continues from ``run_dir/last.pt`` with the config and schedule saved there;
    ``epochs``, when given, sets the epoch count (to extend a finished run). ``train.time_budget_minutes``
    (``volseg train --minutes``) trains for a wall-clock budget instead: the count is fixed after epoch 2
    (:class:`~volseg.training.schedule.Schedule`), and ``train.epochs`` is then only the learning rate's first guess. The
    budget is held inside an epoch too, counted from ``started`` (``time.perf_counter()``; the command line
    passes its own start, so importing torch counts) or from the call.
    Under ``torchrun`` it trains with DistributedDataParallel; rank 0 alone writes the run folder.
    """
    ctx = distributed.setup(device)
    try:
        dev = distributed.resolve_device(distributed.device_for(ctx, device))
        trainer = Trainer(cfg, Path(run_dir), dev, ctx, callbacks, resume=resume, epochs=epochs)
        return trainer.run(started)
    finally:
        distributed.teardown(ctx)


class Trainer:
    """One training run in named steps, in the shape of nnU-Net's ``run_training``: :meth:`setup` (fresh or
    resumed), then for each epoch :meth:`train_epoch`, :meth:`validate`, :meth:`end_epoch` and :meth:`save`,
    until :meth:`should_stop`. Every rank runs the same steps; rank 0 alone writes."""

    clock = staticmethod(time.perf_counter)  # epoch timing (the budget's input); tests replace it

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        device: torch.device,
        ctx: distributed.Context,
        callbacks: Callbacks | None = None,
        resume: bool = False,
        epochs: int | None = None,
    ):
        self.cfg, self.run_dir, self.device, self.ctx = cfg, Path(run_dir), device, ctx
        self.callbacks = callbacks or Callbacks()
        self.resume, self.epochs = resume, epochs
        self.history: list[EpochRecord] = []
        self.best = -1.0
        self.writer = None
        self.stopped_at: float | None = None  # when the last epoch's clock stopped (its save counts in the next)
        self.ending = False  # a time budget is spent: this epoch is the last, and it is validated

    @property
    def epoch(self) -> int:
        """The last finished epoch (0 before the first)."""
        return self.history[-1].epoch if self.history else 0

    def run(self, started: float | None = None) -> list[EpochRecord]:
        """Set up, then train, validate, time and save epoch after epoch until the run should stop."""
        self.started = self.clock() if started is None else started  # a budget counts the set-up too
        if not self.setup():
            return self.history
        self.spent_before = sum(r.seconds for r in self.history)  # a resumed run's budget counts what it spent
        try:
            while not self.should_stop():
                record = self.train_epoch(self.epoch + 1)
                self.validate(record)
                self.end_epoch(record)
                if not record.val_dice and self.schedule.finished(record.epoch):
                    self.validate(record)  # a budget's epoch count ended the run on an epoch val_every skips
                    record.seconds += record.val_seconds
                self.save(record)
                self.callbacks.on_epoch_end(record)
                log.info(
                    "epoch %d loss %.4f val dice %s loader wait %.0f%%",
                    record.epoch,
                    record.train_loss,
                    record.val_dice,
                    100 * record.loader_wait_share,
                )
        finally:
            if self.writer is not None:
                self.writer.close()
        return self.history

    def setup(self) -> bool:
        """A fresh run folder, or the config, schedule, weights, optimizer and RNG state of ``last.pt``.
        False when a resumed run has already finished: then no data is read."""
        if self.ctx.is_main:
            for stale in self.run_dir.glob(".*.tmp*"):  # temporary files of writes a killed run never finished
                stale.unlink()
        state = self.plan()
        if self.schedule.finished(self.epoch):
            log.info("%s already finished at epoch %d", self.run_dir, self.epoch)  # no data to read, nothing to train
            return False
        if self.cfg.train.threads:
            torch.set_num_threads(self.cfg.train.threads)
        self.read_data()
        self.build()
        if state is not None:
            self.network.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            log.info("resuming %s at epoch %d", self.run_dir, self.epoch + 1)
        elif self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
        distributed.barrier(self.ctx)
        self.writer = _tensorboard(self.run_dir) if self.ctx.is_main else None
        return True

    def plan(self) -> dict | None:
        """The schedule: a fresh one from the config, or a resumed run's with its config, history and best
        Dice (then its saved state is returned, for :meth:`setup` to load once the model is built)."""
        last_path = self.run_dir / "last.pt"
        state = None
        if self.resume:
            if not last_path.is_file():
                raise CheckpointError(f"{last_path}: no checkpoint to resume from")
            state = load_checkpoint(last_path)
            self.cfg = config_from_dict(state["config"])
            self.schedule = Schedule.from_checkpoint(state, self.cfg)
            self.history = [EpochRecord(**h) for h in state["history"]]  # older checkpoints lack the newer fields
            self.best = state["best_dice"]
        elif last_path.exists():
            raise VolsegError(
                f"{self.run_dir} already holds a training run; pass --resume to continue it or choose another --output"
            )
        else:
            self.schedule = Schedule.from_config(self.cfg)
        if self.epochs is not None:
            self.cfg.train.epochs = self.epochs
            self.schedule.extend_to(self.epochs)
        return state

    def read_data(self) -> None:
        """The train and val datasets, every bad file named before an hour of training (with the memory cache,
        each file is read once), and the record of the training scans."""
        cfg = self.cfg
        cases = read_manifest(cfg.data.manifest)
        train_cases = [c for c in cases if c.split == "train"]
        val_cases = [c for c in cases if c.split == "val" and c.label is not None]
        if not train_cases:
            raise VolsegError(f"{cfg.data.manifest}: no cases with split 'train'")
        self.train_ds, self.val_ds = checked_datasets(
            train_cases, val_cases, cfg, cfg.model.dims, num_workers=cfg.train.num_workers
        )
        self.training_scans = training_scans(cfg.data.modality, train_cases)

    def build(self) -> None:
        """The network (DDP-wrapped under torchrun), optimizer, loss, AMP scaler and the training loader."""
        cfg, ctx, dev = self.cfg, self.ctx, self.device
        set_determinism(seed=cfg.train.seed)
        self.network = build_network(cfg).to(dev)
        if ctx.enabled and cfg.train.sync_batchnorm:
            self.network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.network)
        self.model = (
            DistributedDataParallel(self.network, device_ids=[dev.index] if dev.type == "cuda" else None)
            if ctx.enabled
            else self.network
        )
        self.optimizer = make_optimizer(cfg, self.model)
        self.loss_fn = DeepSupervisionLoss(SegmentationLoss(len(cfg.data.labels)))
        self.use_amp = cfg.train.amp and dev.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.sampler = (
            DistributedSampler(self.train_ds, ctx.world_size, ctx.rank, seed=cfg.train.seed) if ctx.enabled else None
        )
        self.loader = training_loader(
            self.train_ds, cfg, cfg.model.dims, num_workers=cfg.train.num_workers, sampler=self.sampler
        )
        self.steps_per_epoch = cfg.train.iterations_per_epoch or len(self.loader)

    def train_epoch(self, epoch: int) -> EpochRecord:
        """One epoch of optimizer steps, re-seeded from (seed, epoch), so a resumed run replays it exactly."""
        cfg, ctx = self.cfg, self.ctx
        seed_epoch(cfg.train.seed, epoch, self.train_ds.transform, ctx.rank)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.model.train()
        self.callbacks.on_epoch_start(epoch, self.schedule.epochs or 0, self.steps_per_epoch)
        total_steps = self.steps_per_epoch * self.schedule.lr_epochs
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.epoch_started = fetch_started = self.clock()
        losses, loader_wait = [], 0.0
        for i, batch in enumerate(_batches(self.loader, self.steps_per_epoch)):
            loader_wait += self.clock() - fetch_started
            lr = learning_rate(cfg, (epoch - 1) * self.steps_per_epoch + i, total_steps, self.steps_per_epoch)
            losses.append(self.train_step(batch, lr))
            self.callbacks.on_step(losses[-1])
            if self.budget_spent():  # checked every step: one epoch of a loaded machine can outlast the budget
                break
            fetch_started = self.clock()
        self.ending = self.budget_spent()
        loop_seconds = max(self.clock() - self.epoch_started, 1e-9)
        return EpochRecord(
            epoch,
            distributed.mean(ctx, float(np.mean(losses))),
            lr,
            0.0,
            loader_wait_share=distributed.mean(ctx, loader_wait / loop_seconds),
            steps_per_second=len(losses) / loop_seconds,
            peak_gpu_memory_mb=torch.cuda.max_memory_allocated(self.device) / 2**20
            if self.device.type == "cuda"
            else float("nan"),
        )

    def train_step(self, batch: dict, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = batch["image"].to(self.device), batch["label"].to(self.device)
        with autocast(self.device) if self.use_amp else nullcontext():
            loss = self.loss_fn(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ctx.enabled and self.cfg.train.verify_replicas:
            verify_replicas(self.network, self.ctx)
        return float(loss.detach())  # also waits for the device, so loader_wait is honest on CUDA

    def budget_spent(self) -> bool:
        """Under a time budget: is what is left of it no more than the last validation and save need? Every
        rank gets the same answer, so none waits for a step the others skip."""
        if not self.schedule.minutes:
            return False
        left = self.schedule.minutes * 60 - self.spent_before - (self.clock() - self.started)
        return any(distributed.gather(self.ctx, left <= self.reserve_seconds()))

    def reserve_seconds(self) -> float:
        """What the budget keeps for the last validation and save: the slowest validation so far with a fifth
        more (the machine may be busier now), and never less than 5 % of the budget (the save and the curves;
        a validation not yet measured). The epoch count planned from steady epochs already fits the budget, so
        on a machine as fast as it was, the last epoch ends before its reserve is touched."""
        slowest = max((r.val_seconds for r in self.history), default=0.0)
        return max(1.2 * slowest, 0.05 * self.schedule.minutes * 60)

    def validate(self, record: EpochRecord) -> None:
        """Whole-volume Dice every ``train.val_every`` epochs, on the epoch the schedule plans last, and on the
        epoch a time budget ends (so a budgeted run always leaves a validated ``best.pt``)."""
        epoch = record.epoch
        due = epoch % self.cfg.train.val_every == 0 or epoch == self.schedule.lr_epochs or self.ending
        if self.val_ds is None or not due:
            return
        started = self.clock()
        record.val_dice = validation_dice(self.network, self.val_ds, self.cfg, self.device, self.ctx)
        record.val_seconds = max(distributed.gather(self.ctx, self.clock() - started))

    def end_epoch(self, record: EpochRecord) -> None:
        """Stop the epoch's clock (slowest rank) and let a time budget count the epochs from it."""
        # from where the previous epoch's clock stopped, so its save (checkpoints, metrics, curves) counts here:
        # tiny epochs spent more time saving than training, and a 2-minute budget ran 7 minutes
        now = self.clock()
        since = self.epoch_started if self.stopped_at is None else min(self.stopped_at, self.epoch_started)
        record.seconds = max(distributed.gather(self.ctx, now - since))
        self.stopped_at = now
        self.history.append(record)
        counting = self.schedule.epochs is None
        self.schedule.after_epoch(self.history, self.cfg.train.val_every)
        if self.ending:
            self.schedule.epochs = self.schedule.lr_epochs = record.epoch  # the budget is spent: this is the last
        if counting:
            log.info(
                "time budget %.1f min: %d epochs%s",
                self.schedule.minutes,
                self.schedule.lr_epochs,
                "" if self.schedule.epochs else " (first count; fixed after epoch 2)",
            )

    def save(self, record: EpochRecord) -> None:
        """last.pt every epoch, best.pt on improvement (atomic), then training_log.csv, the curves and TensorBoard.
        Every rank waits for it, so none runs ahead of a checkpoint."""
        # the first validation always writes best.pt, even one whose Dice is undefined (no label in the val set)
        improved = bool(record.val_dice) and (self.best < 0 or record.val_mean > self.best)
        if improved and not math.isnan(record.val_mean):
            self.best = record.val_mean
        if self.ctx.is_main:
            cfg = self.cfg
            payload = {
                "format": FORMAT,
                "model": self.network.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.use_amp else None,
                "epoch": record.epoch,
                "best_dice": self.best,
                "config": cfg.to_dict(),
                "rng": rng_state(),
                "label_names": dict(cfg.data.labels),
                "schedule": self.schedule.to_dict(),  # whole, so a resumed run keeps its epoch count
                "history": [asdict(r) for r in self.history],  # every field, so a resume loses none
                "training_scans": self.training_scans.to_dict(),  # what `volseg infer` screens scans against
            }
            if improved or self.val_ds is None:
                save_atomic(payload, self.run_dir / "best.pt")
            save_atomic(payload, self.run_dir / "last.pt")
            _write_metrics(self.history, cfg.data.labels, self.run_dir)
            if self.writer is not None:
                self.writer.add_scalar("loss/train", record.train_loss, record.epoch)
                for value, d in record.val_dice.items():
                    self.writer.add_scalar(f"dice/{cfg.data.labels[value]}", d, record.epoch)
        distributed.barrier(self.ctx)

    def should_stop(self) -> bool:
        """The schedule's epoch count is reached, or validation stopped improving (early stop)."""
        if self.schedule.finished(self.epoch):
            return True
        if early_stop_due(self.history, self.cfg.train.early_stop_patience):
            log.info("early stop: no validation improvement in %d validations", self.cfg.train.early_stop_patience)
            return True
        return False


def training_scans(modality: str, cases) -> TrainingScans:
    """The modality and median field of view of the training scans, from their headers (DICOM folders, read
    only when training loads them, do not count)."""
    grids = [grid for case in cases if (grid := io.check_header(case.images[0])) is not None]
    return TrainingScans(modality, median_extent([extent_mm(*grid) for grid in grids]), f"{len(grids)} training scans")


def verify_replicas(network: torch.nn.Module, ctx: distributed.Context) -> None:
    """Raise if the ranks' weights differ (a bit-exact checksum of every parameter, gathered)."""
    checksum = torch.stack([p.detach().double().sum() for p in network.parameters()]).cpu()
    sums = distributed.gather(ctx, checksum)
    if any(not torch.equal(sums[0], other) for other in sums[1:]):
        raise RuntimeError("DDP replicas diverged: parameter checksums differ between ranks")


def early_stop_due(history: list[EpochRecord], patience: int) -> bool:
    """True when the last ``patience`` validations beat none before them (0 disables)."""
    validated = [r.val_mean for r in history if r.val_dice]
    if not patience or len(validated) <= patience:
        return False
    return max(validated[-patience:]) <= max(validated[:-patience])
