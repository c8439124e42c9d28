"""The run record, ``volseg_run.csv``: its name, its columns, reading it, and merging the per-rank records.

A batch run appends one row per case as the case ends (:class:`volseg.infer.RunRecord`); the last row of a
case is its state. The batch runner, the CLI and the review page all read the record through this module.
"""

from __future__ import annotations

from pathlib import Path

from volseg.atomic import write_csv_atomic
from volseg.csv_rows import read_rows
from volseg.outputs import RUN_CSV  # noqa: F401  (the run record's name, with the other outputs')

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
