"""``volseg report OUT_DIR``: one offline review page for a batch run, ``OUT_DIR/report/index.html``.

Inputs are what a batch leaves behind: ``volseg_run.csv`` (status, seconds, error per case) and the label
maps it names; optionally reference labels (a manifest or a folder) or a ``volseg evaluate`` CSV for
Dice/HD95. The page (table, flags, thumbnails, NiiVue viewer, keyboard review) is one HTML file that loads
only files beside it. It never carries a source path or a DICOM header field: cases are named by their id,
and error messages have the input's path replaced by ``<input>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np

from volseg.data import io
from volseg.data.case_ids import label_case_id
from volseg.data.manifest import read_manifest
from volseg.errors import VolsegError
from volseg.evaluation.evaluate import Pair, evaluate, summarize
from volseg.files.csv_rows import read_rows
from volseg.inference import label_statistics as statistics
from volseg.inference.outputs import RunOutputs
from volseg.inference.qc import label_colors
from volseg.inference.run_record import RUN_CSV, read_run_csv
from volseg.report import cases as case_files
from volseg.report.flags import case_flags, robust_range
from volseg.report.viewer import NIIVUE_LICENSE, viewer_script

log = logging.getLogger(__name__)
REPORT_DIR = "report"
MAX_SIDE = 160  # voxels per axis of the viewer's copies: 512 x 512 x 300 CT -> 128 x 128 x 150
_DICOM_SOURCE = re.compile(r"(.*) \(SeriesInstanceUID (.*), \d+ files\)")
SEGMENTED = ("ok", "partial")  # statuses with a label map to show (partial: another requested output is missing)


@dataclass
class CaseEntry:
    id: str
    status: str
    seconds: float
    error: str = ""
    volumes: dict[int, float] = field(default_factory=dict)  # label value -> mL
    border: set[int] = field(default_factory=set)
    dice: dict[int, float] = field(default_factory=dict)
    hd95: dict[int, float] = field(default_factory=dict)
    flags: list[dict] = field(default_factory=list)
    thumb: str | None = None
    data: str | None = None
    qc: str | None = None
    label_path: Path | None = None
    note: str = ""  # why the viewer copy is missing or partial
    missing: str = ""  # a partial case: the run record's note (which requested output was not written, why)


def build_report(
    run_dir: str | Path,
    labels: dict[int, str] | None = None,
    colors: dict[int, str] | None = None,
    reference: str | Path | None = None,
    evaluation: str | Path | None = None,
    max_side: int = MAX_SIDE,
    on_case: Callable[[str], None] | None = None,
) -> Path:
    """Write ``run_dir/report/`` (built beside it, then swapped in: never half-written) and return index.html.

    ``labels`` names the label values (default: the names in statistics.csv, else ``label_N``); ``reference``
    is a manifest CSV or a folder of reference label maps (shown in the viewer, and scored unless
    ``evaluation`` is given); ``evaluation`` a ``volseg evaluate`` CSV (default: ``run_dir/metrics.csv``
    when present and no reference is given).
    """
    run_dir = Path(run_dir)
    rows = _reported_rows(run_dir)
    names = labels or _statistics_names(run_dir / statistics.STATISTICS_CSV)
    references = _reference_paths(reference) if reference else {}
    if evaluation is None and reference is None and (run_dir / "metrics.csv").is_file():
        evaluation = run_dir / "metrics.csv"
    final, work = run_dir / REPORT_DIR, run_dir / f".{REPORT_DIR}.partial"
    shutil.rmtree(work, ignore_errors=True)
    (work / "cases").mkdir(parents=True)
    entries, found_values = [], set(names)
    for row in sorted(rows, key=lambda r: r["case_id"]):
        entry = _entry(row)
        if entry.status in SEGMENTED:
            found_values |= _add_case_files(
                entry, row, run_dir, work, names, colors, references.get(entry.id), max_side
            )
        entries.append(entry)
        on_case and on_case(entry.id)
    names = {v: names.get(v, f"label_{v}") for v in sorted(found_values)}
    metric_rows = read_rows(evaluation) if evaluation else _metrics(entries, references, names) if references else []
    _score(entries, metric_rows)
    ranges = _flag(entries, names)
    palette = label_colors(names, colors)
    viewer = viewer_script()  # 2.3 MB, read and checked once
    report = {
        "id": hashlib.sha256(f"{run_dir.resolve()}|{','.join(e.id for e in entries)}".encode()).hexdigest()[:16],
        "title": run_dir.resolve().name,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "labels": [{"value": v, "name": n, "color": palette[v]} for v, n in names.items()],
        "ranges": {str(v): r for v, r in ranges.items()},
        "cases": [_case_json(e) for e in entries],
        "evaluation": _summary_json(metric_rows, names) if metric_rows else None,
        "viewer": viewer is not None,
    }
    (work / "index.html").write_text(_page(report, viewer or ""), encoding="utf-8")
    _swap_in(work, final)
    return final / "index.html"


def _reported_rows(run_dir: Path) -> list[dict]:
    """The run record's cases, rejected series left out."""
    record = run_dir / RUN_CSV
    if not record.is_file():
        raise FileNotFoundError(
            f"{record}: no run record; segment into this folder with `volseg infer -o {run_dir}` first"
        )
    rows = [r for r in read_run_csv(record).values() if r["status"] != "rejected"]
    if not rows:
        raise VolsegError(f"{record}: no case to report (every series was rejected)")
    return rows


