"""RTSTRUCT output: a label map on a DICOM series' own grid, written as an RT Structure Set of closed planar contours.

The structure set references its source series the way planning systems expect: ReferencedFrameOfReferenceSequence
> RTReferencedStudySequence > RTReferencedSeriesSequence (the series' SeriesInstanceUID) > ContourImageSequence
(every source slice's SOP Class and Instance UID), and each contour references the slice it lies on. One ROI per
label, numbered 1..N in label-value order: StructureSetROISequence (ROI number, the label's name, generation
algorithm AUTOMATIC naming the model), ROIContourSequence (ROIDisplayColor from the config's ``data.label_colors``,
else the QC pictures' palette, and the contours), RTROIObservationsSequence (interpreted type ORGAN, interpreter
empty). New Series and SOP Instance UIDs, Manufacturer "volseg", structure set label/date/time.

Contours: per label and slice, :func:`skimage.measure.find_contours` at level 0.5 on the slice's binary mask
padded by one voxel, which gives closed outlines of every island and every hole (marching squares: vertices on
the midpoints between an inside and an outside voxel centre, never on a centre); collinear vertices are dropped
(exact: no vertex moves). Every contour is CLOSED_PLANAR; read with the even-odd rule (as
:mod:`volseg.dicom.rtstruct_read` and planning systems read them) they enclose exactly the label's voxel centres, so the
round trip gives the label map back (tests/test_rtstruct_write.py). Points are in patient coordinates (LPS, mm),
through each slice's own ImagePositionPatient, ImageOrientationPatient and PixelSpacing (voxel (i, j) of slice k:
IPP_k + i * column spacing * row direction + j * row spacing * column direction). ``labels`` is (X=column, Y=row,
Z=slice in the order of ``sources``), as volseg reads a series; single-frame slices only (an enhanced multi-frame
series: :class:`RTStructWriteError`).

Bounded whatever the label map: a speckled map (a model on the wrong scan, an early checkpoint) once gave 497,202
contours and 235 MB that no planning system opens. :func:`for_rtstruct` leaves the slice islands smaller than
``min_area_mm2`` (and fills holes that small) in the RTSTRUCT's copy of the labels only, never in the NIfTI or SEG,
and says how many in the note; the default, :data:`MIN_AREA_MM2`, lies below every contour of the Philips CT's
clinical structure set larger than one voxel (its smallest: 7.9 mm²; three smaller ones, 0.14-1.0 mm², are
sub-voxel slivers of the drawing tool). Over :data:`MAX_CONTOURS` contours or :data:`MAX_POINTS` points the
structure set is refused with one line (the case is ``partial``) instead of written.

Empty labels: a label the model did not find still gets its ROI (StructureSetROISequence, ROIContourSequence item
with its colour and no ContourSequence, observation), so a planning system lists it as looked for and absent.

A source series without a FrameOfReferenceUID gets the derived frame of reference of :mod:`volseg.dicom.source`
(the one the SEG carries too), and :func:`write_rtstruct` returns a note saying so. A series with an empty
StudyInstanceUID or SeriesInstanceUID cannot be referenced: :class:`RTStructWriteError`.

Patient data: the Patient and Study modules are copied from the first source, as highdicom does for the SEG, and no
other text from the source. Every pydicom/highdicom call runs under
:func:`~volseg.dicom.archive.withhold_header_messages`, and an error they raise is reported by its type and
origin (:func:`~volseg.dicom.archive.safe_reason`), not its text.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from volseg.dicom.archive import safe_reason, withhold_header_messages
from volseg.dicom.source import (
    Written,
    building,
    frame_of_reference,
    needs_new_frame_of_reference,
    new_frame_of_reference_note,
    read_source_datasets,
    require_references,
)
from volseg.errors import VolsegError
from volseg.files.atomic import atomic_path
from volseg.inference.qc import label_rgb
from volseg.version import __version__

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # what RTReferencedStudySequence items name (PS3.3 C.8.8.5)
NEW_FRAME_OF_REFERENCE = new_frame_of_reference_note("RTSTRUCT", "contours")
MIN_AREA_MM2 = 5.0  # islands (and holes) smaller than this per slice stay out of the RTSTRUCT
MAX_CONTOURS = 50_000
MAX_POINTS = 2_000_000  # about 60 MB of coordinates


class RTStructWriteError(VolsegError):
    """Why no RTSTRUCT can be written for a case (one line)."""


def rtstruct_note(sources: list[pydicom.Dataset]) -> str:
    """What :func:`build_rtstruct` does beyond the usual for these sources: a note for the run record, or ""."""
    return NEW_FRAME_OF_REFERENCE if needs_new_frame_of_reference(sources) else ""


# ------------------------------------------------------------------------------------------------ contours


def slice_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed outlines (each (N, 2) in voxel index units, i then j) of every island and hole of a 2D mask: their
    even-odd fill holds exactly the mask's voxel centres."""
    from skimage.measure import find_contours

    inside = np.argwhere(mask)
    if not len(inside):
        return []
    low, high = inside.min(axis=0), inside.max(axis=0) + 1
    padded = np.pad(mask[low[0] : high[0], low[1] : high[1]], 1).astype(np.float32)
    outlines = []
    for contour in find_contours(padded, 0.5):
        if len(contour) > 1 and np.array_equal(contour[0], contour[-1]):
            contour = contour[:-1]
        contour = _without_collinear(contour)
        if len(contour) >= 3:
            outlines.append(contour + (low - 1))
    return outlines


