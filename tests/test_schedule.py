"""The learning-rate schedules against their closed formulas, and the time budget as a schedule saved whole
in the checkpoint: a budgeted run killed after epoch 1 and resumed ends where the uninterrupted one does.
Time is a fake clock that moves only with training steps, so the budget's epoch count is deterministic."""

import math

import pytest
from typer.testing import CliRunner

from volseg.config import load_config, save_config
from volseg.runtime.checkpoint import load_checkpoint
from volseg.training.schedule import Schedule, learning_rate
from volseg.training.trainer import EpochRecord, Trainer, train

from .helpers import tiny_config, tiny_manifest

LR, STEPS = 0.01, 10  # base rate, steps per epoch


def lr_at(optimizer: str, epoch: int, epochs: int, warmup_epochs: int = 2) -> float:
    """The rate of the first step of ``epoch`` (1-based) in an ``epochs``-long schedule."""
    cfg = load_config(None, [f"train.optimizer={optimizer}", f"train.lr={LR}", f"train.warmup_epochs={warmup_epochs}"])
    return learning_rate(cfg, (epoch - 1) * STEPS, epochs * STEPS, STEPS)


def test_warm_up_is_linear_over_the_warm_up_epochs():
    cfg = load_config(None, [f"train.lr={LR}", "train.warmup_epochs=2"])
    assert lr_at("adamw", 1, 10) == pytest.approx(LR * 1 / 20)  # step 0 of 20 warm-up steps
    assert learning_rate(cfg, 9, 100, STEPS) == pytest.approx(LR * 10 / 20)  # last step of epoch 1
    assert learning_rate(cfg, 19, 100, STEPS) == pytest.approx(LR)  # warm-up ends at the base rate


@pytest.mark.parametrize("epoch", [3, 4, 6, 8, 10])
def test_cosine_after_warm_up(epoch):
    warmup, total = 2 * STEPS, 10 * STEPS
    t = ((epoch - 1) * STEPS - warmup) / (total - warmup)
    assert lr_at("adamw", epoch, 10) == pytest.approx(0.5 * LR * (1 + math.cos(math.pi * t)))


def test_cosine_landmarks():
    assert lr_at("adamw", 3, 10) == pytest.approx(LR)  # right after warm-up: the base rate
    assert lr_at("adamw", 7, 10) == pytest.approx(0.5 * LR)  # step 60: half-way through 80 cosine steps
    assert lr_at("adamw", 11, 10) == pytest.approx(0.0)  # step 100: the end


@pytest.mark.parametrize("epoch", [1, 2, 5, 10])
def test_poly_decay_for_sgd(epoch):
    assert lr_at("sgd", epoch, 10) == pytest.approx(LR * (1 - (epoch - 1) / 10) ** 0.9)
    cfg = load_config(None, ["train.optimizer=sgd", f"train.lr={LR}"])
    assert learning_rate(cfg, 100, 100, STEPS) == 0.0  # the end of the schedule


def _record(epoch, seconds, val_seconds=0.0):
    return EpochRecord(epoch, 1.0, 0.1, seconds, val_seconds=val_seconds)


def test_a_budget_counts_after_epoch_1_and_fixes_the_count_after_epoch_2():
    cfg = load_config(None, ["train.time_budget_minutes=3", "train.epochs=20", "train.val_every=1"])
    schedule = Schedule.from_config(cfg)
    assert (schedule.epochs, schedule.lr_epochs) == (None, 20)  # train.epochs: only the first guess
    history = [_record(1, 70.0)]
    schedule.after_epoch(history, val_every=1)
    assert (schedule.epochs, schedule.lr_epochs) == (None, 2) and not schedule.finished(1)  # 180 // 70
    history.append(_record(2, 20.0))
    schedule.after_epoch(history, val_every=1)
    assert (schedule.epochs, schedule.lr_epochs) == (6, 6)  # 2 + (180 - 90) // 20, no cap
    history.append(_record(3, 500.0))
    schedule.after_epoch(history, val_every=1)
    assert schedule.epochs == 6 and schedule.finished(6)  # fixed: a slow later epoch changes nothing
    assert Schedule(**schedule.to_dict()) == schedule  # saved whole

    one = Schedule.from_config(cfg)
    one.after_epoch([_record(1, 200.0)], val_every=1)
    assert one.epochs == 1 and one.finished(1)  # epoch 1 alone spent the budget


