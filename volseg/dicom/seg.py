"""DICOM SEG output: a label map on a series' own grid, written as a BINARY Segmentation with highdicom.

Frames are aligned to the source slices (SpatialLocationsPreserved), and each frame references its
source instance; segments are numbered 1..N in label-value order, each with its label and SNOMED CT
category and type codes (:data:`CODES` by label name, then TotalSegmentator's own table for its structure
names, or ``data.label_codes`` in the model config), and
algorithm type AUTOMATIC naming volseg's version and the model.

Empty labels: a label the model did not find keeps its segment description and has no frames, so a
viewer lists it as looked for and absent. When every label is empty the SEG still holds every segment
description and every frame, encoded empty (a SEG cannot have no frame), so "no finding" is also a
result a PACS can store.

A source series without a FrameOfReferenceUID (3D-IRCADb's CT, many research exports) still gets a SEG, with
the derived frame of reference of :mod:`volseg.dicom.source`; :func:`write_seg` returns a note saying so, which
the run record keeps. A series with an empty StudyInstanceUID or SeriesInstanceUID: :class:`SegError`.

Patient data: the SEG copies the source's Patient and General Study modules, as DICOM requires. highdicom
warns with the value when a PatientName has one component ("The string "<name>" is unlikely to represent
the intended person name"), and pydicom quotes invalid values; every highdicom and pydicom call here runs
under :func:`~volseg.dicom.archive.withhold_header_messages`, so none of that reaches the console or a
log, and an error highdicom raises is reported by its type and origin, not its text.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from volseg.dicom.anatomy_codes import totalsegmentator_codes
from volseg.dicom.archive import withhold_header_messages
from volseg.dicom.source import (
    Written,
    building,
    needs_new_frame_of_reference,
    new_frame_of_reference,
    new_frame_of_reference_note,
    read_source_datasets,
    require_references,
)
from volseg.errors import VolsegError
from volseg.files.atomic import atomic_path
from volseg.version import __version__

ANATOMY = codes.SCT.AnatomicalStructure
# label name -> (segmented property category, type, optional laterality/position modifier)
CODES: dict[str, tuple] = {
    "liver": (ANATOMY, codes.SCT.Liver, None),
    "spleen": (ANATOMY, codes.SCT.Spleen, None),
    "pancreas": (ANATOMY, codes.SCT.Pancreas, None),
    "kidney": (ANATOMY, codes.SCT.Kidney, None),
    "kidney_right": (ANATOMY, codes.SCT.Kidney, codes.SCT.Right),
    "kidney_left": (ANATOMY, codes.SCT.Kidney, codes.SCT.Left),
    "stomach": (ANATOMY, codes.SCT.Stomach, None),
    "gallbladder": (ANATOMY, codes.SCT.Gallbladder, None),
    "aorta": (ANATOMY, codes.SCT.Aorta, None),
    "inferior_vena_cava": (ANATOMY, codes.SCT.InferiorVenaCava, None),
    "portal_vein": (ANATOMY, codes.SCT.PortalVein, None),
    "esophagus": (ANATOMY, codes.SCT.Esophagus, None),
    "duodenum": (ANATOMY, codes.SCT.Duodenum, None),
    "colon": (ANATOMY, codes.SCT.Colon, None),
    "urinary_bladder": (ANATOMY, codes.SCT.Bladder, None),
    "lung": (ANATOMY, codes.SCT.Lung, None),
    "heart": (ANATOMY, codes.SCT.Heart, None),
    "brain": (ANATOMY, codes.SCT.Brain, None),
    "prostate": (ANATOMY, codes.SCT.Prostate, None),
    "hippocampus": (ANATOMY, codes.SCT.Hippocampus, None),
    # the Medical Segmentation Decathlon's hippocampus labels (the default model): head and body+tail
    "anterior": (ANATOMY, codes.SCT.Hippocampus, codes.SCT.Anterior),
    "posterior": (ANATOMY, codes.SCT.Hippocampus, codes.SCT.Posterior),
    "tumor": (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm, None),
    "lesion": (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion, None),
}
ALGORITHM_FAMILY = codes.cid7162.ArtificialIntelligence


NEW_FRAME_OF_REFERENCE = new_frame_of_reference_note("SEG", "frames")


class SegError(VolsegError):
    """Why no SEG can be written for a case (one line)."""


def seg_note(sources: list[pydicom.Dataset]) -> str:
    """What :func:`build_seg` does beyond the usual for these sources: a note for the run record, or ""."""
    return NEW_FRAME_OF_REFERENCE if needs_new_frame_of_reference(sources) else ""


def _code(text: str) -> hd.sr.CodedConcept:
    """'SCT:10200004:Liver' -> a coded concept (scheme:value:meaning)."""
    parts = str(text).split(":", 2)
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise SegError(f"data.label_codes: {text!r} is not SCHEME:VALUE:MEANING (e.g. 'SCT:10200004:Liver')")
    scheme, value, meaning = (p.strip() for p in parts)
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def segment_codes(name: str, overrides: Mapping[str, Mapping[str, str]] | None = None) -> tuple:
    """(category, type, modifier or None) for a label name: the config's ``data.label_codes`` first."""
    given = (overrides or {}).get(name)
    if given:
        category = _code(given["category"]) if "category" in given else ANATOMY
        modifier = _code(given["modifier"]) if "modifier" in given else None
        return category, _code(given["type"]), modifier
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key in CODES:
        return CODES[key]
    extended = totalsegmentator_codes()
    if name.strip() in extended or key in extended:
        return extended.get(name.strip()) or extended[key]
    raise SegError(
        f"label {name!r} has no SNOMED CT code in volseg's table; give one in the model config's "
        f"data.label_codes, e.g. {{{name}: {{type: 'SCT:<code>:<meaning>'}}}}"
    )


