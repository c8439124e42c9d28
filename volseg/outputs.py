"""Every file a run writes, named in one place: :class:`RunOutputs`.

Per case: the label map (``CASE.nii.gz``, or ``CASE_seg.nii.gz`` for a single scan written to the working
folder), and beside it under the same stem the DICOM SEG (``.dcm``), RTSTRUCT (``_rtstruct.dcm``), QC picture
(``_qc.png``) and probabilities (``_probabilities.npz``). Per run: the record ``volseg_run.csv`` and
``statistics.csv``/``.json``; a torchrun rank writes ``volseg_run.rankK.csv`` and ``statistics.rankK.csv``
instead, which rank 0 merges, so ranks never append to one file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from volseg.data.case_ids import file_stem

RUN_CSV = "volseg_run.csv"
STATISTICS_CSV = "statistics.csv"
STATISTICS_JSON = "statistics.json"
# written in this order; the last one (the label map, when asked for) means the case is done
FORMAT_ORDER = ("dicom-seg", "rtstruct", "nifti")


def stem(path: Path) -> str:
    """``CASE`` of ``CASE.nii.gz`` / ``CASE.nii`` (the stem side files are named after)."""
    return file_stem(path) or Path(path).name


def qc_beside(label_map: Path) -> Path:
    return Path(label_map).with_name(stem(label_map) + "_qc.png")


@dataclass(frozen=True)
class RunOutputs:
    folder: Path
    keep_record: bool = True  # volseg_run.csv and the statistics beside it
    single: bool = False  # one scan into the working folder: CASE_seg.nii.gz
    rank: int | None = None  # a torchrun rank's own record and statistics parts

    def label_map(self, case_id: str) -> Path:
        return self.folder / (f"{case_id}_seg.nii.gz" if self.single else f"{case_id}.nii.gz")

    def _beside(self, case_id: str, suffix: str) -> Path:
        return self.folder / (stem(self.label_map(case_id)) + suffix)

    def seg(self, case_id: str) -> Path:
        return self._beside(case_id, ".dcm")

    def rtstruct(self, case_id: str) -> Path:
        return self._beside(case_id, "_rtstruct.dcm")

    def qc(self, case_id: str) -> Path:
        return self._beside(case_id, "_qc.png")

    def probabilities(self, case_id: str) -> Path:
        return self._beside(case_id, "_probabilities.npz")

    def for_formats(self, case_id: str, formats) -> dict[str, Path]:
        """Format -> path in writing order; the last one's presence means the case is done."""
        paths = {"dicom-seg": self.seg(case_id), "rtstruct": self.rtstruct(case_id), "nifti": self.label_map(case_id)}
        return {f: paths[f] for f in FORMAT_ORDER if f in formats}

    @property
    def run_record(self) -> Path | None:
        if not self.keep_record:
            return None
        return self.folder / (RUN_CSV if self.rank is None else f"volseg_run.rank{self.rank}.csv")

    @property
    def statistics_csv(self) -> Path | None:
        if not self.keep_record:
            return None
        return self.folder / (STATISTICS_CSV if self.rank is None else f"statistics.rank{self.rank}.csv")

    @property
    def statistics_json(self) -> Path:
        return self.folder / STATISTICS_JSON

    def ranks(self, world_size: int) -> list[RunOutputs]:
        """Every rank's outputs (rank 0 merges their records)."""
        return [RunOutputs(self.folder, self.keep_record, self.single, k) for k in range(world_size)]

    @property
    def merged(self) -> RunOutputs:
        return RunOutputs(self.folder, self.keep_record, self.single)
