"""Case ids from file names, in one place: every command that pairs files by name (discovery, infer's inputs,
evaluate's references, the report) must agree on which case a file stands for.

- an image ``CASE.nii.gz`` (or .nii/.nrrd/.mha/.mhd) is case ``CASE``; nnU-Net's channel files
  ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz`` are channels of case ``CASE``;
- a label map ``CASE.nii.gz`` or ``CASE_seg.nii.gz`` is case ``CASE``."""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def file_stem(path: str | Path) -> str | None:
    """The name without its image suffix; None for a hidden file or one that is not an image."""
    name = Path(path).name
    if name.startswith("."):
        return None
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def image_files(folder: str | Path) -> list[Path]:
    """A folder's image files, sorted, hidden files left out (one case each)."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and p.name.endswith(IMAGE_SUFFIXES) and not p.name.startswith(".")
    )


def image_case_id(path: str | Path) -> str:
    """The case an image file stands for (a channel suffix ``_0000`` dropped); the file name itself when it is
    not an image file, so a wrongly named input still fails as a case named after it."""
    stem = file_stem(path)
    if stem is None:
        return Path(path).name
    match = CHANNEL.match(stem)
    return match["case"] if match else stem


def label_case_id(path: str | Path) -> str:
    """The case a label map stands for: ``CASE[_seg].nii[.gz]``."""
    stem = file_stem(path) or Path(path).name
    return stem.removesuffix("_seg") if stem != "_seg" else stem
