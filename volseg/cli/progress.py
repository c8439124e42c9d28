"""Progress bars of the command line (rich): cases of a batch, and training epochs."""

from __future__ import annotations

from rich.console import Console


class CaseProgress:
    """Cases done, failures and ETA."""

    def __init__(self, total: int, console: Console, visible: bool = True):
        self.total, self.failed, self.visible, self.console = total, 0, visible, console

    def __enter__(self):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("segmenting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.visible,
        )
        self.progress.__enter__()
        self.task = self.progress.add_task("cases", total=self.total, failed=0)
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, result) -> None:
        self.failed += result.status in ("failed", "refused")
        self.progress.update(self.task, advance=1, failed=self.failed)


class TrainingProgress:
    """One bar per epoch with the running loss, the last Dice, the loader's share of the time and the ETA."""

    def __init__(self, console: Console, visible: bool = True):
        self.console, self.visible = console, visible

    def __enter__(self):
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("dice {task.fields[dice]}"),
            TextColumn("loader wait {task.fields[wait]}"),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("epoch left"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not self.visible,
        )
        self.progress.__enter__()
        self.task, self.dice, self.losses = None, "-", []
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.losses = []
        self.task = self.progress.add_task(
            "train", total=steps, epoch=f"{epoch}/{epochs or '?'}", loss=0.0, dice=self.dice, wait="-"
        )

    def on_step(self, loss: float) -> None:
        self.losses.append(loss)
        self.progress.update(self.task, advance=1, loss=sum(self.losses) / len(self.losses))

    def on_epoch_end(self, record) -> None:
        if record.val_dice:
            self.dice = f"{record.val_mean:.3f}"
        self.progress.update(self.task, dice=self.dice, wait=f"{100 * record.loader_wait_share:.0f}%")
