"""DICOM archives of any layout: find every image series from headers alone, check its geometry, read it.

Hospital exports nest patient/study/series folders, mix several series in one folder and drop file
extensions. :func:`discover_series` walks a tree and reads headers only (pydicom, no pixel data), groups
the instances by Study and Series Instance UID, then by orientation and image size (a localizer that
shares the CT's SeriesInstanceUID becomes a group of its own instead of being mixed into the volume),
and orders each group along its slice normal. :func:`geometry_fault` names what SimpleITK would silently
average away (a missing slice, gantry tilt, mixed image sizes); :func:`read_series` reads the checked
files in that order.

Case ids carry no identity: ``dcm-`` plus 12 hex digits of a SHA-256 over the Study and Series Instance
UIDs and the group's orientation and size, stable across runs and machines. Folder names, which in
exports often hold patient names, never become case ids.

The series rules read one normalised view of a series' tags (:func:`tag_view`), built the same way from a
file's header and from a PACS's DICOMweb JSON (parsed by pydicom, bulk data left out): padding stripped,
multi-valued tags as lists, numbers as numbers. So a series gets the same verdict whichever way it arrives.

DICOM libraries quote header values in their warnings and log records (highdicom a one-component
PatientName, pydicom an invalid value); :func:`withhold_header_messages` keeps those off the console and
out of the logs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import traceback
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VM
from pydicom.errors import InvalidDicomError

from volseg.data.case_ids import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

# The header elements discovery reads: identity-free selection tags plus geometry.
HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "ImageType",
    "SeriesDescription",
    "SeriesNumber",
    "StudyDate",
    "AccessionNumber",
    "BodyPartExamined",
    "SliceThickness",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "Rows",
    "Columns",
    "PixelSpacing",
    "NumberOfFrames",
    "InstanceNumber",
    "GantryDetectorTilt",
    "SharedFunctionalGroupsSequence",
    "ContrastBolusAgent",
    "ConvolutionKernel",
    "ProtocolName",
    "Manufacturer",
]
# Pixel encodings SimpleITK (GDCM) decodes; anything else fails with its name instead of a GDCM trace.
TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}
NOT_IMAGES = {  # storage classes that hold no image volume (never segmented; NonImageSeries records them)
    "1.2.840.10008.1.3.10": "DICOMDIR",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
}
# The series-level part of HEADER_TAGS, the view the selection rules test (per-slice geometry is read apart).
SELECTION_TAGS = [t for t in HEADER_TAGS if t not in ("SharedFunctionalGroupsSequence", "ImagePositionPatient")]
NUMERIC_VRS = {
    "DS": float,
    "FL": float,
    "FD": float,
    "IS": int,
    "US": int,
    "SS": int,
    "UL": int,
    "SL": int,
    "SV": int,
    "UV": int,
}
DICOM_LIBRARIES = ("pydicom", "highdicom", "dicomweb_client")  # their messages may quote header values
SLICE_GAP_TOLERANCE = 0.1  # relative difference of a slice step from the median step
TILT_TOLERANCE_DEG = 0.5  # slices stacked at more than this angle to their normal: gantry tilt


@dataclass(frozen=True)
class Instance:
    path: Path | None  # None for a PACS instance not yet retrieved
    sop_uid: str
    position: tuple[float, float, float] | None
    instance_number: int | None
    transfer_syntax: str
    frames: int


@dataclass
class DicomSeries:
    """One group of instances that forms (or claims to form) one image volume."""

    study_uid: str
    series_uid: str
    modality: str
    image_type: tuple[str, ...]
    orientation: tuple[float, ...] | None  # ImageOrientationPatient rounded to 4 decimals (a grouping key)
    rows: int
    columns: int
    tags: dict[str, Any]  # the selection rules' view of the first instance's tags (see :func:`tag_view`)
    instances: list[Instance] = field(default_factory=list)
    siblings: int = 0  # other groups (orientation/size) under the same SeriesInstanceUID

    @property
    def case_id(self) -> str:
        key = "|".join(
            [
                self.study_uid,
                self.series_uid,
                f"{self.rows}x{self.columns}",
                repr(self.orientation),
                min(i.sop_uid for i in self.instances) if not self.series_uid else "",
            ]
        )
        return "dcm-" + hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(i.path for i in self.instances)

    @property
    def slices(self) -> int:
        return sum(i.frames for i in self.instances)

    @property
    def folder(self) -> Path:
        parents = [str(p.parent) for p in self.files if p is not None]
        return Path(os.path.commonpath(parents)) if parents else Path("<pacs>")

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        normal = np.cross(np.array(self.orientation[:3]), np.array(self.orientation[3:]))
        return normal / max(float(np.linalg.norm(normal)), 1e-9)  # the rounded cosines are not quite unit

    @property
    def plane(self) -> str:
        """axial / coronal / sagittal when the slice normal is within 30 degrees of an axis, else oblique."""
        normal = self.normal
        if normal is None:
            return "unknown"
        axis = int(np.argmax(np.abs(normal)))
        if abs(normal[axis]) < np.cos(np.deg2rad(30)):
            return "oblique"
        return ("sagittal", "coronal", "axial")[axis]

    def __str__(self) -> str:
        """How the run record's input column points back at the source (path and UID, no case id)."""
        return f"{self.folder} (SeriesInstanceUID {self.series_uid or '<empty>'}, {len(self.instances)} files)"