def _entry(row: dict) -> CaseEntry:
    entry = CaseEntry(
        row["case_id"],
        "ok" if row["status"] == "skipped" else row["status"],
        float(row["seconds"] or 0),
        _without_paths(row["error"], row["input"]),
    )
    if entry.status == "partial":
        entry.missing = _without_paths(row.get("note", ""), row["input"])
    return entry


def _score(entries: list[CaseEntry], metric_rows: list[dict]) -> None:
    """Dice and HD95 per case and label; a label the reference lacks scores none (both empty would read as a
    perfect 1)."""
    by_id = {e.id: e for e in entries}
    for r in metric_rows:
        entry = by_id.get(r["case_id"])
        if entry is not None and entry.status in SEGMENTED and float(r["volume_ref_ml"]) > 0:
            entry.dice[int(r["value"])], entry.hd95[int(r["value"])] = float(r["dice"]), float(r["hd95"])


def _flag(entries: list[CaseEntry], names: dict[int, str]) -> dict:
    """Each case's flags, against the batch's robust volume range per label (returned)."""
    ok = [e for e in entries if e.status in SEGMENTED]
    ranges = {v: robust_range([e.volumes.get(v, 0.0) for e in ok]) for v in names}
    for e in entries:
        e.flags = case_flags(e.status, e.error, e.volumes, e.border, ranges, names)
        if e.status == "partial":
            e.flags.insert(0, {"kind": "partial", "label": None, "text": f"partial: {e.missing}"})
        if e.status in SEGMENTED and e.note:
            e.flags.append({"kind": "viewer", "label": None, "text": e.note})
    return ranges


def _swap_in(work: Path, final: Path) -> None:
    """The page built in ``work`` replaces ``final`` whole: a reader never sees half of either."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        work.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(final)


def _add_case_files(
    entry: CaseEntry,
    row: dict,
    run_dir: Path,
    work: Path,
    names: dict[int, str],
    colors: dict[int, str] | None,
    reference: Path | None,
    max_side: int,
) -> set[int]:
    """Volumes, border contact, thumbnail and viewer script of one segmented case; the label values found."""
    label_path = _label_output(row, run_dir)
    if not label_path.is_file():  # a run that wrote DICOM SEG only, or a folder whose label maps were moved
        entry.note = "no NIfTI label map beside the run record: nothing to measure or show"
        return set()
    try:
        label_image = io.read_label(label_path)
    except (io.ImageReadError, ValueError, OSError) as e:
        entry.status, entry.error = "failed", _without_paths(f"label map unreadable: {e}", row["input"])
        return set()
    entry.label_path = label_path
    labels = case_files.Volume(np.asarray(label_image[0]).astype(np.int64), np.asarray(label_image.affine, float))
    ml = statistics.voxel_ml(labels.affine)
    values = {int(v) for v in np.unique(labels.array) if v != 0}
    for value in sorted(values | set(names)):
        mask = labels.array == value
        entry.volumes[value] = round(float(mask.sum()) * ml, 3)
        if mask.any() and statistics.touches_border(mask):
            entry.border.add(value)
    image = _source_image(row["input"])
    if image is None:
        entry.note = "scan not readable from the run record's input: labels shown alone"
    ref = None
    if reference is not None:
        try:
            ref_image = io.read_label(reference)
            ref = case_files.Volume(np.asarray(ref_image[0]).astype(np.int64), np.asarray(ref_image.affine, float))
        except (io.ImageReadError, ValueError, OSError) as e:
            entry.note = _without_paths(f"reference unreadable: {e}", str(reference))
    case_files.write_thumbnail(
        work / "thumbs" / f"{entry.id}.png", image, labels, label_colors(values | set(names), colors)
    )
    case_files.write_case_script(work / "cases" / f"{entry.id}.js", entry.id, image, labels, ref, max_side)
    entry.thumb, entry.data = f"thumbs/{entry.id}.png", f"cases/{entry.id}.js"
    qc = RunOutputs(run_dir).qc(entry.id)
    if qc.is_file():
        entry.qc = f"../{qc.name}"
    return values


def _label_output(row: dict, run_dir: Path) -> Path:
    """The NIfTI the record names (found beside the record when the folder was moved)."""
    path = next((Path(p) for p in row["output"].split(";") if p.endswith((".nii.gz", ".nii"))), None)
    if path is None:
        return RunOutputs(run_dir).label_map(row["case_id"])
    return path if path.is_file() else run_dir / path.name


def _source_image(source: str) -> case_files.Volume | None:
    """The scan the record's input column points at (first channel), or None when it cannot be read now."""
    match = _DICOM_SOURCE.fullmatch(source)
    try:
        if match:
            image = io.read_image(match[1], series_uid=None if match[2] == "<empty>" else match[2])
        else:
            image = io.read_image(source.split(";")[0])
    except (io.ImageReadError, ValueError, OSError, RuntimeError) as e:
        log.debug("report: scan unreadable (%s)", e)
        return None
    return case_files.Volume(np.asarray(image[0], dtype=np.float32), np.asarray(image.affine, float))


