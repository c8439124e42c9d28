"""Issue 44, acceptance 5: an RTSTRUCT of a speckled label map stays small and quick to write, and the islands it
leaves out are counted.

    python benchmarks/rtstruct_bounds.py [--per-slice 120]

The TCIA Philips planning CT (``../shared/data/tcia_pancreatic_ct_cbct_seg_cb001/planning_ct``, 512x512x79)
with four organ-sized discs and, in every slice, ``--per-slice`` random islands of 1-20 voxels of each label
(``tests/test_rtstruct_write.py``'s ``speckled``: what a model on the wrong scan or an early checkpoint gives).
``volseg.dicom.rtstruct_write.write_rtstruct`` at the default ``--rtstruct-min-area`` (seconds, MB, contours,
what was left out), and without a minimum (its contours and points against the limits). Goals: under 20 MB and
20 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pydicom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402

SHARED = Path(os.environ.get("VOLSEG_SHARED", REPO.parent / "shared"))
PHILIPS = SHARED / "data/tcia_pancreatic_ct_cbct_seg_cb001/planning_ct"
NAMES = {1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left"}
GOAL_MB, GOAL_SECONDS = 20, 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-slice", type=int, default=120)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    made = provenance(__file__)
    from tests.test_rtstruct_write import speckled
    from volseg.dicom import rtstruct_write
    from volseg.dicom.archive import discover_series

    if not PHILIPS.is_dir():
        raise SystemExit(f"{PHILIPS} not found: the Philips CT is outside the repository")
    (series,) = discover_series([PHILIPS])[0]
    labels = speckled((512, 512, len(series.files)), args.per_slice)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speckled.dcm"
        started = time.perf_counter()
        written = rtstruct_write.write_rtstruct(labels, series.files, NAMES, "speckled", path)
        seconds = time.perf_counter() - started
        ds = pydicom.dcmread(path)
        contours = sum(len(getattr(item, "ContourSequence", [])) for item in ds.ROIContourSequence)
        megabytes = path.stat().st_size / 2**20
    outlines = {v: rtstruct_write._outlines(labels == v) for v in NAMES}  # no minimum: what would be written
    unbounded = {
        "contours": sum(len(v) for v in outlines.values()),
        "points": sum(len(o) for v in outlines.values() for _, o in v),
    }
    result = {
        "per_slice": args.per_slice,
        "min_area_mm2": rtstruct_write.MIN_AREA_MM2,
        "seconds": round(seconds, 1),
        "megabytes": round(megabytes, 1),
        "contours": contours,
        "note": written.note,
        "unbounded": unbounded,
        "limits": {"contours": rtstruct_write.MAX_CONTOURS, "points": rtstruct_write.MAX_POINTS},
        "met": megabytes < GOAL_MB and seconds < GOAL_SECONDS,
    }
    lines = [
        "# RTSTRUCT of a speckled label map (the Philips CT, 512x512x79)",
        "",
        f"{args.per_slice} islands of 1-20 voxels per slice and label, four labels; default --rtstruct-min-area "
        f"{rtstruct_write.MIN_AREA_MM2:g} mm².",
        "",
        "| seconds | MB | contours | left out | without a minimum | goal (< 20 MB, < 20 s) |",
        "|---|---|---|---|---|---|",
        f"| {result['seconds']} | {result['megabytes']} | {contours:,} | {written.note} | {unbounded['contours']:,} "
        f"contours, {unbounded['points']:,} points | {'met' if result['met'] else 'not met'} |",
    ]
    print(write(args.out, "rtstruct_bounds", result, lines, made))


if __name__ == "__main__":
    main()
