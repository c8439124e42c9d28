"""SNOMED CT codes for TotalSegmentator's structure names, for the segments of a DICOM SEG.

``totalsegmentator_snomed_mapping.csv`` is TotalSegmentator 2.18.0's own table (``resources/``, Apache-2.0,
(c) Jakob Wasserthal et al., https://github.com/wasserth/TotalSegmentator), copied unchanged, so a SEG from a
TotalSegmentator or nnU-Net model codes its segments as TotalSegmentator's own DICOM output does.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import highdicom as hd

from volseg.files.csv_rows import read_rows

TABLE = Path(__file__).with_name("totalsegmentator_snomed_mapping.csv")
_PREFIXES = {
    "category": "SegmentedPropertyCategoryCodeSequence",
    "type": "SegmentedPropertyTypeCodeSequence",
    "modifier": "SegmentedPropertyTypeModifierCodeSequence",
}


def _concept(row: dict, prefix: str) -> hd.sr.CodedConcept | None:
    value = row.get(f"{prefix}.CodeValue", "").strip()
    if not value:
        return None
    return hd.sr.CodedConcept(
        value=value,
        scheme_designator=row[f"{prefix}.CodingSchemeDesignator"].strip(),
        meaning=row[f"{prefix}.CodeMeaning"].strip(),
    )


@lru_cache(maxsize=1)
def totalsegmentator_codes() -> dict[str, tuple]:
    """structure name -> (category, type, modifier or None)."""
    return {
        row["Structure"].strip(): (
            _concept(row, _PREFIXES["category"]),
            _concept(row, _PREFIXES["type"]),
            _concept(row, _PREFIXES["modifier"]),
        )
        for row in read_rows(TABLE)
        if row.get("Structure")
    }
