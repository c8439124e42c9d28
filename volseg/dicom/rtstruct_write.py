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
from volseg.inference.qc import label_colors as colors_of
from volseg.version import __version__

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # what RTReferencedStudySequence items name (PS3.3 C.8.8.5)
NEW_FRAME_OF_REFERENCE = new_frame_of_reference_note("RTSTRUCT", "contours")


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


def _colour(value: int, label_colors: Mapping[int, str] | None) -> list[int]:
    text = colors_of([value], label_colors)[int(value)].lstrip("#")
    try:
        return [int(text[n : n + 2], 16) for n in (0, 2, 4)] if len(text) == 6 else _colour(value, None)
    except ValueError:
        return _colour(value, None)


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
        item.ROIDisplayColor = _colour(value, label_colors)
        contours = _contours(labels == value, sources, geometry)
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


def _contours(present: np.ndarray, sources: list[pydicom.Dataset], geometry: list) -> list[Dataset]:
    """One CLOSED_PLANAR contour per outline of ``present`` (X, Y, Z) on each slice, in patient coordinates."""
    contours = []
    for k in np.flatnonzero(present.any(axis=(0, 1))):
        origin, column_step, row_step = geometry[k]
        for outline in slice_contours(present[:, :, k]):
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
) -> Written:
    """Build and write the RTSTRUCT atomically; returns its SOPInstanceUID and the note of :func:`rtstruct_note`."""
    sources = read_source_datasets(files)
    ds = build_rtstruct(labels, sources, label_names, model_name, label_colors)
    with atomic_path(path) as tmp, withhold_header_messages():
        try:
            ds.save_as(tmp, enforce_file_format=True)
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            raise RTStructWriteError(f"the RTSTRUCT could not be written: {safe_reason(e)}") from None
    return Written(str(ds.SOPInstanceUID), rtstruct_note(sources))
