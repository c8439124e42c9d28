"""CSV files of rows, read and appended in one place: a reader that always closes its file, and the durable
append every run record uses (header first when the file is new, flushed and fsync'd, so a record is valid
after a kill at any moment). Whole files written at once go through :func:`volseg.files.atomic.write_csv_atomic`."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path


def read_rows(path: str | Path) -> list[dict]:
    """Every row of a CSV with a header, as dicts (the file is closed before returning)."""
    with Path(path).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def append_durably(path: str | Path, fieldnames, rows: Iterable[dict]) -> None:
    """Append ``rows`` (missing and None fields written empty), durably."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames))
        if new:
            writer.writeheader()
        writer.writerows({k: ("" if row.get(k) is None else row.get(k)) for k in fieldnames} for row in rows)
        f.flush()
        os.fsync(f.fileno())
