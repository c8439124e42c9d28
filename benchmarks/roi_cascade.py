"""The region-of-interest cascade against the full-volume fine model, per organ, on every CT at hand.

For each CT (the bundled TotalSegmentator CT and its DICOM slab; with ../shared, 3D-IRCADb-01 patient 1
prepared by pipelines/abdomen_ct.py) and each organ of the model: the full-volume run (``ZooSegmenter``, as
``volseg infer``) and the cascade (``RoiSegmenter``, as ``volseg infer --roi ORGAN``) at the same backend
and precision, each timed end to end from the file to the label map in memory, best of ``--repeats``.
Reported: seconds of both, the speed-up, the box's share of the scan, Dice of the organ between the two
label maps, and whether the box holds every voxel of the full-volume organ.

    python benchmarks/roi_cascade.py [--model abdomen-ct] [--backend openvino] [--repeats 3]

Writes roi_cascade.json and roi_cascade.md. The goal (issue 16): >= 10x faster, Dice >= 0.98, box holds it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402


def cts() -> list[tuple[str, Path]]:
    found = [
        ("TotalSegmentator example CT (bundled, its training CT)", REPO / "data" / "abdomen_ct" / "ct.nii.gz"),
        ("TotalSegmentator contrast DICOM slab (bundled)", REPO / "data" / "abdomen_ct" / "ct_dicom"),
    ]
    ircadb = REPO / "runs" / "abdomen_ct" / "ircadb_ct.nii.gz"  # local only: CC BY-NC-ND, never committed
    if ircadb.is_file():
        found.append(("3D-IRCADb-01 patient 1 (local, from ../shared)", ircadb))
    return found


def best_of(repeats: int, fn):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="abdomen-ct")
    parser.add_argument("--locator", type=Path, help="default: locator.pt beside the model")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    made = provenance(__file__)

    from volseg.evaluation.metrics import dice
    from volseg.inference.inputs import CaseInput
    from volseg.inference.roi import RoiSegmenter, locator_beside
    from volseg.inference.zoo_segmenter import ZooSegmenter
    from volseg.pretrained import resolve_model

    model = resolve_model(args.model)
    fine = ZooSegmenter(model, "cpu", backend=args.backend, precision=args.precision)
    locator_path = args.locator or locator_beside(fine.checkpoint)
    if locator_path is None:
        raise SystemExit(f"no locator beside {fine.checkpoint}: train one with pipelines/abdomen_ct.py")
    locator = ZooSegmenter(locator_path, "cpu", backend=args.backend, precision=args.precision)
    rows = []
    for name, path in cts():
        case = CaseInput(path.name, (path,))
        full, full_s = best_of(args.repeats, lambda: fine.predict(fine.load(case))[0])
        for value, organ in fine.cfg.data.labels.items():
            reference = full == value
            if not reference.any():
                continue
            cascade = RoiSegmenter(fine, locator, organ)
            state = {}

            def run():
                data = cascade.load(case)
                labels, _ = cascade.predict(data)
                state.update(data)
                return labels

            labels, roi_s = best_of(args.repeats, run)
            box = state["box"]
            rows.append(
                {
                    "ct": name,
                    "organ": organ,
                    "full_s": round(full_s, 3),
                    "roi_s": round(roi_s, 3),
                    "speedup": round(full_s / roi_s, 2),
                    "box_share": round(box.voxels() / full.size, 3) if box else 1.0,
                    "dice_vs_full": round(dice(labels == value, reference), 4),
                    "box_holds_full": bool(box is not None and box.contains(reference)),
                    "stages": {k: round(v, 3) for k, v in state["timings"].items()},
                }
            )
            print(rows[-1], flush=True)
    result = {
        "model": str(model),
        "locator": str(locator_path),
        "backend": fine.backend,
        "precision": fine.precision,
        "rows": rows,
    }
    lines = [
        "# ROI cascade vs the full-volume fine model",
        "",
        f"`{made['command']}`: {args.model} ({fine.backend} {fine.precision}) with its locator "
        f"({Path(locator_path).name}), each run end to end from the file, best of {args.repeats}.",
        "",
        "| CT | organ | full s | ROI s | speed-up | box share of the scan | Dice vs full | box holds the full-volume organ |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['ct']} | {r['organ']} | {r['full_s']} | {r['roi_s']} | {r['speedup']}x | {r['box_share']} | "
            f"{r['dice_vs_full']} | {'yes' if r['box_holds_full'] else 'no'} |"
            for r in rows
        ],
    ]
    print(write(args.out, "roi_cascade", result, lines, made))


if __name__ == "__main__":
    main()
