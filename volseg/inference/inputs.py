"""What a run segments: the cases found in what a user passes (files, folders, DICOM archives, manifests).

:func:`collect_inputs` turns paths into one :class:`CaseInput` per case, whose case id names its outputs;
:func:`select_part` gives one of many jobs its deterministic share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from volseg.data.case_ids import IMAGE_SUFFIXES, image_case_id, image_files
from volseg.data.io import check_header
from volseg.data.manifest import read_manifest, safe_case_id
from volseg.dicom.archive import NonImageSeries, discover_series
from volseg.dicom.series_rules import SeriesRules, select
from volseg.errors import VolsegError


@dataclass(frozen=True)
class CaseInput:
    case_id: str
    images: tuple  # channel paths, or one DicomSeries found in an archive
    rejected: str = ""  # a series the selection rules did not pick: why

    @property
    def source(self) -> str:
        """The run record's link back to the input (the only place a source path or UID is written)."""
        return ";".join(str(p) for p in self.images)


def _is_dicom_folder(folder: Path) -> bool:
    return not any(p.name.endswith(IMAGE_SUFFIXES) for p in folder.iterdir() if p.is_file())


def archive_cases(root: Path, rules: SeriesRules | None) -> list[CaseInput]:
    """One case per image series found under ``root`` (any layout), selected or rejected by ``rules``
    (None: every series is selected), and a rejected one per series of DICOM objects that hold no image (an
    RTSTRUCT, a SEG: "not an image series", never a failure). Case ids come from the UIDs, never from folder
    names."""
    others: list[NonImageSeries] = []
    found, _ = discover_series([root], non_images=others)
    if not found:  # fails as one case with the reader's message
        return [CaseInput(root.name if safe_case_id(root.name) else "dicom", (root,))]
    not_images = [CaseInput(o.case_id, (o,), rejected=o.reason) for o in others]
    if rules is None:
        return [CaseInput(s.case_id, (s,)) for s in found] + not_images
    chosen = select(found, rules)
    picked = {id(s) for s in chosen.selected}
    reasons = {id(s): why for s, why in chosen.rejected}
    return [
        CaseInput(s.case_id, (s,)) if id(s) in picked else CaseInput(s.case_id, (s,), rejected=reasons[id(s)])
        for s in found
    ] + not_images


def collect_inputs(
    inputs: Sequence[str | Path], split: str | None = None, rules: SeriesRules | None = None
) -> list[CaseInput]:
    """NIfTI/NRRD/MHA files, folders of them, DICOM archives (any layout, series picked by ``rules``) and
    manifest CSVs, in that order."""
    cases: list[CaseInput] = []
    for raw in inputs:
        path = Path(raw)
        if path.suffix.lower() == ".csv":
            cases += [CaseInput(c.case_id, c.images) for c in read_manifest(path) if split is None or c.split == split]
        elif path.is_dir() and _is_dicom_folder(path):
            cases += archive_cases(path, rules)
        elif path.is_dir():
            cases += [CaseInput(image_case_id(p), (p,)) for p in image_files(path)]
        else:
            cases.append(CaseInput(image_case_id(path), (path,)))
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise VolsegError(f"two inputs share the case id {case.case_id!r}; outputs would collide")
        seen.add(case.case_id)
    return cases


def check_named_files(inputs: Sequence[str | Path]) -> None:
    """Refuse a scan file named on the command line that cannot be segmented (missing, not an image, not 3D),
    from its header, before a model is opened: a usage error, not a failed case. Folders and manifests are
    batches, whose bad cases fail alone and are recorded."""
    for raw in inputs:
        path = Path(raw)
        if path.suffix.lower() != ".csv" and not path.is_dir():
            check_header(path)


def select_part(cases: list[CaseInput], num_parts: int, part_id: int) -> list[CaseInput]:
    """Deterministic share of a cohort for one of ``num_parts`` independent jobs (sorted by case id)."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise VolsegError(f"--part-id must be in [0, {num_parts}) with --num-parts >= 1, got {part_id} of {num_parts}")
    return [c for i, c in enumerate(sorted(cases, key=lambda c: c.case_id)) if i % num_parts == part_id]
