"""``data_manifest.csv``: one row per case, ``case_id,image,label,split``, paths relative to the CSV.

Multi-channel cases list one file per channel in ``image``, separated by ``;`` in channel order
(e.g. ``flair.nii.gz;t1c.nii.gz``); every channel must share the first channel's grid. ``label`` is
empty for unlabeled cases; ``split`` is one of train, val, test.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from volseg.errors import VolsegError

COLUMNS = ("case_id", "image", "label", "split")
SPLITS = ("train", "val", "test")
CHANNEL_SEPARATOR = ";"
_SAFE_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ManifestError(VolsegError):
    """A manifest that cannot be used; the message names the file, the row and the problem."""


@dataclass(frozen=True)
class Case:
    case_id: str
    images: tuple[Path, ...]  # one file (or DICOM folder) per channel, absolute
    label: Path | None
    split: str

    @property
    def image(self) -> Path:
        return self.images[0]


def safe_case_id(case_id: str) -> bool:
    """A case id is used as a file name: no path separators, no '..', no leading dot."""
    return bool(_SAFE_CASE_ID.match(case_id)) and ".." not in case_id


def read_manifest(path: str | Path) -> list[Case]:
    """Parse and validate a manifest; raises :class:`ManifestError` listing every bad row at once."""
    cases, problems = parse_manifest(path)
    if problems:
        raise ManifestError("\n".join(problems))
    return cases


def parse_manifest(path: str | Path) -> tuple[list[Case], list[str]]:
    """(the good rows' cases, one ``"<path>:<row>: <problem>"`` line per bad row): ``volseg check`` checks
    the good cases even when some rows are bad. A manifest that cannot be read at all raises."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    root = path.resolve().parent
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("case_id", "image") if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {missing}; expected {list(COLUMNS)}")
        rows = list(reader)
    cases, problems, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        case_id = (row.get("case_id") or "").strip()
        split = (row.get("split") or "train").strip() or "train"
        if not safe_case_id(case_id):
            problems.append(f"{path}:{line}: case_id {case_id!r} is not a safe file name")
            continue
        if case_id in seen:
            problems.append(f"{path}:{line}: duplicate case_id {case_id!r}")
            continue
        if split not in SPLITS:
            problems.append(f"{path}:{line}: split {split!r} is not one of {list(SPLITS)}")
            continue
        images = tuple(root / p.strip() for p in (row.get("image") or "").split(CHANNEL_SEPARATOR) if p.strip())
        if not images:
            problems.append(f"{path}:{line}: case {case_id!r} has no image")
            continue
        label = (row.get("label") or "").strip()
        seen.add(case_id)
        cases.append(Case(case_id, images, root / label if label else None, split))
    return cases, problems


def labels_path(manifest: str | Path) -> Path:
    """Where ``volseg manifest`` keeps the label names a dataset declares: ``<manifest stem>.labels.json``."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.labels.json")


def declared_labels(manifest: str | Path) -> dict[int, str] | None:
    """Label value -> name declared for the manifest's dataset (0, background, implied), or None."""
    path = labels_path(manifest)
    if not path.is_file():
        return None
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))["labels"]
        return {int(value): str(name) for value, name in labels.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(
            f'{path}: not a label declaration ({exc}); expected {{"labels": {{"1": "name"}}}}'
        ) from None


def write_declared_labels(manifest: str | Path, labels: dict[int, str], source: str) -> Path:
    from volseg.files.atomic import write_text_atomic

    text = json.dumps({"labels": {str(v): n for v, n in sorted(labels.items())}, "source": source}, indent=1)
    return write_text_atomic(labels_path(manifest), text + "\n")


def write_manifest(cases: list[Case], path: str | Path) -> None:
    """Write cases with paths relative to the manifest's folder (POSIX separators)."""
    path = Path(path)
    root = path.resolve().parent

    def rel(p: Path) -> str:
        return Path(os.path.relpath(Path(p).resolve(), root)).as_posix()

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for case in cases:
            image = CHANNEL_SEPARATOR.join(rel(p) for p in case.images)
            writer.writerow([case.case_id, image, rel(case.label) if case.label else "", case.split])
