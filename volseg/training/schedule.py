"""How long a training run lasts and how its learning rate moves: pure functions of the epoch history,
kept apart from the loop so they can be tested against closed formulas and saved whole in a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from volseg.config import Config


def learning_rate(cfg: Config, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """AdamW: linear warm-up then cosine to 0. SGD: nnU-Net's poly decay (1 - t)^0.9."""
    t = cfg.train
    progress = step / max(total_steps, 1)
    if t.optimizer == "sgd":
        return t.lr * max(0.0, 1 - progress) ** 0.9
    warmup = t.warmup_epochs * steps_per_epoch
    if step < warmup:
        return t.lr * (step + 1) / warmup
    return 0.5 * t.lr * (1 + math.cos(math.pi * (step - warmup) / max(total_steps - warmup, 1)))


def budget_epochs(history: Sequence, budget_seconds: float, val_every: int) -> int:
    """The epoch count that fits a wall-clock budget, decided twice. After epoch 1 a first count from it;
    that epoch also caches the data and warms up, so it is the slowest and the count is low. After epoch 2
    the count is fixed from the time left and a steady-state epoch (epoch 2's training loop plus its share
    of validation), so a model that is slow to cache is not also cut to too few epochs."""
    spent = sum(r.seconds for r in history)
    if len(history) == 1:
        return max(1, int(budget_seconds // max(history[0].seconds, 1e-9)))
    last = history[-1]
    validation = max(r.val_seconds for r in history) / max(val_every, 1)
    steady = max(last.seconds - last.val_seconds + validation, 1e-9)
    return len(history) + int(max(0.0, budget_seconds - spent) // steady)


@dataclass
class Schedule:
    """The run's length, saved whole in every checkpoint so that a resumed run keeps the plan it was on.

    ``epochs`` is the epoch count: given, or, with a wall-clock budget (``minutes``), fixed after epoch 2
    by :func:`budget_epochs` (None until then). ``lr_epochs`` is the length the learning-rate schedule is
    set for: the count once it is fixed; before that ``train.epochs``, then the first count from epoch 1.
    """

    minutes: float = 0.0
    epochs: int | None = None
    lr_epochs: int = 1

    @classmethod
    def from_config(cls, cfg: Config) -> Schedule:
        t = cfg.train
        if t.time_budget_minutes > 0:
            return cls(t.time_budget_minutes, None, t.epochs)
        return cls(0.0, t.epochs, t.epochs)

    @classmethod
    def from_checkpoint(cls, state: dict, cfg: Config) -> Schedule:
        """The saved schedule; a checkpoint from before schedules had its count written into the config."""
        if "schedule" in state:
            return cls(**state["schedule"])
        t = cfg.train
        if t.time_budget_minutes > 0 and state["epoch"] == 1 and t.epochs > 1:  # count not fixed yet
            return cls(t.time_budget_minutes, None, t.epochs)
        return cls(t.time_budget_minutes, t.epochs, t.epochs)

    def extend_to(self, epochs: int) -> None:
        """A count given by hand (``--epochs``) replaces whatever the budget decided."""
        self.epochs = self.lr_epochs = epochs

    def after_epoch(self, history: Sequence, val_every: int) -> None:
        """Under a budget: a first count after epoch 1 (final if that epoch spent the budget), fixed after 2."""
        if self.epochs is not None or not history:
            return
        self.lr_epochs = budget_epochs(history, self.minutes * 60, val_every)
        if len(history) >= 2 or self.lr_epochs <= 1:
            self.epochs = self.lr_epochs

    def finished(self, epoch: int) -> bool:
        return self.epochs is not None and epoch >= self.epochs

    def to_dict(self) -> dict:
        return asdict(self)
