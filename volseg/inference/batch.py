"""The batch runner every model family shares: segment cases, writing each label map on its scan's own grid.

A :class:`~volseg.inference.segmenter.CaseSegmenter` (a zoo model, an ROI cascade, an nnU-Net or TotalSegmentator
folder) segments one case at a time; :func:`run_batch` runs a cohort with per-case isolation (a failure is recorded and the batch goes on), atomic outputs, ``--resume``, a
deterministic split across machines, and a ``volseg_run.csv`` record. Reading and preprocessing the next
case overlaps with predicting the current one.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from volseg.data import io
from volseg.data.manifest import safe_case_id
from volseg.data.scan_screen import ScanRefused, screen
from volseg.dicom.archive import DicomSeries, discover_series
from volseg.errors import VolsegError
from volseg.files.atomic import atomic_path
from volseg.inference.inputs import CaseInput
from volseg.inference.label_statistics import append_rows, label_statistics, write_json
from volseg.inference.outputs import RunOutputs
from volseg.inference.run_record import RunRecord
from volseg.inference.segmenter import CaseSegmenter

log = logging.getLogger(__name__)
OUTPUT_FORMATS = ("nifti", "dicom-seg", "rtstruct", "sr")
DICOM_FORMATS = ("dicom-seg", "rtstruct", "sr")


def with_references(formats) -> tuple[str, ...]:
    """The formats to write: an SR references its segments in the case's SEG, so asking for ``sr`` writes the SEG
    too."""
    formats = tuple(formats)
    return formats + ("dicom-seg",) if "sr" in formats and "dicom-seg" not in formats else formats


@dataclass
class CaseResult:
    case_id: str
    input: str
    output: str
    # ok, partial (some requested outputs written, the note says why not the rest), failed, skipped, rejected (by
    # the series rules), refused (--strict: unlike the model's training scans)
    status: str
    seconds: float = 0.0
    error: str = ""
    note: str = ""


@dataclass
class BatchOptions:
    resume: bool = False
    overwrite: bool = False
    save_probabilities: bool = False
    qc: bool = False
    qc_attention: bool = False
    case_timeout: float | None = None  # seconds allowed for reading + preprocessing one case
    output_formats: tuple[str, ...] = ("nifti",)  # any of OUTPUT_FORMATS
    statistics: bool = True  # statistics.csv/json beside the run record (with a run record only)
    strict: bool = False  # refuse a scan unlike the model's training scans (status "refused") instead of warning
    rtstruct_min_area: float | None = None  # mm²: smaller slice islands stay out of the RTSTRUCT (None: its default)


def _one_line(error: BaseException) -> str:
    """The user-facing reason: MONAI wraps a transform's error in RuntimeError("applying transform ...")."""
    while isinstance(error, RuntimeError) and "applying transform" in str(error) and error.__cause__ is not None:
        error = error.__cause__
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, (ValueError, OSError, TimeoutError)) else f"{type(error).__name__}: {text}"


def _in_background(fn: Callable, *args) -> Future:
    """Run ``fn`` in a daemon thread: a read that hangs for ever (a stalled network share) can be
    abandoned after --case-timeout without keeping the process alive at exit."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001  (handed to the waiting caller)
            future.set_exception(e)

    threading.Thread(target=run, daemon=True).start()
    return future


def run_batch(
    cases: list[CaseInput],
    outputs: RunOutputs,
    segmenter: CaseSegmenter,
    options: BatchOptions,
    on_case: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Segment every case into ``outputs.folder``; never stop on a bad case. Returns one result per case.

    ``outputs.run_record`` gets a line per case as it ends (:class:`RunRecord`); without one no record is
    kept. Series that the selection rules rejected get a row (status ``rejected``, the reason in ``error``).

    A requested output that cannot be made from the case's input (a DICOM SEG of a series with an empty
    SeriesInstanceUID, or of a NIfTI input) does not stop the others: the case is ``partial``, with every
    other output and its statistics written and ``<format> not written: <why>`` in ``note``. When no
    requested output can be made the case is ``failed``.
    """
    unknown = set(options.output_formats) - set(OUTPUT_FORMATS)
    if unknown or not options.output_formats:
        raise VolsegError(
            f"output formats must be some of {', '.join(OUTPUT_FORMATS)}, got {','.join(options.output_formats)}"
        )
    options = dataclasses.replace(options, output_formats=with_references(options.output_formats))
    batch = _Batch(outputs, segmenter, options, on_case)
    todo = batch.triage(cases)
    pending = _in_background(batch.load, todo[0][0]) if todo else None
    for i, (case, paths) in enumerate(todo):
        current, pending = pending, _in_background(batch.load, todo[i + 1][0]) if i + 1 < len(todo) else None
        batch.segment(case, paths, current)
    batch.close()
    return batch.results


