"""Training: every model learns on one batch, runs leave a complete folder, resume is exact."""

import csv
import math

import pytest
import torch

from volseg.data.dataset import training_dataset, training_loader
from volseg.data.manifest import read_manifest
from volseg.runtime.checkpoint import build_network, load_checkpoint
from volseg.runtime.distributed import resolve_device
from volseg.training.losses import (
    DeepSupervisionLoss,
    SegmentationLoss,
    deep_supervision_weights,
)
from volseg.training.trainer import Callbacks, make_optimizer, train

from .helpers import tiny_config, tiny_manifest

MODELS = ["attunet", "r2attunet", "r2unet", "resunet", "unet", "unetpp"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return tiny_manifest(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", MODELS)
def test_every_model_learns_one_batch(manifest, name, dims):
    cfg = tiny_config(manifest, name, dims, "train.lr=0.01", "model.deep_supervision=true")
    torch.manual_seed(0)
    cases = [c for c in read_manifest(manifest) if c.split == "train"]
    batch = next(iter(training_loader(training_dataset(cases[:1], cfg, dims), cfg, dims)))
    model = build_network(cfg).train()
    optimizer = make_optimizer(cfg, model)
    loss_fn = DeepSupervisionLoss(SegmentationLoss(len(cfg.data.labels)))
    losses = []
    for _ in range(6):
        loss = loss_fn(model(batch["image"]), batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses


def test_deep_supervision_weights_halve_and_sum_to_one():
    w = deep_supervision_weights(4)
    assert w == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15])


def test_binary_loss_uses_one_sigmoid_channel():
    loss = SegmentationLoss(n_labels=1)
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:5, 2:5] = 1
    good, bad = 20 * (target - 0.5), -20 * (target - 0.5)
    assert loss(good, target) < 0.05 < loss(bad, target)


def test_run_folder_and_checkpoint_contents(manifest, tmp_path):
    cfg = tiny_config(manifest, "attunet", 3)
    history = train(cfg, tmp_path / "run", device="cpu")
    run = tmp_path / "run"
    for name in ("config.yaml", "best.pt", "last.pt", "training_log.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*tmp*"))
    rows = list(csv.DictReader((run / "training_log.csv").open(encoding="utf-8")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"val_dice_anterior", "val_dice_posterior", "val_dice_mean"} <= set(rows[0])
    assert all(0 <= float(r["loader_wait_share"]) < 1 for r in rows)
    assert all(float(r["steps_per_second"]) > 0 and r["peak_gpu_memory_mb"] == "" for r in rows)  # CPU: no GPU memory
    payload = load_checkpoint(run / "last.pt")  # weights_only=True inside
    assert payload["epoch"] == 2 and payload["config"]["model"]["name"] == "attunet"
    assert payload["config"]["preprocess"]["spacing"] == [1.0, 1.0, 1.0]
    assert payload["label_names"] == {1: "anterior", 2: "posterior"}
    assert {"torch", "numpy", "python"} <= set(payload["rng"])
    assert len(history) == 2 and all(0 <= d <= 1 for d in history[-1].val_dice.values())


def test_loader_wait_share_reports_a_starved_training_step(manifest, tmp_path, monkeypatch):
    import time

    import volseg.training.trainer

    class SlowLoader:
        def __init__(self, loader):
            self.loader = loader

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for batch in self.loader:
                time.sleep(0.3)  # far longer than a tiny model's step
                yield batch

    real = volseg.training.trainer.training_loader
    monkeypatch.setattr(volseg.training.trainer, "training_loader", lambda *a, **k: SlowLoader(real(*a, **k)))
    history = train(tiny_config(manifest, "unet", 2, "train.epochs=1"), tmp_path / "run", device="cpu")
    assert history[0].loader_wait_share > 0.5


def test_existing_run_is_not_overwritten(manifest, tmp_path):
    cfg = tiny_config(manifest, "unet", 2, "train.epochs=1")
    train(cfg, tmp_path / "run", device="cpu")
    with pytest.raises(ValueError, match="already holds a training run; pass --resume"):
        train(cfg, tmp_path / "run", device="cpu")


class _InterruptAfter(Callbacks):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, record):
        if record.epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("dims", [2, 3])