def for_rtstruct(
    labels: np.ndarray, sources: list[pydicom.Dataset], values, min_area_mm2: float | None = None
) -> tuple[np.ndarray, str]:
    """The labels an RTSTRUCT is drawn from: each label's islands smaller than ``min_area_mm2`` (None:
    :data:`MIN_AREA_MM2`) on a slice left out, its holes that small filled (the caller's array is not changed), and
    the note saying how many."""
    min_area_mm2 = MIN_AREA_MM2 if min_area_mm2 is None else min_area_mm2
    if min_area_mm2 <= 0:
        return labels, ""
    from scipy import ndimage

    cleaned, islands, holes = labels.copy(), 0, 0
    for k, source in enumerate(sources):
        pixel = _pixel_area(source)
        for value in values:
            mask = cleaned[:, :, k] == value
            if not mask.any():
                continue
            parts, n = ndimage.label(mask, structure=np.ones((3, 3)))  # diagonal neighbours: one island
            small = np.flatnonzero(np.bincount(parts.ravel())[1:] * pixel < min_area_mm2) + 1
            cleaned[:, :, k][np.isin(parts, small)] = 0
            islands += len(small)
            gaps, _ = ndimage.label(cleaned[:, :, k] != value)  # holes: the parts that do not reach the border
            border = np.unique(np.concatenate([gaps[0], gaps[-1], gaps[:, 0], gaps[:, -1]]))
            others = np.bincount(gaps.ravel(), weights=(cleaned[:, :, k] != 0).ravel())  # another label inside
            tiny = np.flatnonzero((np.bincount(gaps.ravel()) * pixel < min_area_mm2) & (others == 0))
            tiny = tiny[(tiny > 0) & ~np.isin(tiny, border)]
            cleaned[:, :, k][np.isin(gaps, tiny)] = value
            holes += len(tiny)
    if not islands and not holes:
        return cleaned, ""
    return cleaned, (
        f"{islands} islands and {holes} holes under {min_area_mm2:g} mm² per slice left out "
        "(--rtstruct-min-area; the label map and SEG keep them)"
    )