class _Batch:
    """One batch run's state and its steps: which cases to segment, then each case read, screened,
    predicted and written, its result recorded as it ends."""

    def __init__(self, outputs: RunOutputs, segmenter: CaseSegmenter, options: BatchOptions, on_case) -> None:
        self.outputs, self.segmenter, self.options, self.on_case = outputs, segmenter, options, on_case
        outputs.folder.mkdir(parents=True, exist_ok=True)
        self.stats_csv = outputs.statistics_csv if options.statistics else None
        if self.stats_csv is not None and not options.resume:
            self.stats_csv.unlink(missing_ok=True)
        self.record = RunRecord(outputs.run_record, keep=options.resume) if outputs.run_record is not None else None
        self.results: list[CaseResult] = []

    def add(self, result: CaseResult) -> None:
        self.results.append(result)
        if self.record is not None:
            self.record.add(result)
        if self.on_case is not None:
            self.on_case(result)

    def triage(self, cases: list[CaseInput]) -> list[tuple[CaseInput, dict[str, Path]]]:
        """Record the cases that are not to be segmented (rejected, unsafe id, done, outputs in the way);
        the others, with their output paths in writing order."""
        todo, folder = [], self.outputs.folder.resolve()
        for case in cases:
            paths = self.outputs.for_formats(case.case_id, self.options.output_formats)
            done = list(paths.values())[-1]
            existing = next((p for p in paths.values() if p.exists()), None)
            if case.rejected:
                self.add(CaseResult(case.case_id, case.source, "", "rejected", error=case.rejected))
            elif not safe_case_id(case.case_id) or done.resolve().parent != folder:
                why = f"{case.case_id!r}: case id is not a safe file name"
                self.add(CaseResult(case.case_id, case.source, "", "failed", error=why))
            elif done.exists() and self.options.resume:
                self.add(CaseResult(case.case_id, case.source, _joined(paths), "skipped"))
            elif existing is not None and not self.options.overwrite:
                why = f"{existing}: exists; pass --resume to keep it or --overwrite to replace it"
                self.add(CaseResult(case.case_id, case.source, str(existing), "failed", error=why))
            else:
                todo.append((case, paths))
        return todo

    def load(self, case: CaseInput) -> dict:
        """Read and prepare a case (in a background thread), its scan screened against the model's training
        scans as soon as it is read: a warning now, before any window runs; the record's note keeps it."""
        warnings: list[str] = []

        def check(voxels, affine) -> None:
            named = case.source if all(isinstance(p, (str, Path)) for p in case.images) else case.case_id
            strict = self.options.strict
            if warning := screen(self.segmenter.info.training_scans, named, voxels, affine, strict):
                log.warning("warning: %s", warning)
                warnings.append(warning)

        data = self.segmenter.load(case, check)
        data["warnings"] = warnings
        return data

    def segment(self, case: CaseInput, paths: dict[str, Path], loading: Future) -> None:
        """Segment one case and record its result; any failure belongs to this case only."""
        started = time.perf_counter()
        try:
            result = self.outputs_of(case, paths, self.wait(case, loading))
            result.seconds = time.perf_counter() - started
        except Exception as e:  # noqa: BLE001  (isolation: any failure belongs to this case only)
            log.debug("case %s failed", case.case_id, exc_info=True)
            status = "refused" if isinstance(e, ScanRefused) else "failed"
            result = CaseResult(case.case_id, case.source, "", status, time.perf_counter() - started, _one_line(e))
        self.add(result)

    def wait(self, case: CaseInput, loading: Future) -> dict:
        try:
            return loading.result(timeout=self.options.case_timeout)
        except FutureTimeout:
            raise TimeoutError(
                f"{case.source}: reading and preprocessing did not finish within "
                f"{self.options.case_timeout:g} s (--case-timeout)"
            ) from None

    def outputs_of(self, case: CaseInput, paths: dict[str, Path], data: dict) -> CaseResult:
        """Predict, then write every requested output that can be made (the label map last: its presence means
        the case is done) and the case's statistics; a format that cannot be made is named in the note."""
        series, missing = _dicom_source(case, paths)
        if len(missing) == len(paths):  # nothing requested can be made: fail before predicting
            raise ValueError("; ".join(missing.values()))
        labels, probs = self.segmenter.predict(data)
        self.side_outputs(case, data, labels, probs)
        rows = None
        if self.stats_csv is not None or "sr" in paths:  # the SR reports the statistics' figures
            source = data["source_image"]
            rows = label_statistics(labels, np.asarray(source)[0], source.affine, self.segmenter.info.labels)
        notes = [data.get("note", "")]
        if series is not None:
            notes += _write_dicom(labels, series, paths, self.segmenter.info, missing, rows, self.options)
        if len(missing) == len(paths):
            raise ValueError("; ".join(missing.values()))
        if "nifti" in paths:
            io.write_label(labels, data["image"], paths["nifti"])
        if self.stats_csv is not None:  # after the outputs: a failed case has no statistics
            append_rows(self.stats_csv, case.case_id, rows)
        notes += [f"{fmt} not written: {why}" for fmt, why in missing.items()] + data["warnings"]
        made = {fmt: path for fmt, path in paths.items() if fmt not in missing}
        status = "partial" if missing else "ok"
        return CaseResult(case.case_id, case.source, _joined(made), status, note="; ".join(n for n in notes if n))

    def side_outputs(self, case: CaseInput, data: dict, labels: np.ndarray, probs) -> None:
        """The probabilities and the QC picture, where asked for."""
        if self.options.save_probabilities:
            _save_probabilities(probs, self.outputs.probabilities(case.case_id))
        if self.options.qc:
            from volseg.inference.qc import save_qc

            info = self.segmenter.info
            attention = self.segmenter.attention(data) if self.options.qc_attention else None
            title = f"{case.case_id}: {info.name}"
            qc_path = self.outputs.qc(case.case_id)
            save_qc(data["source_image"], labels, qc_path, attention, info.labels, info.label_colors, title)

    def close(self) -> None:
        if self.stats_csv is not None and self.outputs.rank is None:  # a rank's part: rank 0 merges
            write_json(self.stats_csv, self.outputs.statistics_json)


