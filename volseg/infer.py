"""Inference: segment scans with a trained model, writing each label map on its scan's own grid.

:class:`Segmenter` loads the model once and segments one case; :func:`run_batch` runs a cohort with
per-case isolation (a failure is recorded and the batch goes on), atomic outputs, ``--resume``, a
deterministic split across machines, and a ``volseg_run.csv`` record. Reading and preprocessing the next
case overlaps with predicting the current one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from volseg.atomic import atomic_path
from volseg.backends import make_backend
from volseg.csv_rows import append_durably, read_rows
from volseg.data import io
from volseg.data.dicom_archive import DicomSeries, discover_series
from volseg.data.manifest import safe_case_id
from volseg.distributed import resolve_device
from volseg.errors import VolsegError
from volseg.inputs import CaseInput
from volseg.midline import split_at_midline
from volseg.outputs import RunOutputs
from volseg.predict import (
    attention_network,
    mirror_axes,
    predict_probabilities,
    probabilities_to_labels,
)
from volseg.run_record import RUN_COLUMNS
from volseg.scan_screen import ScanRefused, read_training_scans, screen
from volseg.segmenting import CaseSegmenter, ModelInfo, ScanCheck

log = logging.getLogger(__name__)
OUTPUT_FORMATS = ("nifti", "dicom-seg", "rtstruct")


def keep_largest_component(labels: np.ndarray, values: Iterable[int]) -> np.ndarray:
    """Per label, keep only its largest 26-connected component (removes stray false positives)."""
    from scipy import ndimage

    out = labels.copy()
    for value in values:
        components, n = ndimage.label(labels == value, structure=np.ones((3, 3, 3)))
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    return out


class Segmenter:
    """A loaded model plus the preprocessing it was trained with; segments one case at a time."""

    def __init__(
        self,
        model_path: str | Path,
        device: str = "auto",
        overlap: float = 0.5,
        tta: bool = False,
        keep_largest: bool = False,
        backend: str = "torch",
        precision: str = "fp32",
    ):
        # MONAI (volseg.checkpoint, volseg.data.transforms) is imported by volseg's own models only: nnU-Net
        # folders run without it, and its import is 2.5 s of a single case's start-up
        from volseg.checkpoint import load_checkpoint, load_model
        from volseg.data.transforms import LoadCased, preprocess

        self.device = resolve_device(device)
        self.model, self.cfg, self.checkpoint = load_model(model_path, self.device)
        self.training_scans = read_training_scans(load_checkpoint(self.checkpoint), self.checkpoint)
        path = Path(model_path)
        self.model_name = path.parent.name if path.name in ("model.pt", "best.pt", "last.pt") else path.stem
        engine = make_backend(backend, self.model, self.cfg, self.device, self.checkpoint, precision)
        self.backend, self.precision = engine.name, engine.precision
        self.network = engine.forward  # logits: predict_probabilities blends them, then activates
        self.batch_size = engine.window_batch if self.cfg.model.dims == 3 else None
        self.reader = LoadCased(self.cfg.data.label_remap, self.cfg)
        self.chain = preprocess(self.cfg, window_overlap=overlap)
        if tta and not mirror_axes(self.cfg):
            raise VolsegError(
                f"--tta: {self.checkpoint} was trained without mirroring (augment.flip: false), so "
                "it has no mirror images to average; run without --tta"
            )
        self.overlap, self.tta, self.keep_largest = overlap, tta, keep_largest
        self.label_values = sorted(self.cfg.data.labels)

    @property
    def info(self) -> ModelInfo:
        data = self.cfg.data
        return ModelInfo(
            self.model_name,
            Path(self.checkpoint),
            f"{self.cfg.model.name} {self.cfg.model.dims}D",
            dict(data.labels),
            data.modality,
            data.label_colors,
            data.label_codes,
            self.training_scans,
        )

    def read(self, case: CaseInput) -> dict:
        """The case's scan as read (``{"image": (C, X, Y, Z)}`` on its source grid), nothing preprocessed."""
        return self.reader({"image": [p if isinstance(p, DicomSeries) else str(p) for p in case.images]})

    def load(self, case: CaseInput, check: ScanCheck | None = None) -> dict:
        """Read and preprocess (the part that overlaps with the previous case's prediction). ``source_image``
        keeps the scan as read, for statistics and QC pictures (preprocessing may work in place);
        ``timings`` collects the case's seconds per stage (read, preprocess, then :meth:`predict`'s).
        ``check`` sees the scan as read, before any preprocessing (see :mod:`volseg.scan_screen`)."""
        started = time.perf_counter()
        raw = self.read(case)
        if check is not None:
            check(raw["image"].numpy(), raw["image"].meta["original_affine"])
        source = raw["image"].clone()
        read = time.perf_counter()
        data = self.chain(raw)
        data["source_image"] = source
        data["timings"] = {"read": read - started, "preprocess": time.perf_counter() - read}
        return data

    def predict(self, data: dict, split_sides: bool = True) -> tuple[np.ndarray, torch.Tensor]:
        """Label map (X, Y, Z) on the source grid, and the class probabilities on that grid. Adds network,
        stitching (the sliding window's own work), invert and postprocess seconds to ``data["timings"]``
        (on CUDA, network time is launch time: kernels run asynchronously). ``split_sides``: apply the
        config's ``data.split_at_midline`` (off for a part of a scan, whose midline is not the body's)."""
        from volseg.data.transforms import to_source_grid

        image = data["image"]
        timings = data.setdefault("timings", {})
        network_seconds = 0.0

        def network(x: torch.Tensor) -> torch.Tensor:
            nonlocal network_seconds
            start = time.perf_counter()
            out = self.network(x)
            network_seconds += time.perf_counter() - start
            return out

        started = time.perf_counter()
        probs = predict_probabilities(
            self.model,
            image,
            self.cfg,
            self.device,
            overlap=self.overlap,
            tta=self.tta,
            batch_size=self.batch_size,
            network=network,
        )
        windows = time.perf_counter()
        probs = to_source_grid(probs, image, self.chain)
        inverted = time.perf_counter()
        classes = probabilities_to_labels(torch.as_tensor(probs)).numpy()
        lookup = np.array([0, *self.label_values], dtype=np.int64)  # class index -> label value
        labels = lookup[classes] if probs.shape[0] > 1 else np.where(classes > 0, self.label_values[0], 0)
        if split_sides and self.cfg.data.split_at_midline:
            labels = self.split_sides(labels, data["source_image"])
        if self.keep_largest:
            labels = keep_largest_component(labels, self.label_values)
        timings.update(
            network=network_seconds,
            stitching=windows - started - network_seconds,
            invert=inverted - windows,
            postprocess=time.perf_counter() - inverted,
        )
        return labels, torch.as_tensor(probs)

    def split_sides(self, labels: np.ndarray, source) -> np.ndarray:
        """``data.split_at_midline`` applied to a label map on the grid of ``source`` (the scan as read)."""
        from volseg.data.transforms import body_mask_fn

        if not self.cfg.data.split_at_midline:
            return labels
        return split_at_midline(
            labels,
            source[0].numpy(),
            np.asarray(source.meta["original_affine"]),
            self.cfg.data.split_at_midline,
            body_mask_fn(self.cfg),
        )

    def attention(self, data: dict) -> np.ndarray:
        """The first attention gate's map (X, Y, Z) on the source grid (attention models only)."""
        from volseg.data.transforms import to_source_grid

        image = data["image"]
        maps = predict_probabilities(
            self.model,
            image,
            self.cfg,
            self.device,
            overlap=self.overlap,
            network=attention_network(self.model),
            activation=None,
        )
        return to_source_grid(maps, image, self.chain)[0].numpy()


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


