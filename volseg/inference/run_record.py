"""The run record, ``volseg_run.csv``: its name, its columns, reading it, and merging the per-rank records.

A batch run appends one row per case as the case ends (:class:`volseg.inference.run_record.RunRecord`); the last row of a
case is its state. The batch runner, the CLI and the review page all read the record through this module.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from volseg.files.atomic import write_csv_atomic
from volseg.files.csv_rows import append_durably, read_rows
from volseg.inference.outputs import RUN_CSV  # noqa: F401  (the run record's name, with the other outputs')

# error: why it failed or was rejected; note: how an ok case was done when it matters (an ROI cascade's box)
RUN_COLUMNS = ("case_id", "input", "output", "status", "seconds", "error", "note")


def read_run_csv(path: Path) -> dict[str, dict]:
    """The state of each case: its last row."""
    return {row["case_id"]: row for row in read_rows(path)}


def merge_run_csvs(parts: list[Path], merged: Path) -> list[dict]:
    """One ``volseg_run.csv`` from the per-rank records (sorted by case id); the parts are kept."""
    latest = {row["case_id"]: row for part in parts for row in read_rows(part)}
    rows = sorted(latest.values(), key=lambda r: r["case_id"])
    write_csv_atomic(merged, RUN_COLUMNS, rows)
    return rows


class RunRecord:
    """``volseg_run.csv``, append-only: each result is one line, flushed and fsync'd as the case ends, so
    the file is valid after a SIGKILL at any moment (a torn last line is cut off when it is reopened) and
    a 10,000-case batch writes 10,000 lines, not 50 million. ``--resume`` keeps the rows of earlier runs
    and adds none for a case already recorded as done; the last row of a case is its state."""

    def __init__(self, path: Path, keep: bool) -> None:
        self.path = path
        self.done: set[str] = set()
        if keep and path.exists():
            _cut_torn_line(path)
            self.done = {row["case_id"] for row in read_rows(path) if row.get("status") in ("ok", "partial", "skipped")}
        else:
            path.unlink(missing_ok=True)

    def add(self, result) -> None:
        if result.status == "skipped" and result.case_id in self.done:
            return
        append_durably(self.path, RUN_COLUMNS, [{**asdict(result), "seconds": f"{result.seconds:.2f}"}])


def _cut_torn_line(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