def _pixel_area(source: pydicom.Dataset) -> float:
    try:
        row, column = (float(v) for v in source.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        raise RTStructWriteError("a source slice lacks a usable PixelSpacing") from None
    return row * column


def _without_collinear(points: np.ndarray) -> np.ndarray:
    """Drop the vertices that lie on the line through their neighbours (marching squares' are on half-voxels, so
    the test is exact); the polygon is unchanged."""
    if len(points) < 4:
        return points
    before, after = np.roll(points, 1, axis=0), np.roll(points, -1, axis=0)
    a, b = points - before, after - points
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return points[np.abs(cross) > 1e-9]


def _slice_geometry(ds: pydicom.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, column step, row step) in LPS mm of one single-frame slice: voxel (i, j) = origin + i*col + j*row."""
    try:
        origin = np.array([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
        cosines = np.array([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
        row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    except (AttributeError, TypeError, ValueError, KeyError):
        raise RTStructWriteError(
            "a source slice lacks a usable ImagePositionPatient, ImageOrientationPatient or "
            "PixelSpacing, so contours cannot be placed in patient coordinates"
        ) from None
    if origin.shape != (3,) or cosines.shape != (6,) or not np.isfinite([*origin, *cosines]).all():
        raise RTStructWriteError("a source slice has a malformed ImagePositionPatient or ImageOrientationPatient")
    return origin, cosines[:3] * column_spacing, cosines[3:] * row_spacing


def _decimal(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


# ------------------------------------------------------------------------------------------------ building


def build_rtstruct(
    labels: np.ndarray,
    sources: list[pydicom.Dataset],
    label_names: Mapping[int, str],
    model_name: str,
    label_colors: Mapping[int, str] | None = None,
) -> pydicom.Dataset:
    """An RT Structure Set of ``labels`` (X=column, Y=row, Z=slice in the order of ``sources``, the source series'
    headers as :func:`~volseg.dicom.source.read_source_datasets` reads them): one ROI per entry of ``label_names``
    (value -> name), numbered 1..N in value order; a label absent from ``labels`` keeps its ROI, with no contour."""
    with building(RTStructWriteError, "the RTSTRUCT could not be built"):
        return _build_rtstruct(labels, sources, label_names, model_name, label_colors)


def _build_rtstruct(
    labels: np.ndarray,
    sources: list[pydicom.Dataset],
    label_names: Mapping[int, str],
    model_name: str,
    label_colors: Mapping[int, str] | None,
) -> pydicom.Dataset:
    _check_sources(labels, sources)
    first = sources[0]
    frame_uid = frame_of_reference(sources)
    ds = _structure_set(first, model_name, frame_uid)
    ds.ReferencedFrameOfReferenceSequence = [_referenced_frame(sources, frame_uid)]
    geometry = [_slice_geometry(s) for s in sources]
    outlines = {value: _outlines(labels == value) for value in sorted(label_names)}
    _check_size(outlines)
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, value in enumerate(sorted(label_names), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_uid
        roi.ROIName = str(label_names[value])[:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi.ROIGenerationDescription = f"volseg {__version__} {model_name}"[:64]
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = list(label_rgb([value], label_colors)[value])
        contours = _contours(outlines[value], sources, geometry)
        if contours:
            item.ContourSequence = contours
        ds.ROIContourSequence.append(item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = "ORGAN"
        observation.ROIInterpreter = ""
        ds.RTROIObservationsSequence.append(observation)
    return ds


def _check_sources(labels: np.ndarray, sources: list[pydicom.Dataset]) -> None:
    """Refuse, in one line, sources an RTSTRUCT cannot reference and a label map not on their grid."""
    if not sources:
        raise RTStructWriteError("no source slices given")
    first = sources[0]
    require_references(sources, "an RTSTRUCT", RTStructWriteError)
    if len(sources) == 1 and int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise RTStructWriteError(
            "the source is an enhanced multi-frame image; RTSTRUCT output is written for "
            "series of single-frame slices only (use dicom-seg)"
        )
    if labels.ndim != 3 or labels.shape != (int(first.Columns), int(first.Rows), len(sources)):
        raise RTStructWriteError(
            f"label map {labels.shape} does not match the series ({first.Columns}x{first.Rows}x{len(sources)})"
        )


def _structure_set(first: pydicom.Dataset, model_name: str, frame_uid: str) -> pydicom.Dataset:
    """The structure set's own modules, its patient and study copied from the source and nothing else."""
    now = datetime.datetime.now()
    ds = hd.SOPClass(
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=hd.UID(),
        series_number=901,
        sop_instance_uid=hd.UID(),
        sop_class_uid=RTSTRUCT_SOP_CLASS,
        instance_number=1,
        modality="RTSTRUCT",
        manufacturer="volseg",
        transfer_syntax_uid=ExplicitVRLittleEndian,
        manufacturer_model_name=model_name[:64],
        software_versions=__version__,
        device_serial_number="none",
        series_description=f"volseg {model_name}"[:64],
        series_date=now.date(),
        series_time=now.time(),
    )
    ds.copy_patient_and_study_information(first)  # Patient and Study modules, as highdicom does for the SEG
    ds.OperatorsName = ""  # RT Series module, type 2
    ds.FrameOfReferenceUID = frame_uid  # Frame of Reference module (in the RT Structure Set IOD since 2021)
    ds.PositionReferenceIndicator = ""  # type 2; nothing more from the source's header
    ds.StructureSetLabel = "VOLSEG"
    ds.StructureSetName = f"volseg {model_name}"[:64]
    ds.StructureSetDescription = f"volseg {model_name} automatic segmentation"[:1024]
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    return ds


def _image_reference(source: pydicom.Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = str(source.SOPClassUID)
    ref.ReferencedSOPInstanceUID = str(source.SOPInstanceUID)
    return ref


def _referenced_frame(sources: list[pydicom.Dataset], frame_uid: str) -> Dataset:
    """Frame of reference -> study -> series -> every slice: what the contours may point at."""
    first = sources[0]
    series = Dataset()
    series.SeriesInstanceUID = str(first.SeriesInstanceUID)
    series.ContourImageSequence = [_image_reference(s) for s in sources]
    study = Dataset()
    study.ReferencedSOPClassUID = STUDY_COMPONENT_SOP_CLASS
    study.ReferencedSOPInstanceUID = str(first.StudyInstanceUID)
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_uid
    frame.RTReferencedStudySequence = [study]
    return frame


def _outlines(present: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(slice, outline in voxel units) for every outline of ``present`` (X, Y, Z)."""
    return [(k, o) for k in np.flatnonzero(present.any(axis=(0, 1))) for o in slice_contours(present[:, :, k])]


def _check_size(outlines: dict) -> None:
    """Refuse, in one line, a structure set over the limits no planning system or viewer opens."""
    contours = sum(len(v) for v in outlines.values())
    points = sum(len(o) for v in outlines.values() for _, o in v)
    if contours > MAX_CONTOURS or points > MAX_POINTS:
        raise RTStructWriteError(
            f"the RTSTRUCT would hold {contours:,} contours and {points:,} points (limits {MAX_CONTOURS:,} and "
            f"{MAX_POINTS:,}): the label map is speckled; check the model and scan, or raise --rtstruct-min-area"
        )


def _contours(outlines: list, sources: list[pydicom.Dataset], geometry: list) -> list[Dataset]:
    """One CLOSED_PLANAR contour per outline, on its slice, in patient coordinates."""
    contours = []
    for k, outline in outlines:
        origin, column_step, row_step = geometry[k]
        points = origin + outline[:, :1] * column_step + outline[:, 1:2] * row_step
        contour = Dataset()
        contour.ContourNumber = len(contours) + 1
        contour.ContourImageSequence = [_image_reference(sources[k])]
        contour.ContourGeometricType = "CLOSED_PLANAR"
        contour.NumberOfContourPoints = len(points)
        contour.ContourData = [_decimal(v) for v in points.ravel()]
        contours.append(contour)
    return contours


def write_rtstruct(
    labels: np.ndarray,
    files,
    label_names: Mapping[int, str],
    model_name: str,
    path: Path,
    label_colors: Mapping[int, str] | None = None,
    min_area_mm2: float | None = None,
) -> Written:
    """Build and write the RTSTRUCT of ``labels`` (their islands under ``min_area_mm2`` left out: :func:`for_rtstruct`)
    atomically; returns its SOPInstanceUID and the notes of :func:`for_rtstruct` and :func:`rtstruct_note`."""
    sources = read_source_datasets(files)
    drawn, left_out = for_rtstruct(labels, sources, sorted(label_names), min_area_mm2)
    ds = build_rtstruct(drawn, sources, label_names, model_name, label_colors)
    with atomic_path(path) as tmp, withhold_header_messages():
        try:
            ds.save_as(tmp, enforce_file_format=True)
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            raise RTStructWriteError(f"the RTSTRUCT could not be written: {safe_reason(e)}") from None
    return Written(str(ds.SOPInstanceUID), "; ".join(n for n in (left_out, rtstruct_note(sources)) if n))
