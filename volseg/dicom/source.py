"""What an object derived from a DICOM series (SEG, RTSTRUCT) needs from its source: the headers, the UIDs it
must reference, and its frame of reference.

A series without a FrameOfReferenceUID (3D-IRCADb's CT, many research exports) still gets its derived objects:
they share a new frame of reference derived from the series' Study and Series Instance UIDs, so every SEG and
RTSTRUCT volseg writes for that series carries the same one, and the writer returns a note saying so for the run
record. A series with an empty StudyInstanceUID or SeriesInstanceUID cannot be referenced at all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pydicom

from volseg.dicom.archive import safe_reason, withhold_header_messages


class Written(NamedTuple):
    """A derived object written for a series (SEG, RTSTRUCT)."""

    sop_instance_uid: str
    note: str  # how it was made where it matters (a new frame of reference), else ""


@contextmanager
def building(error: type[Exception], what: str) -> Iterator[None]:
    """Build a derived object with the DICOM libraries' header messages withheld; any failure other than
    ``error`` itself becomes ``error("what: reason")``, one line quoting no header value (highdicom's and
    pydicom's own texts may)."""
    with withhold_header_messages():
        try:
            yield
        except error:
            raise
        except Exception as e:  # noqa: BLE001  (re-raised as the writer's own one-line error)
            raise error(f"{what}: {safe_reason(e)}") from None


def read_source_datasets(files) -> list[pydicom.Dataset]:
    """Headers of the source instances (no pixel data), in the series' slice order."""
    with withhold_header_messages():
        return [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def has_value(ds: pydicom.Dataset, keyword: str) -> bool:
    """The element is present and not blank (an empty or all-space value counts as absent)."""
    return bool(str(ds.get(keyword, "") or "").strip())


def require_references(sources: list[pydicom.Dataset], what: str, error: type[Exception]) -> None:
    """Raise ``error`` (one line) when the series' Study or Series Instance UID is empty: ``what`` (e.g. "a SEG")
    could not reference it."""
    for keyword in ("SeriesInstanceUID", "StudyInstanceUID"):
        if not has_value(sources[0], keyword):
            raise error(
                f"the source series has an empty {keyword}, so {what} cannot reference it "
                "(NIfTI output works; or fix the series' UIDs)"
            )


def new_frame_of_reference_note(what: str, references: str) -> str:
    """The run record's note when ``what`` ("SEG", "RTSTRUCT") got a new frame of reference."""
    return (
        f"the source series has no FrameOfReferenceUID: the {what} was written with a new frame "
        f"of reference, its {references} referencing the source's instances"
    )


def needs_new_frame_of_reference(sources: list[pydicom.Dataset]) -> bool:
    return bool(sources) and not has_value(sources[0], "FrameOfReferenceUID")


def new_frame_of_reference(sources: list[pydicom.Dataset]) -> str:
    """The frame of reference derived objects get when their source has none: a UID derived from the series'
    UIDs, so it is the same for every object volseg writes for that series."""
    first = sources[0]
    return str(
        pydicom.uid.generate_uid(
            entropy_srcs=["volseg frame of reference", str(first.StudyInstanceUID), str(first.SeriesInstanceUID)]
        )
    )


def frame_of_reference(sources: list[pydicom.Dataset]) -> str:
    """The series' own FrameOfReferenceUID, else the derived one of :func:`new_frame_of_reference`."""
    if needs_new_frame_of_reference(sources):
        return new_frame_of_reference(sources)
    return str(sources[0].FrameOfReferenceUID).strip()
