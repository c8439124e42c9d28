"""Files that appear complete or not at all: written under a temporary name beside the target, then renamed
over it (a rename within a folder is atomic). A killed run never leaves a truncated file under a final
name, and a reader never sees one. Checkpoints add an fsync (volseg.runtime.checkpoint.save_atomic)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to: renamed over ``path`` when the block ends, removed when
    it raises. ``suffix`` keeps the extension a writer infers the format from (".png", ".nii.gz")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_csv_atomic(path: str | Path, fieldnames: list[str], rows: Iterable[dict]) -> Path:
    """A whole CSV (header and rows) written atomically."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