@dataclass
class NonImageSeries:
    """The DICOM objects of one series that hold no image volume (an RTSTRUCT, a SEG, an SR, a PDF): found
    beside the images of an archive, never segmented, recorded as such (:attr:`reason`), never a failure."""

    study_uid: str
    series_uid: str
    kind: str  # the storage class's name (NOT_IMAGES), else the Modality
    files: list[Path] = field(default_factory=list)

    @property
    def case_id(self) -> str:
        key = "|".join([self.study_uid, self.series_uid, "non-image", self.kind])
        return "dcm-" + hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def reason(self) -> str:
        n = len(self.files)
        return f"not an image series ({self.kind}, {n} file{'s' if n != 1 else ''}): nothing to segment"

    def __str__(self) -> str:
        folder = os.path.commonpath([str(p.parent) for p in self.files])
        return f"{folder} (SeriesInstanceUID {self.series_uid or '<empty>'}, {len(self.files)} files)"


def non_image_series(headers: Iterable[tuple[Path, pydicom.Dataset]]) -> list[NonImageSeries]:
    """Non-image DICOM objects grouped by Study and Series Instance UID and kind (DICOMDIR left out: an index)."""
    groups: dict[tuple, NonImageSeries] = {}
    for path, ds in headers:
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class == "1.2.840.10008.1.3.10":
            continue
        kind = NOT_IMAGES.get(sop_class) or _strip(_text(ds.get("Modality"))) or "no image"
        key = (_strip(_text(ds.get("StudyInstanceUID"))), _strip(_text(ds.get("SeriesInstanceUID"))), kind)
        groups.setdefault(key, NonImageSeries(*key)).files.append(path)
    return list(groups.values())


def _iter_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and not name.endswith(IMAGE_SUFFIXES):
                    yield Path(folder) / name


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _strip(text: str) -> str:
    return str(text).strip().strip("\x00").strip()


def _normal_value(element: pydicom.DataElement) -> Any:
    """One element's value, normalised (see :func:`tag_view`); None when absent or empty."""
    value = element.value
    if element.VR == "SQ" or value is None or isinstance(value, (bytes, bytearray)):
        return None
    items = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    values: list[Any] = []
    for item in items:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            values.append(item)
        else:  # text; a value that arrives as one backslash-joined string is split as a file's would be
            values += [part for part in (_strip(p) for p in str(item).split("\\")) if part]
    convert = NUMERIC_VRS.get(str(element.VR))
    if convert is not None:
        numbers = []
        for v in values:
            try:
                numbers.append(convert(float(v)) if convert is int else float(v))
            except (TypeError, ValueError):
                numbers.append(_strip(v))  # a malformed number stays text (the rules then say "not a number")
        values = numbers
    if not values:
        return None
    try:
        multi = dictionary_VM(element.tag) != "1"
    except KeyError:  # a private or unknown tag: as many values as it has
        multi = False
    return values if multi or len(values) > 1 else values[0]


