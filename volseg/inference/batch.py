"""The batch runner every model family shares: segment cases, writing each label map on its scan's own grid.

A :class:`~volseg.inference.segmenter.CaseSegmenter` (a zoo model, an ROI cascade, an nnU-Net or TotalSegmentator
folder) segments one case at a time; :func:`run_batch` runs a cohort with per-case isolation (a failure is recorded and the batch goes on), atomic outputs, ``--resume``, a
deterministic split across machines, and a ``volseg_run.csv`` record. Reading and preprocessing the next
case overlaps with predicting the current one.
"""

from __future__ import annotations

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
from volseg.inference.outputs import RunOutputs
from volseg.inference.run_record import RunRecord
from volseg.inference.segmenter import CaseSegmenter

log = logging.getLogger(__name__)
OUTPUT_FORMATS = ("nifti", "dicom-seg", "rtstruct")


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
    from volseg.inference import label_statistics as statistics

    unknown = set(options.output_formats) - set(OUTPUT_FORMATS)
    if unknown or not options.output_formats:
        raise VolsegError(
            f"output formats must be some of {', '.join(OUTPUT_FORMATS)}, got {','.join(options.output_formats)}"
        )
    run = outputs
    out_dir = run.folder
    out_dir.mkdir(parents=True, exist_ok=True)
    stats_csv = run.statistics_csv if options.statistics else None
    if stats_csv is not None and not options.resume:
        stats_csv.unlink(missing_ok=True)
    record = RunRecord(run.run_record, keep=options.resume) if run.run_record is not None else None
    results: list[CaseResult] = []
    todo: list[tuple[CaseInput, dict[str, Path]]] = []
    for case in cases:
        outputs = run.for_formats(case.case_id, options.output_formats)
        done = list(outputs.values())[-1]
        if case.rejected:
            results.append(CaseResult(case.case_id, case.source, "", "rejected", error=case.rejected))
        elif not safe_case_id(case.case_id) or done.resolve().parent != out_dir.resolve():
            results.append(
                CaseResult(
                    case.case_id, case.source, "", "failed", error=f"{case.case_id!r}: case id is not a safe file name"
                )
            )
        elif done.exists() and options.resume:
            results.append(CaseResult(case.case_id, case.source, _joined(outputs), "skipped"))
        elif any(p.exists() for p in outputs.values()) and not options.overwrite:
            existing = next(p for p in outputs.values() if p.exists())
            results.append(
                CaseResult(
                    case.case_id,
                    case.source,
                    str(existing),
                    "failed",
                    error=f"{existing}: exists; pass --resume to keep it or --overwrite to replace it",
                )
            )
        else:
            todo.append((case, outputs))
    for r in results:
        record and record.add(r)
        on_case and on_case(r)

    def load(case: CaseInput) -> dict:
        warnings: list[str] = []

        def check(voxels, affine) -> None:
            named = case.source if all(isinstance(p, (str, Path)) for p in case.images) else case.case_id
            if warning := screen(segmenter.info.training_scans, named, voxels, affine, options.strict):
                log.warning("warning: %s", warning)  # now, before any window runs; the record's note keeps it
                warnings.append(warning)

        data = segmenter.load(case, check)
        data["warnings"] = warnings
        return data

    pending = _in_background(load, todo[0][0]) if todo else None
    for i, (case, outputs) in enumerate(todo):
        started = time.perf_counter()
        current, pending = pending, _in_background(load, todo[i + 1][0]) if i + 1 < len(todo) else None
        try:
            try:
                data = current.result(timeout=options.case_timeout)
            except FutureTimeout:
                raise TimeoutError(
                    f"{case.source}: reading and preprocessing did not finish within "
                    f"{options.case_timeout:g} s (--case-timeout)"
                ) from None
            missing: dict[str, str] = {}  # requested format -> why it cannot be made from this input
            series = None
            dicom_formats = [fmt for fmt in ("dicom-seg", "rtstruct") if fmt in outputs]
            if dicom_formats:
                try:
                    series = _series_for_seg(case)
                except ValueError as e:
                    for fmt in dicom_formats:
                        missing[fmt] = _one_line(e).replace("dicom-seg output", f"{fmt} output")
            if len(missing) == len(outputs):  # nothing requested can be made: fail before predicting
                raise ValueError("; ".join(missing.values()))
            labels, probs = segmenter.predict(data)
            if options.save_probabilities:
                _save_probabilities(probs, run.probabilities(case.case_id))
            if options.qc:
                from volseg.inference.qc import save_qc

                attention = segmenter.attention(data) if options.qc_attention else None
                info = segmenter.info
                save_qc(
                    data["source_image"],
                    labels,
                    run.qc(case.case_id),
                    attention,
                    info.labels,
                    info.label_colors,
                    f"{case.case_id}: {info.name}",
                )
            notes = [data.get("note", "")]
            if series is not None and "dicom-seg" in outputs:
                from volseg.dicom.seg import SegError, write_seg

                info = segmenter.info
                try:
                    written = write_seg(
                        labels, series.files, info.labels, info.name, outputs["dicom-seg"], info.label_codes
                    )
                    notes.append(written.note and f"dicom-seg: {written.note}")
                except SegError as e:  # this output only: the others are still written
                    missing["dicom-seg"] = str(e)
            if series is not None and "rtstruct" in outputs:
                from volseg.dicom.rtstruct_write import RTStructWriteError, write_rtstruct

                info = segmenter.info
                try:
                    written = write_rtstruct(
                        labels, series.files, info.labels, info.name, outputs["rtstruct"], info.label_colors
                    )
                    notes.append(written.note and f"rtstruct: {written.note}")
                except RTStructWriteError as e:  # this output only, as for the SEG
                    missing["rtstruct"] = str(e)
            if len(missing) == len(outputs):
                raise ValueError("; ".join(missing.values()))
            if "nifti" in outputs:
                io.write_label(labels, data["image"], outputs["nifti"])  # last: its presence means the case is done
            if stats_csv is not None:  # after the outputs: a failed case has no statistics
                source = data["source_image"]
                statistics.append_rows(
                    stats_csv,
                    case.case_id,
                    statistics.label_statistics(labels, np.asarray(source)[0], source.affine, segmenter.info.labels),
                )
            notes += [f"{fmt} not written: {why}" for fmt, why in missing.items()] + data["warnings"]
            made = {fmt: path for fmt, path in outputs.items() if fmt not in missing}
            result = CaseResult(
                case.case_id,
                case.source,
                _joined(made),
                "partial" if missing else "ok",
                time.perf_counter() - started,
                note="; ".join(n for n in notes if n),
            )
        except Exception as e:  # noqa: BLE001  (isolation: any failure belongs to this case only)
            log.debug("case %s failed", case.case_id, exc_info=True)
            status = "refused" if isinstance(e, ScanRefused) else "failed"
            result = CaseResult(case.case_id, case.source, "", status, time.perf_counter() - started, _one_line(e))
        results.append(result)
        record and record.add(result)
        on_case and on_case(result)
    if stats_csv is not None and run.rank is None:  # a rank's part: rank 0 merges
        statistics.write_json(stats_csv, run.statistics_json)
    return results


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
