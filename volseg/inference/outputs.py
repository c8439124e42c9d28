"""Every file a run writes, named in one place: :class:`RunOutputs`.

Per case, named after the case id and never like the scan it came from (a run whose output folder is the
scans' own overwrites none of them): the label map ``CASE_seg.nii.gz``, the DICOM SEG ``CASE_seg.dcm``, the
RTSTRUCT ``CASE_rtstruct.dcm``, the measurement report ``CASE_sr.dcm``, the QC picture ``CASE_qc.png`` and the probabilities
``CASE_probabilities.npz``. Per run: the record ``volseg_run.csv`` and
``statistics.csv``/``.json``; a torchrun rank writes ``volseg_run.rankK.csv`` and ``statistics.rankK.csv``
instead, which rank 0 merges, so ranks never append to one file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUN_CSV = "volseg_run.csv"
STATISTICS_CSV = "statistics.csv"
STATISTICS_JSON = "statistics.json"
# written in this order; the last one (the label map, when asked for) means the case is done
FORMAT_ORDER = ("dicom-seg", "sr", "rtstruct", "nifti")  # the SR after the SEG it references


@dataclass(frozen=True)
class RunOutputs:
    folder: Path
    keep_record: bool = True  # volseg_run.csv and the statistics beside it
    rank: int | None = None  # a torchrun rank's own record and statistics parts

    def label_map(self, case_id: str) -> Path:
        return self.folder / f"{case_id}_seg.nii.gz"

    def seg(self, case_id: str) -> Path:
        return self.folder / f"{case_id}_seg.dcm"

    def rtstruct(self, case_id: str) -> Path:
        return self.folder / f"{case_id}_rtstruct.dcm"

    def sr(self, case_id: str) -> Path:
        return self.folder / f"{case_id}_sr.dcm"

    def qc(self, case_id: str) -> Path:
        return self.folder / f"{case_id}_qc.png"

    def probabilities(self, case_id: str) -> Path:
        return self.folder / f"{case_id}_probabilities.npz"

    def for_formats(self, case_id: str, formats) -> dict[str, Path]:
        """Format -> path in writing order; the last one's presence means the case is done."""
        paths = {
            "dicom-seg": self.seg(case_id),
            "sr": self.sr(case_id),
            "rtstruct": self.rtstruct(case_id),
            "nifti": self.label_map(case_id),
        }
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
        return [RunOutputs(self.folder, self.keep_record, k) for k in range(world_size)]

    @property
    def merged(self) -> RunOutputs:
        return RunOutputs(self.folder, self.keep_record)