def tag_view(ds: pydicom.Dataset, names: Iterable[str] = SELECTION_TAGS) -> dict[str, Any]:
    """The normalised view of ``ds``'s tags that the series rules test, the same for a dataset read from a
    file and one parsed from DICOMweb JSON: text with its padding (spaces, NULs) stripped, multi-valued tags
    (by the DICOM dictionary's VM, e.g. ImageType, PixelSpacing) as lists of their values, numbers (DS, IS,
    US, FL, ...) as int or float. Absent and empty tags and sequences are left out."""
    view: dict[str, Any] = {}
    for name in names:
        element = ds.data_element(name) if name in ds else None
        if element is None:
            continue
        value = _normal_value(element)
        if value is not None:
            view[name] = value
    return view


def as_list(value: Any) -> list:
    """A view value as a list of values (an absent tag: [])."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


def safe_reason(error: BaseException) -> str:
    """One line for an exception: its message when volseg raised it; when a third-party library did, its type
    and the module that raised it, as the message may quote a header value (a patient's name)."""
    frames = [frame for frame, _ in traceback.walk_tb(error.__traceback__)]
    module = str(frames[-1].f_globals.get("__name__", "")) if frames else "volseg"
    if module.split(".")[0] == "volseg":
        return " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__} raised in {module} (its message is withheld: it may quote a header value)"


class _Withheld(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        log.debug(
            "withheld a %s log record of %s (DICOM libraries may quote header values)", record.levelname, record.name
        )
        return False


@contextmanager
def withhold_header_messages():
    """Keep third-party warnings and DICOM libraries' log records raised inside off the console and out of
    the logs: pydicom, highdicom and dicomweb-client quote header values in them (highdicom's "The string
    "<PatientName>" is unlikely to represent the intended person name", pydicom's invalid-value warnings),
    and a header value may identify a patient. Each is logged at DEBUG by its category and origin only,
    never its text."""
    names = [name for name in logging.root.manager.loggerDict if name.split(".")[0] in DICOM_LIBRARIES] + list(
        DICOM_LIBRARIES
    )
    loggers = {logging.getLogger(name) for name in names}
    withheld = _Withheld()
    for logger in loggers:
        logger.addFilter(withheld)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(withheld)
    for w in caught:
        log.debug(
            "withheld a %s from %s:%s (its text may quote a header value)",
            w.category.__name__,
            Path(w.filename).name,
            w.lineno,
        )


def _header(path: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError):
        return None


def _orientation(ds: pydicom.Dataset) -> tuple[float, ...] | None:
    value = ds.get("ImageOrientationPatient")
    if value is None and "SharedFunctionalGroupsSequence" in ds:  # enhanced multi-frame
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "PlaneOrientationSequence" in shared:
            value = shared.PlaneOrientationSequence[0].get("ImageOrientationPatient")
    if value is None or len(value) != 6:
        return None
    return tuple(round(float(v), 4) + 0.0 for v in value)


def discover_series(
    roots: Iterable[str | Path], non_images: list[NonImageSeries] | None = None
) -> tuple[list[DicomSeries], int]:
    """Every image series under ``roots`` (files or folders, any depth) and the number of files that are
    not DICOM images (other files, DICOMDIR, SEG, SR, ...). Reads headers only. ``non_images``, when given,
    receives the DICOM objects that hold no image, as series (:func:`non_image_series`)."""
    headers, others, skipped = [], [], 0
    with withhold_header_messages():
        for path in _iter_files(Path(r) for r in roots):
            ds = _header(path)
            if ds is None or not is_image(ds):
                skipped += 1
                if ds is not None:
                    others.append((path, ds))
            else:
                headers.append((path, ds))
        if non_images is not None:
            non_images += non_image_series(others)
        return group_series(headers), skipped


def is_image(ds: pydicom.Dataset) -> bool:
    return "SOPClassUID" in ds and str(ds.SOPClassUID) not in NOT_IMAGES and "Rows" in ds


def group_series(headers: Iterable[tuple[Path | None, pydicom.Dataset]]) -> list[DicomSeries]:
    """Group instance headers (from files, or from a PACS's metadata with no file yet) into series:
    by Study and Series Instance UID, then orientation and image size; each ordered along its normal."""
    groups: dict[tuple, DicomSeries] = {}
    for path, ds in headers:
        orientation = _orientation(ds)
        key = (
            _strip(_text(ds.get("StudyInstanceUID"))),
            _strip(_text(ds.get("SeriesInstanceUID"))),
            orientation,
            int(ds.Rows),
            int(ds.Columns),
        )
        series = groups.get(key)
        if series is None:
            view = tag_view(ds)
            series = groups[key] = DicomSeries(
                study_uid=key[0],
                series_uid=key[1],
                modality=str(view.get("Modality", "")).upper(),
                image_type=tuple(str(v).upper() for v in as_list(view.get("ImageType"))),
                orientation=orientation,
                rows=key[3],
                columns=key[4],
                tags=view,
            )
        position = ds.get("ImagePositionPatient")
        number = ds.get("InstanceNumber")
        meta = getattr(ds, "file_meta", None)
        series.instances.append(
            Instance(
                path=path,
                sop_uid=_strip(_text(ds.get("SOPInstanceUID"))),
                position=tuple(float(v) for v in position) if position is not None and len(position) == 3 else None,
                instance_number=int(number) if number not in (None, "") else None,
                transfer_syntax=str(getattr(meta, "TransferSyntaxUID", "")) if meta is not None else "",
                frames=int(ds.get("NumberOfFrames") or 1),
            )
        )
    found = list(groups.values())
    for series in found:
        series.siblings = (
            sum(1 for s in found if s.series_uid == series.series_uid and s.study_uid == series.study_uid) - 1
        )
        _sort_along_normal(series)
    found.sort(key=lambda s: (str(s.folder), str(s.tags.get("SeriesNumber", "")), s.case_id))
    return found


def _sort_along_normal(series: DicomSeries) -> None:
    normal = series.normal
    if normal is not None and all(i.position is not None for i in series.instances):
        series.instances.sort(key=lambda i: (float(normal @ np.array(i.position)), i.instance_number or 0))
    else:
        series.instances.sort(key=lambda i: (i.instance_number or 0, str(i.path)))


def geometry_fault(series: DicomSeries, all_series: Iterable[DicomSeries] = ()) -> str | None:
    """Why this series cannot be read as one regular volume, in one line; None when it can."""
    codes = sorted({i.transfer_syntax for i in series.instances})
    unsupported = [c for c in codes if c and c not in TRANSFER_SYNTAXES]
    if unsupported:
        return f"unsupported transfer syntax {', '.join(unsupported)} (volseg reads {', '.join(TRANSFER_SYNTAXES.values())})"
    mixed = [
        s
        for s in all_series
        if s is not series
        and s.study_uid == series.study_uid
        and s.series_uid == series.series_uid
        and s.orientation == series.orientation
    ]
    if mixed:
        sizes = ", ".join(f"{s.columns}x{s.rows} ({len(s.instances)} files)" for s in [series, *mixed])
        return f"mixed image sizes in one series: {sizes}"
    if len(series.instances) > 1 and any(i.frames > 1 for i in series.instances):
        return "several multi-frame files in one series; volseg reads one enhanced multi-frame file per series"
    if series.orientation is None:
        return "no ImageOrientationPatient: the slice geometry is unknown"
    if len(series.instances) < 3:
        return None
    if any(i.position is None for i in series.instances):
        return "a slice has no ImagePositionPatient: the slice order and spacing are unknown"
    positions = np.array([i.position for i in series.instances])
    steps = np.diff(positions, axis=0)
    along = steps @ series.normal
    median = float(np.median(along))
    if abs(median) < 1e-6:
        return "duplicate slice positions: several files lie at the same place (two acquisitions in one series?)"
    lengths = np.linalg.norm(steps, axis=1)
    tilt = np.degrees(np.arccos(np.clip(np.abs(along) / np.maximum(lengths, 1e-9), 0, 1)))
    if float(np.median(tilt)) > TILT_TOLERANCE_DEG:
        stated = series.tags.get("GantryDetectorTilt", "")
        stated = f"{stated:g}" if isinstance(stated, float) else stated
        return (
            f"gantry tilt: slices are stacked {float(np.median(tilt)):.1f} degrees off their normal"
            f"{f' (GantryDetectorTilt {stated})' if stated else ''}; resample it to an orthogonal grid first"
        )
    bad = np.flatnonzero(np.abs(along - median) > SLICE_GAP_TOLERANCE * abs(median))
    if bad.size:
        where = ", ".join(f"{along[i]:.3g} mm between slices {i} and {i + 1}" for i in bad[:5])
        return f"missing slice(s) or uneven slice spacing: median step {median:.3g} mm, but {where}"
    return None
