"""``volseg check``: find every problem of every case of a manifest before any training starts.

Each problem is one line, ``"<path>: <problem>"``; checking never stops at the first bad case.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from monai.data import MetaTensor

from volseg.data.io import (
    ImageReadError,
    grid_mismatch,
    non_finite,
    read_image,
    read_label,
    stack_channels,
)
from volseg.data.manifest import Case, ManifestError, declared_labels, parse_manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_manifest(path: str | Path, label_values: set[int] | None = None, **limits) -> list[Problem]:
    """Every problem of a manifest: its bad rows, then those of every case its good rows describe.
    Without ``label_values``, the labels the dataset declares (``volseg manifest`` keeps them) are the rule."""
    try:
        cases, bad_rows = parse_manifest(path)
        declared = declared_labels(path)
    except ManifestError as exc:
        return _manifest_problems(str(Path(path)), exc)
    if label_values is None and declared is not None:
        label_values = {0, *declared}
    problems = _manifest_problems(str(Path(path)), ManifestError("\n".join(bad_rows))) if bad_rows else []
    problems += _recorded_problems(path)
    return problems + check_cases(cases, label_values, **limits)


def _recorded_problems(path: str | Path) -> list[Problem]:
    """The cases ``volseg manifest`` left out of an RTSTRUCT manifest, one line each (see rtstruct_manifest)."""
    from volseg.dicom.rtstruct_manifest import recorded_problems

    try:
        lines = recorded_problems(path)
    except ManifestError as exc:
        return _manifest_problems(str(Path(path)), exc)
    out = []
    for line in lines:
        where, sep, message = line.partition(": ")
        out.append(Problem(where, f"left out of the manifest: {message}") if sep else Problem(str(path), line))
    return out


def check_cases(cases: Iterable[Case], label_values: set[int] | None = None, **limits) -> list[Problem]:
    """Every problem of every case, in case order. ``limits``: ``resample_to`` (the spacing training will
    resample to) and ``max_resampled_voxels``, to refuse what resampling would blow up (see read_image)."""
    problems = []
    for case in cases:
        found = check_case(case, label_values, **limits)
        logger.debug("%s: %d problem(s)", case.case_id, len(found))
        problems.extend(found)
    return problems


def check_case(case: Case, label_values: set[int] | None = None, **limits) -> list[Problem]:
    """Problems of one case: unreadable files, NaN/Inf voxels, grids that differ, unexpected label values.

    ``label_values`` is the set of allowed label values (e.g. ``{0, 1, 2}``); None accepts any integer.
    """
    return read_checked(case, label_values, **limits)[1]


def read_checked(case: Case, label_values: set[int] | None = None, **limits) -> tuple[dict | None, list[Problem]]:
    """Read a case once and check what was read (see :func:`check_case`): ``({"image", "label"}, [])`` as
    :class:`~volseg.data.transforms.LoadCased` would load it (label values not remapped), or ``(None, problems)``.
    Training reads each case through this once, for the checks and for its cache."""
    problems: list[Problem] = []
    channels = [_read(path, partial(read_image, **limits), problems) for path in case.images]
    for path, channel in zip(case.images, channels):
        if channel is not None:
            problems.extend(_non_finite(path, channel))
    first = channels[0]
    if first is not None:
        for path, channel in zip(case.images[1:], channels[1:]):
            if channel is not None and (why := _grid_mismatch(channel, first)):
                problems.append(Problem(str(path), f"channel grid differs from {case.images[0].name}: {why}"))
    label = _read(case.label, read_label, problems) if case.label is not None else None
    if label is not None and label_values is not None:
        unknown = sorted(set(torch.unique(label.as_tensor()).long().tolist()) - set(label_values))
        if unknown:
            problems.append(
                Problem(
                    str(case.label), f"unknown label value(s) {unknown}; expected a subset of {sorted(label_values)}"
                )
            )
    if label is not None and first is not None and (why := _grid_mismatch(label, first)):
        problems.append(Problem(str(case.label), f"label grid differs from image {case.images[0].name}: {why}"))
    if problems:  # every failed read is one of them
        return None, problems
    loaded = {"image": stack_channels(channels)}
    if label is not None:
        loaded["label"] = label
    return loaded, []


def _read(path: Path, reader: Callable[[Path], MetaTensor], problems: list[Problem]) -> MetaTensor | None:
    try:
        return reader(path)
    except ImageReadError as exc:
        problems.append(Problem(exc.path, exc.problem))
        return None


def _non_finite(path: Path, image: MetaTensor) -> list[Problem]:
    why = non_finite(image.as_tensor())
    return [Problem(str(path), f"{why}; train, plan and infer refuse this scan")] if why else []


def _grid_mismatch(a: MetaTensor, b: MetaTensor) -> str | None:
    """How ``a``'s grid differs from ``b``'s, ``a``'s values first."""
    return grid_mismatch(a.affine, a.shape[1:], b.affine, b.shape[1:])


def _manifest_problems(path: str, exc: ManifestError) -> list[Problem]:
    """Split a ManifestError (one ``"<path>[:<row>]: <problem>"`` line per problem) into Problems."""
    line_format = re.compile(rf"^({re.escape(path)}(?::\d+)?): (.*)$")
    problems = []
    for line in str(exc).splitlines():
        match = line_format.match(line)
        problems.append(Problem(match.group(1), match.group(2)) if match else Problem(path, line))
    return problems


@dataclass
class ArchiveCheck:
    lines: list[str]  # one per series found: case id, modality, plane, size, and ok / FAULT / not selected
    summary: str
    faults: int
    found: int


def check_archive(root: Path, rules=None) -> ArchiveCheck:
    """Every series of a DICOM archive from its headers (no pixel data): the geometry fault that would fail
    it, or why ``rules`` would not select it."""
    from volseg.dicom.archive import discover_series, geometry_fault
    from volseg.dicom.series_rules import select

    found, skipped = discover_series([root])
    if not found:
        return ArchiveCheck([], f"{root}: no DICOM image series found ({skipped} other files)", 0, 0)
    rejected = {id(s): why for s, why in select(found, rules).rejected} if rules else {}
    lines, faults = [], 0
    for series in found:
        fault = geometry_fault(series, found)
        faults += fault is not None
        verdict = (
            f"FAULT {fault}" if fault else f"not selected: {rejected[id(series)]}" if id(series) in rejected else "ok"
        )
        lines.append(
            f"{series.case_id} {series.modality or '?'} {series.plane} {series.slices} slices "
            f"{series.columns}x{series.rows}: {verdict}  [{series}]"
        )
    summary = (
        f"{len(found)} series, {faults} with faults"
        + (f", {len(rejected)} not selected ({rules.source})" if rules else "")
        + f", {skipped} other files"
    )
    return ArchiveCheck(lines, summary, faults, len(found))