def test_resume_replays_the_uninterrupted_run(manifest, tmp_path, dims):
    cfg = tiny_config(manifest, "unet", dims, "train.epochs=3", "train.val_every=5")
    full = train(cfg, tmp_path / "full", device="cpu")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "split", device="cpu", callbacks=_InterruptAfter(epoch=2))
    resumed = train(cfg, tmp_path / "split", device="cpu", resume=True)
    assert [r.epoch for r in resumed] == [1, 2, 3]
    assert resumed[-1].train_loss == full[-1].train_loss
    a, b = (load_checkpoint(tmp_path / run / "last.pt")["model"] for run in ("full", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_device_choices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_device("gpu")


def test_sigkill_mid_epoch_then_resume(manifest, tmp_path):
    """A training run killed mid-epoch resumes from its last complete checkpoint and finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from volseg.config import save_config

    cfg = tiny_config(manifest, "unet", 3, "train.epochs=6", "train.iterations_per_epoch=4", "train.val_every=10")
    save_config(cfg, tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "volseg",
        "train",
        "--config",
        str(tmp_path / "cfg.yaml"),
        "--output",
        str(run),
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "last.pt").exists():
        time.sleep(0.02)
    time.sleep(0.3)  # into the next epoch
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(run / "last.pt")["epoch"]  # loads: never half-written
    assert 1 <= killed_at < 6, "the kill must land before the run finished"
    result = subprocess.run([*cmd, "--resume"], capture_output=True, encoding="utf-8")
    assert result.returncode == 0, result.stdout + result.stderr
    final = load_checkpoint(run / "last.pt")
    assert final["epoch"] == 6
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3, 4, 5, 6]
    assert not list(run.glob(".*tmp*")), "a killed write's temporary file was left behind"


def test_early_stop_rule():
    from volseg.training.trainer import EpochRecord, early_stop_due

    def history(dices):
        return [EpochRecord(i, 1.0, 0.1, 1.0, {1: d}) for i, d in enumerate(dices, 1)]

    assert not early_stop_due(history([0.5, 0.6, 0.7]), patience=2)
    assert early_stop_due(history([0.5, 0.7, 0.6, 0.65]), patience=2)
    assert not early_stop_due(history([0.5, 0.7, 0.6, 0.65]), patience=0)


def test_the_time_budget_counts_steady_epochs_not_the_one_that_caches():
    """Issue 18: a model whose first epoch caches for half the budget still gets the epochs that fit."""
    from volseg.training.schedule import budget_epochs
    from volseg.training.trainer import EpochRecord

    first = EpochRecord(1, 1.0, 0.1, 300.0)  # caching + warm-up
    second = EpochRecord(2, 0.9, 0.1, 70.0, {1: 0.5}, val_seconds=10.0)  # 60 s of steps + 10 s validation
    assert budget_epochs([first], 600, val_every=2) == 2  # first count, from the slow epoch
    # 230 s left, a steady epoch is 60 s + half a validation (every 2nd epoch) = 65 s: 3 more
    assert budget_epochs([first, second], 600, val_every=2) == 5
    assert budget_epochs([first, second], 6000, val_every=2) == 2 + 5630 // 65  # no epoch cap
    assert budget_epochs([first], 250, val_every=2) == 1  # one slow epoch fills the budget
    assert budget_epochs([first, second], 360, val_every=2) == 2  # overrun: no further epoch


def test_time_budget_fixes_the_epochs_after_the_first(manifest, tmp_path):
    cfg = tiny_config(manifest, "unet", 3, "train.epochs=50", "train.time_budget_minutes=0.0001")
    history = train(cfg, tmp_path / "run", device="cpu")
    assert [r.epoch for r in history] == [1]
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["schedule"] == {"minutes": 0.0001, "epochs": 1, "lr_epochs": 1}
    assert saved["config"]["train"]["epochs"] == 50  # the config is the input, never rewritten
    assert history[-1].val_dice  # the last epoch is validated


@pytest.fixture
def busy_neighbour():
    """Two processes spinning on both cores, as another user's job would (issue 41: a 1-minute budget ran
    2 min 48 s on a shared machine, its first epoch alone 2:36)."""
    import subprocess
    import sys

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for burner in burners:
        burner.kill()
        burner.wait()


def test_a_time_budget_holds_on_a_busy_machine_and_leaves_a_validated_best_model(manifest, tmp_path, busy_neighbour):
    """The clock is checked inside the epoch: a budget far shorter than one epoch still ends on time, with the
    epoch it cut validated and best.pt written; the curves are drawn from that one epoch."""
    import time

    budget = 12.0
    cfg = tiny_config(
        manifest,
        "unet",
        3,
        "train.epochs=20",
        "train.iterations_per_epoch=100000",
        "train.val_every=5",
        f"train.time_budget_minutes={budget / 60}",
    )
    started = time.perf_counter()
    history = train(cfg, tmp_path / "run", device="cpu")
    wall = time.perf_counter() - started
    assert wall <= 1.25 * budget, wall
    assert len(history) == 1 and history[0].val_dice  # one cut epoch, validated although val_every is 5
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "curves.png").is_file()
    saved = load_checkpoint(tmp_path / "run" / "best.pt")
    assert saved["schedule"]["epochs"] == 1 and saved["best_dice"] == pytest.approx(history[0].val_mean)


def test_start_up_reads_each_case_file_once(manifest, tmp_path, monkeypatch):
    """The checks before training and the cache share one read of every image and label (issue 19)."""
    from collections import Counter

    from volseg.data import io

    reads = Counter()
    original = io._read_nifti

    def counting(path, *args, **kwargs):
        reads[str(path)] += 1
        return original(path, *args, **kwargs)

    monkeypatch.setattr(io, "_read_nifti", counting)
    cfg = tiny_config(manifest, "unet", 3, "train.epochs=2", "train.iterations_per_epoch=1")
    train(cfg, tmp_path / "run", device="cpu")  # two epochs, validation after each
    cases = [c for c in read_manifest(manifest) if c.split in ("train", "val")]
    files = {str(p) for c in cases for p in (*c.images, c.label)}
    assert set(reads) == files and set(reads.values()) == {1}, reads


def test_every_bad_case_is_named_before_training_starts(manifest, tmp_path):
    from volseg.data.manifest import Case, write_manifest

    cases = read_manifest(manifest)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    bad = [Case("bad_image", (broken,), cases[0].label, "train"), Case("bad_label", cases[1].images, broken, "val")]
    write_manifest([*cases, *bad], tmp_path / "m.csv")
    with pytest.raises(ValueError) as error:
        train(tiny_config(tmp_path / "m.csv"), tmp_path / "run", device="cpu")
    lines = str(error.value).splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{broken}: ") for line in lines)  # both bad files, one message
    assert not (tmp_path / "run" / "last.pt").exists()


def test_curves_are_readable_after_one_epoch(tmp_path, monkeypatch):
    """Issue 41: one epoch drew an empty Dice plot on an x-axis from -0.04 to 0.04."""
    import matplotlib.pyplot as plt

    from volseg.training.trainer import EpochRecord, _plot_curves

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    _plot_curves([EpochRecord(1, 1.75, 0.003, 57.0, {1: 0.09, 2: 0.08})], {1: "a", 2: "b"}, tmp_path / "c.png")
    (figure,) = figures
    for ax in figure.axes:
        assert ax.get_xlim() == (0.5, 1.5) and [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1.0]
    assert len(figure.axes[1].lines[0].get_xdata()) == 1  # the validated epoch is drawn