def build_seg(
    labels: np.ndarray,
    sources: list[pydicom.Dataset],
    label_names: Mapping[int, str],
    model_name: str,
    label_codes: Mapping[str, Mapping[str, str]] | None = None,
    label_colors: Mapping[int, str] | None = None,
) -> hd.seg.Segmentation:
    """A SEG of ``labels`` (X=column, Y=row, Z=slice in the source order, as volseg reads a series); each segment's
    recommended display colour is the label's (``data.label_colors``, else the QC pictures' palette): without one
    OHIF warns and picks its own."""
    with building(SegError, "highdicom could not build the SEG"):
        return _build_seg(labels, sources, label_names, model_name, label_codes, label_colors)


def _build_seg(
    labels: np.ndarray,
    sources: list[pydicom.Dataset],
    label_names: Mapping[int, str],
    model_name: str,
    label_codes: Mapping[str, Mapping[str, str]] | None = None,
    label_colors: Mapping[int, str] | None = None,
) -> hd.seg.Segmentation:
    require_references(sources, "a SEG", SegError)
    if needs_new_frame_of_reference(
        sources
    ):  # a SEG of its own frame of reference, on copies: the caller's headers stay as read
        uid = new_frame_of_reference(sources)
        sources = [copy.deepcopy(ds) for ds in sources]
        for ds in sources:
            ds.FrameOfReferenceUID = uid
    values = sorted(label_names)
    frames = len(sources) if len(sources) > 1 else int(sources[0].get("NumberOfFrames", 1))
    if labels.shape != (int(sources[0].Columns), int(sources[0].Rows), frames):
        raise SegError(
            f"label map {labels.shape} does not match the series ({sources[0].Columns}x{sources[0].Rows}x{frames})"
        )
    segment_map = np.zeros(labels.shape, np.uint8 if len(values) < 256 else np.uint16)
    for number, value in enumerate(values, start=1):
        segment_map[labels == value] = number
    pixel_array = np.ascontiguousarray(segment_map.transpose(2, 1, 0))  # (frames, rows, columns)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"volseg {model_name}"[:64], family=ALGORITHM_FAMILY, version=__version__
    )
    descriptions, colors = [], _display_colors(values, label_colors)
    for number, value in enumerate(values, start=1):
        category, kind, modifier = segment_codes(label_names[value], label_codes)
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label_names[value],
            segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=colors[value],
        )
        if modifier is not None:
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept(modifier.value, modifier.scheme_designator, modifier.meaning)
            ]
        descriptions.append(description)
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixel_array if len(sources) > 1 else pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="volseg",
        manufacturer_model_name=model_name[:64],
        software_versions=__version__,
        device_serial_number="none",
        series_description=f"volseg {model_name}"[:64],
        content_label="VOLSEG",
        content_description=f"volseg {model_name} automatic segmentation"[:64],
    )


def _display_colors(values, label_colors: Mapping[int, str] | None) -> dict[int, hd.color.CIELabColor]:
    """Each label's colour as CIELab: the RTSTRUCT's colour (:func:`~volseg.inference.qc.label_rgb`)."""
    from volseg.inference.qc import label_rgb

    return {value: hd.color.CIELabColor.from_rgb(*rgb) for value, rgb in label_rgb(values, label_colors).items()}


def write_seg(
    labels: np.ndarray,
    files,
    label_names: Mapping[int, str],
    model_name: str,
    path: Path,
    label_codes: Mapping[str, Mapping[str, str]] | None = None,
    label_colors: Mapping[int, str] | None = None,
) -> Written:
    """Build and write the SEG atomically; returns its SOPInstanceUID and the note of :func:`seg_note`."""
    sources = read_source_datasets(files)
    seg = build_seg(labels, sources, label_names, model_name, label_codes, label_colors)
    with atomic_path(path) as tmp, withhold_header_messages():
        seg.save_as(tmp, enforce_file_format=True)
    return Written(str(seg.SOPInstanceUID), seg_note(sources))