def _without_paths(text: str, source: str) -> str:
    """An error message with the input's path(s) replaced: folder names of archives may hold patient names."""
    match = _DICOM_SOURCE.fullmatch(source)
    parts = [match[1]] if match else [p for p in source.split(";") if p]
    for part in sorted(parts, key=len, reverse=True):
        text = text.replace(part, "<input>")
    return text


def _statistics_names(path: Path) -> dict[int, str]:
    if not path.is_file():
        return {}
    return {int(r["label"]): r["name"] for r in read_rows(path)}


def _reference_paths(reference: str | Path) -> dict[str, Path]:
    """case id -> reference label map, from a manifest CSV or a folder (``<case_id>[_seg].nii.gz``)."""
    reference = Path(reference)
    if reference.suffix.lower() == ".csv":
        return {c.case_id: c.label for c in read_manifest(reference) if c.label is not None}
    if not reference.is_dir():
        raise FileNotFoundError(f"{reference}: reference labels must be a manifest CSV or a folder")
    return {label_case_id(p): p for p in sorted(reference.glob("*.nii*"))}


def _metrics(entries: list[CaseEntry], references: dict[str, Path], names: dict[int, str]) -> list[dict]:
    pairs = [
        Pair(e.id, e.label_path, references[e.id])
        for e in entries
        if e.status in SEGMENTED and e.label_path is not None and e.id in references
    ]
    rows, errors = evaluate(pairs, names)
    for error in errors:
        log.warning("report: %s", error)
    return rows


def _finite(x: float) -> float | None:
    return round(x, 4) if x is not None and math.isfinite(x) else None


def _case_json(e: CaseEntry) -> dict:
    return {
        "id": e.id,
        "status": e.status,
        "seconds": round(e.seconds, 2),
        "error": e.error,
        "volumes": {str(v): ml for v, ml in e.volumes.items()},
        "dice": {str(v): _finite(x) for v, x in e.dice.items()},
        "hd95": {str(v): _finite(x) for v, x in e.hd95.items()},
        "flags": e.flags,
        "thumb": e.thumb,
        "data": e.data,
        "qc": e.qc,
    }


def _summary_json(rows: list[dict], names: dict[int, str]) -> dict:
    """Per label: Dice and HD95 mean/median/std over the cases where the reference has the label."""
    typed = [
        {**r, **{m: float(r[m]) for m in ("dice", "hd95", "msd", "volume_pred_ml", "volume_ref_ml")}} for r in rows
    ]
    summary = summarize([r for r in typed if r["volume_ref_ml"] > 0])
    return {
        label: {
            metric: {k: _finite(v) if isinstance(v, float) else v for k, v in stats.items()}
            for metric, stats in metrics.items()
            if metric in ("dice", "hd95")
        }
        for label, metrics in summary.items()
    }


def _page(report: dict, viewer: str) -> str:
    """index.html: the template with its style, script, data and the viewer (empty: none) inlined."""
    folder = resources.files("volseg.report")
    parts = {
        "/*STYLE*/": folder.joinpath("page.css").read_text(encoding="utf-8"),
        "/*REPORT*/": json.dumps(report, separators=(",", ":")).replace("</", "<\\/"),
        "/*APP*/": folder.joinpath("page.js").read_text(encoding="utf-8"),
        "/*VIEWER*/": viewer,
        "<!--LICENSE-->": NIIVUE_LICENSE if viewer else "",
    }
    template = folder.joinpath("page.html").read_text(encoding="utf-8")
    return re.sub("|".join(re.escape(k) for k in parts), lambda m: parts[m.group(0)], template)