def _dicom_source(case: CaseInput, paths: dict[str, Path]) -> tuple[DicomSeries | None, dict[str, str]]:
    """The DICOM series the requested DICOM outputs will reference, and why each cannot be made (no series)."""
    formats = [fmt for fmt in DICOM_FORMATS if fmt in paths]
    if not formats:
        return None, {}
    try:
        return _series_for_seg(case), {}
    except ValueError as e:
        return None, {fmt: _one_line(e).replace("dicom-seg output", f"{fmt} output") for fmt in formats}


def _write_dicom(
    labels: np.ndarray,
    series: DicomSeries,
    paths: dict[str, Path],
    info,
    missing: dict,
    rows: list[dict] | None,
    options: BatchOptions,
) -> list[str]:
    """Each requested DICOM output of ``labels`` (SEG, its SR of ``rows``, RTSTRUCT); the notes of those written.
    One that cannot be written goes into ``missing`` with why: the others are still written."""
    from volseg.dicom.rtstruct_write import RTStructWriteError, write_rtstruct
    from volseg.dicom.seg import SegError, write_seg
    from volseg.dicom.sr import SrError, write_sr

    def sr(path: Path):
        if "dicom-seg" in missing:
            raise SrError("sr output: the SEG it would reference was not written")
        return write_sr(paths["dicom-seg"], series.files, rows, info.name, path)

    writers = {
        "dicom-seg": (
            SegError,
            lambda path: write_seg(
                labels, series.files, info.labels, info.name, path, info.label_codes, info.label_colors
            ),
        ),
        "sr": (SrError, sr),
        "rtstruct": (
            RTStructWriteError,
            lambda path: write_rtstruct(
                labels, series.files, info.labels, info.name, path, info.label_colors, options.rtstruct_min_area
            ),
        ),
    }
    notes = []
    for fmt, (error, write) in writers.items():
        if fmt not in paths:
            continue
        try:
            written = write(paths[fmt])
        except error as e:  # this output only
            missing[fmt] = str(e)
            continue
        notes.append(written.note and f"{fmt}: {written.note}")
    return notes


def _joined(outputs: dict[str, Path]) -> str:
    return ";".join(str(p) for p in outputs.values())


def _series_for_seg(case: CaseInput) -> DicomSeries:
    """The DICOM series a SEG will reference (a case from an archive, or a manifest row's series folder)."""
    image = case.images[0]
    if isinstance(image, DicomSeries):
        return image
    if len(case.images) == 1 and Path(image).is_dir():
        found, _ = discover_series([image])
        if len(found) == 1:
            return found[0]
    raise ValueError(f"{case.source}: dicom-seg output needs a DICOM series input (this case is not one)")


def _save_probabilities(probs: torch.Tensor, path: Path) -> None:
    """Class probabilities as float16 .npz beside the label map (atomic)."""
    with atomic_path(path, ".npz") as tmp:
        np.savez_compressed(tmp, probabilities=probs.numpy().astype(np.float16))