class RunRecord:
    """``volseg_run.csv``, append-only: each result is one line, flushed and fsync'd as the case ends, so
    the file is valid after a SIGKILL at any moment (a torn last line is cut off when it is reopened) and
    a 10,000-case batch writes 10,000 lines, not 50 million. ``--resume`` keeps the rows of earlier runs
    and adds none for a case already recorded as done; the last row of a case is its state."""

    def __init__(self, path: Path, keep: bool) -> None:
        self.path = path
        self.done: set[str] = set()
        if keep and path.exists():
            _cut_torn_line(path)
            self.done = {row["case_id"] for row in read_rows(path) if row.get("status") in ("ok", "partial", "skipped")}
        else:
            path.unlink(missing_ok=True)

    def add(self, result: CaseResult) -> None:
        if result.status == "skipped" and result.case_id in self.done:
            return
        append_durably(self.path, RUN_COLUMNS, [{**asdict(result), "seconds": f"{result.seconds:.2f}"}])


def _cut_torn_line(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


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
    from volseg import statistics

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
                from volseg.qc import save_qc

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
                from volseg.dicom_seg import SegError, write_seg

                info = segmenter.info
                try:
                    written = write_seg(
                        labels, series.files, info.labels, info.name, outputs["dicom-seg"], info.label_codes
                    )
                    notes.append(written.note and f"dicom-seg: {written.note}")
                except SegError as e:  # this output only: the others are still written
                    missing["dicom-seg"] = str(e)
            if series is not None and "rtstruct" in outputs:
                from volseg.dicom_rtstruct import RTStructWriteError, write_rtstruct

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
