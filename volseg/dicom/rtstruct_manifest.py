"""A training manifest from a DICOM archive of CT series and their radiotherapy structure sets (RTSTRUCT).

``volseg manifest ARCHIVE -o M.csv --structures "liver=Liver|LIVER|Liver_.*;spleen=Spleen|SPLEEN"``:

- **Pairing.** :func:`~volseg.dicom.archive.discover_series` finds the image series and the RTSTRUCT files
  of the archive (headers only); each RTSTRUCT is paired with the series it references by
  :func:`~volseg.dicom.rtstruct_read.find_referenced_series` (SeriesInstanceUID, else its referenced SOP instances,
  else its frame of reference). A series may have several RTSTRUCTs: their structures are pooled.
- **Names.** Each asked label has a regular expression matched case-insensitively against the whole ROI name
  (``Liver_.*`` matches ``LIVER_NS``, ``Liver`` does not match ``Liver_PRV``). Without ``--structures`` the
  TG-263 standard names of common organs, with their usual variants, are the patterns (:data:`DEFAULT_STRUCTURES`).
  Label values are 1..N in the order the labels are given; ``M.labels.json`` names them.
- **Output.** One label map per case, ``M_labels/<case_id>.nii.gz``, on the series' grid as
  :func:`~volseg.data.io.read_series` reads it (written atomically by :func:`~volseg.data.io.write_label`). The
  manifest's ``image`` is the series' folder when that folder holds no other image series (volseg's readers take
  a DICOM series folder in a manifest), else the series converted to ``M_images/<case_id>.nii.gz`` (same grid).
  Case ids are the archive's anonymous ``dcm-`` ids.
- **Problems.** Per case, one line each naming the file and the structure: a structure set with none of the asked
  structures, two structures matching one label (or one structure matching two labels), an empty structure or
  contour, a contour outside the series, the referenced series not in the archive, a frame of reference
  mismatch, a series that cannot be read. A case with a problem is left out of the manifest; the others go on.
  The problems are kept in ``M.structures.json`` (with which ROI became which label in every case), where
  ``volseg check M.csv`` finds and reports them again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from volseg.data.io import ImageReadError, read_series, write_label
from volseg.data.manifest import Case, ManifestError
from volseg.dicom.archive import (
    DicomSeries,
    NonImageSeries,
    discover_series,
    geometry_fault,
)
from volseg.dicom.rtstruct_read import (
    RTStructError,
    Structure,
    StructureSet,
    _frame_of_reference,
    find_referenced_series,
    read_structure_set,
    slice_positions,
    structure_mask,
)
from volseg.errors import VolsegError
from volseg.files.atomic import atomic_path, write_text_atomic

RT_STRUCTURE_SET = "RT Structure Set"  # dicom_archive.NOT_IMAGES' name for the class


def _sided(organ: str, *plain: str) -> tuple[str, str]:
    """Left and right patterns for a paired organ: Lung_L, LUNG_L, Lung_Left, L_Lung, Lt Lung, Left Lung, ..."""
    names = "|".join((organ, *plain))
    out = []
    for side in ("l|lt|left", "r|rt|right"):
        out.append(f"(?:{names})[ _-]?(?:{side})|(?:{side})[ _-]?(?:{names})")
    return out[0], out[1]


_KIDNEY = _sided("kidney")
_LUNG = _sided("lung")
# TG-263 (AAPM Task Group 263, 2018) standard names -> patterns for the spellings clinics commonly use instead.
DEFAULT_STRUCTURES: dict[str, str] = {
    "Liver": "liver",
    "Spleen": "spleen",
    "Kidney_L": _KIDNEY[0],
    "Kidney_R": _KIDNEY[1],
    "Lung_L": _LUNG[0],
    "Lung_R": _LUNG[1],
    "Heart": "heart",
    "Stomach": "stomach",
    "Bowel_Small": r"bowel[ _-]?small|small[ _-]?bowel|bowel[ _-]?sm|smallbowel",
    "Pancreas": "pancreas",
    "Bladder": r"bladder|urinary[ _-]?bladder",
    "SpinalCord": r"spinal[ _-]?cord|cord",
    "Esophagus": r"esophagus|oesophagus",
    "Brain": "brain",
}


def parse_structures(text: str | None) -> dict[str, re.Pattern]:
    """``"liver=Liver|LIVER|Liver_.*;spleen=Spleen"`` -> {label name: compiled case-insensitive pattern}, in the
    order given (label values 1..N); None or empty: :data:`DEFAULT_STRUCTURES`. A malformed text is a VolsegError."""
    if not text or not text.strip():
        items = list(DEFAULT_STRUCTURES.items())
    else:
        items = []
        for part in (p.strip() for p in text.split(";")):
            if not part:
                continue
            name, sep, pattern = part.partition("=")
            name, pattern = name.strip(), pattern.strip()
            if not sep or not name or not pattern:
                raise VolsegError(
                    f"--structures {text!r}: expected NAME=PATTERN pairs separated by ';', e.g. "
                    "'liver=Liver|LIVER|Liver_.*;spleen=Spleen', not {part!r}"
                )
            items.append((name, pattern))
    patterns: dict[str, re.Pattern] = {}
    for name, pattern in items:
        if name in patterns:
            raise VolsegError(f"--structures: label {name!r} is given twice")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
            raise VolsegError(f"--structures: label name {name!r}: use letters, digits and _ . + -")
        try:
            patterns[name] = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise VolsegError(
                f"--structures: label {name!r}: pattern {pattern!r} is not a regular expression ({exc})"
            ) from None
    if not patterns:
        raise VolsegError(f"--structures {text!r}: no label given")
    return patterns


@dataclass
class RTCase:
    """One image series and the structure sets that reference it."""

    series: DicomSeries
    structure_sets: list[StructureSet] = field(default_factory=list)
    matched: dict[str, tuple[StructureSet, Structure]] = field(default_factory=dict)  # label -> its ROI
    problems: list[str] = field(default_factory=list)
    image: Path | None = None
    label: Path | None = None

    @property
    def case_id(self) -> str:
        return self.series.case_id


@dataclass
class RTManifest:
    cases: list[RTCase]  # the good ones, in the manifest
    skipped: list[RTCase]  # with problems, left out
    unreadable: list[str]  # RTSTRUCTs with no series to pair with (one line each)
    unpaired: list[DicomSeries]  # image series no RTSTRUCT references (left out: no labels)
    labels: dict[int, str]

    @property
    def problems(self) -> list[str]:
        return self.unreadable + [p for case in self.skipped for p in case.problems]


def match_structures(case: RTCase, patterns: Mapping[str, re.Pattern]) -> None:
    """Fill ``case.matched`` (label -> the one ROI whose name fully matches its pattern) and add a problem line
    per ambiguity and per structure set with none of the asked structures."""
    hits: dict[str, list[tuple[StructureSet, Structure]]] = {name: [] for name in patterns}
    for ss in case.structure_sets:
        for structure in ss.structures:
            labels = [name for name, pattern in patterns.items() if pattern.fullmatch(structure.name)]
            if len(labels) > 1:
                case.problems.append(
                    f"{ss.path}: structure {structure.name!r}: matches labels "
                    f"{', '.join(map(repr, labels))}; narrow their --structures patterns"
                )
            for name in labels:
                hits[name].append((ss, structure))
    for name, found in hits.items():
        if len(found) > 1:
            first = found[0][0].path
            which = ", ".join(
                f"{s.name!r} (ROI {s.number}" + (f" of {ss.path}" if ss.path != first else "") + ")" for ss, s in found
            )
            case.problems.append(
                f"{first}: structures {which}: {len(found)} structures match label {name!r} "
                f"({patterns[name].pattern}); rename one or narrow the pattern"
            )
        elif found:
            case.matched[name] = found[0]
    if not any(hits.values()):
        wanted = ", ".join(patterns)
        for ss in case.structure_sets:
            have = ", ".join(repr(n) for n in ss.names) or "no structure"
            case.problems.append(f"{ss.path}: none of the asked structures ({wanted}) is here; it has {have}")


def pair_archive(root: str | Path) -> tuple[list[RTCase], list[str], list[DicomSeries]]:
    """(the image series that RTSTRUCTs reference, each with its structure sets; one line per RTSTRUCT that
    cannot be read or paired; the image series no RTSTRUCT references)."""
    non_images: list[NonImageSeries] = []
    series, _ = discover_series([Path(root)], non_images)
    rt_files = sorted(f for group in non_images if group.kind == RT_STRUCTURE_SET for f in group.files)
    by_series: dict[int, RTCase] = {}
    problems: list[str] = []
    for path in rt_files:
        try:
            ss = read_structure_set(path)
            found = find_referenced_series(ss, series)
        except RTStructError as exc:
            problems.append(str(exc))
            continue
        by_series.setdefault(id(found), RTCase(found)).structure_sets.append(ss)
    cases = [by_series[id(s)] for s in series if id(s) in by_series]
    unpaired = [s for s in series if id(s) not in by_series]
    return cases, problems, unpaired


def build_case(
    case: RTCase, patterns: Mapping[str, re.Pattern], all_series: list[DicomSeries], labels_dir: Path, images_dir: Path
) -> None:
    """Match, check, rasterise and write one case; problems go to ``case.problems`` (nothing written then)."""
    match_structures(case, patterns)
    series = case.series
    frame = _frame_of_reference(series)
    for ss, structure in case.matched.values():
        declared = ss.frame_of_reference_uids
        drawn_in = structure.frame_of_reference_uid or (declared[0] if len(declared) == 1 else "")
        if drawn_in and frame and drawn_in != frame:
            case.problems.append(
                f"{ss.path}: structure {structure.name!r}: frame of reference mismatch: drawn in "
                f"{drawn_in}, its series {series.series_uid} is in {frame}"
            )
    if fault := geometry_fault(series, all_series):
        case.problems.append(f"{series.folder}: {fault}")
    if case.problems or not case.matched:
        return
    try:
        image = read_series(series)
    except ImageReadError as exc:
        case.problems.append(str(exc))
        return
    affine = np.asarray(image.affine, dtype=np.float64)
    shape = tuple(int(s) for s in image.shape[1:])
    positions = slice_positions(series, affine)
    values = {name: value for value, name in enumerate(patterns, start=1)}
    label = np.zeros(shape, dtype=np.uint8 if len(values) < 256 else np.uint16)
    for name, (ss, structure) in case.matched.items():
        try:
            mask = _mask(ss, structure, affine, shape, positions)
        except RTStructError as exc:
            case.problems.append(str(exc))
            continue
        label[mask] = values[name]
    if case.problems:
        return
    case.label = write_label(label, image, labels_dir / f"{case.case_id}.nii.gz")
    if _folder_holds_only(series, all_series):
        case.image = series.folder
    else:
        case.image = write_image(image, images_dir / f"{case.case_id}.nii.gz")


def _mask(ss: StructureSet, structure: Structure, affine, shape, positions) -> np.ndarray:
    if sum(s.name == structure.name for s in ss.structures) > 1:  # named twice in one file: pick by number
        ss = StructureSet(ss.path, ss.frame_of_reference_uids, ss.series_uids, ss.sop_uids, [structure])
    return structure_mask(ss, structure.name, affine, shape, positions)


def _folder_holds_only(series: DicomSeries, all_series: list[DicomSeries]) -> bool:
    """True when reading ``series.folder`` as a DICOM series folder gives this series (no other image series
    has a file under it)."""
    folder = series.folder.resolve()
    for other in all_series:
        if other is series:
            continue
        if any(p is not None and folder in p.resolve().parents for p in other.files):
            return False
    return True


def write_image(image, path: Path) -> Path:
    """The image as NIfTI on its source grid (int16 when its values are integers that fit, else float32)."""
    data = image[0].detach().cpu().numpy()
    if np.array_equal(data, np.round(data)) and data.min() >= -32768 and data.max() <= 32767:
        data = data.astype(np.int16)
    affine = np.asarray(image.meta["original_affine"], dtype=np.float64)
    nifti = nib.Nifti1Image(data, affine)
    nifti.header.set_xyzt_units("mm")
    nifti.set_sform(affine, code=1)
    nifti.set_qform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".nii.gz") as tmp:
        nib.save(nifti, tmp)
    return path


def build_rtstruct_manifest(
    archive: str | Path, output: str | Path, structures: str | None = None, progress=None
) -> RTManifest:
    """Pair, check and rasterise every case of ``archive`` (see the module docstring); writes the label maps
    (and converted images) beside ``output``, not the manifest itself (the caller splits and writes it)."""
    archive, output = Path(archive), Path(output)
    if not archive.is_dir():
        raise ManifestError(f"{archive}: not a folder")
    patterns = parse_structures(structures)
    cases, unreadable, unpaired = pair_archive(archive)
    all_series = [c.series for c in cases] + unpaired
    labels_dir = output.parent / f"{output.stem}_labels"
    images_dir = output.parent / f"{output.stem}_images"
    labels_dir.mkdir(parents=True, exist_ok=True)
    good, bad = [], []
    for case in cases:
        build_case(case, patterns, all_series, labels_dir, images_dir)
        (bad if case.problems or case.label is None else good).append(case)
        if progress is not None:
            progress(case)
    if not cases and not unreadable:
        found = (
            f"{len(unpaired)} DICOM image series and no RTSTRUCT found"
            if unpaired
            else "no DICOM image series found (and no dataset.json, imagesTr/ or images/ of a dataset folder)"
        )
        raise ManifestError(f"{archive}: {found}; a manifest from a DICOM archive needs CT series with their RTSTRUCTs")
    labels = {value: name for value, name in enumerate(patterns, start=1)}
    return RTManifest(good, bad, unreadable, unpaired, labels)


def manifest_cases(result: RTManifest) -> list[Case]:
    return [Case(c.case_id, (c.image,), c.label, "train") for c in result.cases]


def record_path(manifest: str | Path) -> Path:
    """``<manifest stem>.structures.json``: which ROI became which label per case, and the cases left out."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.structures.json")


def write_record(result: RTManifest, manifest: str | Path, archive: str | Path, structures: str | None) -> Path:
    patterns = parse_structures(structures)
    record = {
        "archive": str(archive),
        "structures": {name: p.pattern for name, p in patterns.items()},
        "cases": {
            c.case_id: {
                "series": str(c.series.folder),
                "series_uid": c.series.series_uid,
                "rtstruct": [str(ss.path) for ss in c.structure_sets],
                "matched": {name: s.name for name, (_, s) in c.matched.items()},
                "missing": [name for name in patterns if name not in c.matched],
            }
            for c in result.cases
        },
        "problems": result.problems,
        "skipped": {c.case_id: c.problems for c in result.skipped},
        "unpaired_series": [str(s) for s in result.unpaired],
    }
    return write_text_atomic(record_path(manifest), json.dumps(record, indent=1) + "\n")


def recorded_problems(manifest: str | Path) -> list[str]:
    """The problem lines ``volseg manifest`` recorded for an RTSTRUCT manifest (none for any other)."""
    path = record_path(manifest)
    if not path.is_file():
        return []
    try:
        return [str(p) for p in json.loads(path.read_text(encoding="utf-8"))["problems"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path}: not a structure record ({exc})") from None