def test_a_checkpoint_from_before_schedules_resumes_with_the_count_in_its_config():
    budget = load_config(None, ["train.time_budget_minutes=60", "train.epochs=36"])
    assert Schedule.from_checkpoint({"epoch": 5}, budget) == Schedule(60.0, 36, 36)  # rewritten after epoch 2
    assert Schedule.from_checkpoint({"epoch": 1}, budget) == Schedule(60.0, None, 36)  # provisional
    plain = load_config(None, ["train.epochs=30"])
    assert Schedule.from_checkpoint({"epoch": 3}, plain) == Schedule(0.0, 30, 30)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return tiny_manifest(tmp_path_factory.mktemp("data"))


@pytest.fixture
def fake_time(monkeypatch):
    """Epoch 1 takes 70 s (caching, warm-up), every later one 20 s: 2 steps of 35 s, then of 10 s.
    ``kill_in_epoch`` makes a step of that epoch raise, as a kill after the epoch before's checkpoint."""

    class Clock:
        now, kill_in_epoch = 0.0, None

        def __call__(self):
            return self.now

    clock = Clock()
    real_step = Trainer.train_step

    def timed_step(self, batch, lr):
        if self.epoch + 1 == clock.kill_in_epoch:
            raise KeyboardInterrupt
        clock.now += 35.0 if self.epoch == 0 else 10.0
        return real_step(self, batch, lr)

    monkeypatch.setattr(Trainer, "clock", staticmethod(clock))
    monkeypatch.setattr(Trainer, "train_step", timed_step)
    return clock


def test_a_budgeted_run_killed_after_epoch_1_resumes_to_the_uninterrupted_count(manifest, tmp_path, fake_time):
    cfg = tiny_config(manifest, "unet", 3, "train.time_budget_minutes=3", "train.epochs=2", "train.val_every=5")
    full = train(cfg, tmp_path / "full", device="cpu")
    assert [r.epoch for r in full] == [1, 2, 3, 4, 5, 6]  # 180 s: 70 + 20 + 4 x 20, not capped at train.epochs

    fake_time.kill_in_epoch = 2
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "split", device="cpu")
    assert load_checkpoint(tmp_path / "split" / "last.pt")["schedule"] == {
        "minutes": 3.0,
        "epochs": None,
        "lr_epochs": 2,
    }
    fake_time.kill_in_epoch = None
    resumed = train(cfg, tmp_path / "split", device="cpu", resume=True)

    a, b = (load_checkpoint(tmp_path / run / "last.pt") for run in ("full", "split"))
    assert [r.epoch for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert a["schedule"] == b["schedule"] == {"minutes": 3.0, "epochs": 6, "lr_epochs": 6}
    assert [r.lr for r in resumed] == [r.lr for r in full]  # epoch 2 ran on the provisional count in both
    assert all(a["model"][k].equal(b["model"][k]) for k in a["model"])
    # the learning rate was set for the 6 epochs: the last step sits at the cosine's end
    last_step, total = 6 * 2 - 1, 6 * 2
    assert full[-1].lr == pytest.approx(0.5 * cfg.train.lr * (1 + math.cos(math.pi * (last_step - 2) / (total - 2))))
    assert full[-1].val_dice and not full[3].val_dice  # the last epoch is validated
    assert train(cfg, tmp_path / "split", device="cpu", resume=True)[-1].epoch == 6  # finished stays finished


def test_volseg_train_minutes_on_the_command_line(manifest, tmp_path, fake_time):
    """`volseg train --minutes M` needs no epoch count; killed after epoch 1 and resumed, it ends at the
    uninterrupted run's count (the acceptance of issue 31)."""
    from volseg.cli import app

    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(manifest, "unet", 2, "train.val_every=5"), config)  # train.epochs: 2
    runner = CliRunner()

    def volseg_train(run, *extra):
        return runner.invoke(
            app,
            [
                "train",
                "--config",
                str(config),
                "--output",
                str(tmp_path / run),
                "--device",
                "cpu",
                "--minutes",
                "3",
                *extra,
            ],
        )

    result = volseg_train("full")
    assert result.exit_code == 0, result.output
    assert "done: 6 epochs" in result.output
    fake_time.kill_in_epoch = 2
    assert volseg_train("split").exit_code == 130  # click's exit status for an interrupt
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    fake_time.kill_in_epoch = None
    result = volseg_train("split", "--resume")
    assert result.exit_code == 0, result.output
    assert "done: 6 epochs" in result.output
    saved = load_checkpoint(tmp_path / "split" / "last.pt")
    assert saved["schedule"]["epochs"] == 6 and saved["config"]["train"]["time_budget_minutes"] == 3.0

    both = runner.invoke(app, ["train", "--config", str(config), "--minutes", "3", "--epochs", "2"])
    assert both.exit_code == 2 and "give one of them" in both.output
