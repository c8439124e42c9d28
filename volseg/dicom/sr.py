"""DICOM SR measurement report: a Comprehensive 3D SR with TID 1500, one TID 1411 group per structure referencing
its segment in the case's SEG, so a PACS query reads volumes and intensities without opening a label map.

Each group carries the structure's volume (mL) and the mean, standard deviation, minimum and maximum intensity
inside it: Hounsfield units (DCM 112031 "Attenuation Coefficient", UCUM ``[hnsf'U]``) on CT, the scan's own
units on MR (DCM 110852 "MR signal intensity", unitless), each statistic coded as its derivation (SNOMED CT Mean,
Standard Deviation, Minimum, Maximum). The figures are the case's rows of ``statistics.csv``
(:mod:`volseg.inference.label_statistics`), so both say the same. An empty structure reports its zero volume
only. The finding type and site come from the SEG's own segment codes (:mod:`volseg.dicom.seg`), the observer
is a device: volseg and the model. Patient and study come from the evidence, as highdicom copies them: the same
modules as the SEG, nothing else of the source's header.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes

from volseg.dicom.archive import withhold_header_messages
from volseg.dicom.source import Written, building, read_source_datasets
from volseg.errors import VolsegError
from volseg.files.atomic import atomic_path
from volseg.version import __version__

MILLILITER = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
STATISTICS = (
    ("mean_intensity", codes.SCT.Mean),
    ("std_intensity", codes.SCT.StandardDeviation),
    ("min_intensity", codes.SCT.Minimum),
    ("max_intensity", codes.SCT.Maximum),
)
LATERALITY = {codes.SCT.Left.value, codes.SCT.Right.value}


class SrError(VolsegError):
    """Why no SR can be written for a case (one line)."""


def build_sr(
    seg: pydicom.Dataset, sources: list[pydicom.Dataset], rows: Sequence[dict], model_name: str
) -> hd.sr.Comprehensive3DSR:
    """The report of ``rows`` (one per label, in label-value order: the SEG's segment order) for ``seg``; the
    intensities' units follow the source series' Modality (CT: HU)."""
    with building(SrError, "highdicom could not build the SR"):
        return _build_sr(seg, sources, rows, model_name)


def _build_sr(seg, sources, rows, model_name: str) -> hd.sr.Comprehensive3DSR:
    modality = str(sources[0].get("Modality", "")).upper()
    segments = list(seg.SegmentSequence)
    names = [str(s.SegmentLabel) for s in segments]
    if names != [row["name"] for row in rows]:
        raise SrError(f"the SEG's segments {names} are not the statistics' labels {[r['name'] for r in rows]}")
    algorithm = hd.sr.AlgorithmIdentification(name=f"volseg {model_name}"[:64], version=__version__)
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=hd.UID(), name="volseg", manufacturer_name="volseg", model_name=model_name[:64]
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    groups = [_group(seg, segment, row, modality, sources[0], algorithm) for segment, row in zip(segments, rows)]
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion if modality == "CT" else codes.LN.MRIUnspecifiedBodyRegion,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[seg, *sources],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=901,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="volseg",
        is_complete=True,
        series_description=f"volseg {model_name} measurements"[:64],
    )


def _group(seg, segment, row: dict, modality: str, source, algorithm):
    """TID 1411 for one segment: what it is, where, and its figures."""
    kind = _code(segment.SegmentedPropertyTypeCodeSequence[0])
    category = _code(segment.SegmentedPropertyCategoryCodeSequence[0])
    modifiers = getattr(segment.SegmentedPropertyTypeCodeSequence[0], "SegmentedPropertyTypeModifierCodeSequence", [])
    modifier = _code(modifiers[0]) if modifiers else None
    sites = []
    if category == codes.SCT.AnatomicalStructure:
        lateral = modifier is not None and modifier.value in LATERALITY
        sites = [
            hd.sr.FindingSite(
                anatomic_location=kind,
                laterality=modifier if lateral else None,
                topographical_modifier=modifier if modifier is not None and not lateral else None,
            )
        ]
    measurements = [hd.sr.Measurement(name=codes.SCT.Volume, value=float(row["volume_ml"]), unit=MILLILITER)]
    if int(row["voxels"]):
        name = codes.DCM.AttenuationCoefficient if modality == "CT" else codes.DCM.MRSignalIntensity
        unit = codes.UCUM.HounsfieldUnit if modality == "CT" else codes.UCUM.NoUnits
        measurements += [
            hd.sr.Measurement(name=name, value=float(row[key]), unit=unit, derivation=derivation)
            for key, derivation in STATISTICS
        ]
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=str(row["name"])[:64]),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=int(segment.SegmentNumber),
            source_series=hd.sr.SourceSeriesForSegmentation(source.SeriesInstanceUID),
        ),
        finding_type=kind,
        finding_sites=sites,
        algorithm_id=algorithm,
        measurements=measurements,
    )


def _code(item: pydicom.Dataset) -> hd.sr.CodedConcept:
    """The code alone (a SEG's type code item also holds its modifier, which has no place in an SR code)."""
    return hd.sr.CodedConcept(str(item.CodeValue), str(item.CodingSchemeDesignator), str(item.CodeMeaning))


def write_sr(seg_path: Path, files, rows: Sequence[dict], model_name: str, path: Path) -> Written:
    """Build the report for the SEG at ``seg_path`` (written for the series ``files``) and write it atomically."""
    with withhold_header_messages():
        seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    sr = build_sr(seg, read_source_datasets(files), rows, model_name)
    with atomic_path(path) as tmp, withhold_header_messages():
        sr.save_as(tmp, enforce_file_format=True)
    return Written(str(sr.SOPInstanceUID), "")
