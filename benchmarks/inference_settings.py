"""What the inference settings that cost time buy: sliding-window overlap and mirroring TTA, per organ.

Usage: python benchmarks/inference_settings.py (--ct FILE --label FILE | --manifest M [--split test])
                                              [--model abdomen-ct] [--name inference_settings]
Each setting segments the case(s) through ``ZooSegmenter`` (read to labels on the source grid, OpenVINO fp32
on CPU) after a warm-up on the first; its labels are compared per label with the default setting's
(overlap 0.5, no TTA) and with the reference labels (means over the cases; seconds summed).
Writes <name>.json and <name>.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402

SETTINGS = [(0.5, False), (0.25, False), (0.5, True), (0.25, True)]  # the first is the default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path)
    parser.add_argument("--label", type=Path)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default="abdomen-ct")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--name", default="inference_settings")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    made = provenance(__file__)

    from volseg.data.io import read_label
    from volseg.data.manifest import read_manifest
    from volseg.evaluation.metrics import dice_per_label
    from volseg.inference.inputs import CaseInput
    from volseg.inference.zoo_segmenter import ZooSegmenter
    from volseg.pretrained import resolve_model

    if args.manifest:
        pairs = [
            (CaseInput(c.case_id, c.images), c.label) for c in read_manifest(args.manifest) if c.split == args.split
        ]
    else:
        pairs = [(CaseInput("ct", (args.ct,)), args.label)]
    references = [read_label(label)[0].numpy() for _, label in pairs]
    rows, default = [], None
    for overlap, tta in SETTINGS:
        try:
            segmenter = ZooSegmenter(
                resolve_model(args.model), "cpu", overlap=overlap, tta=tta, backend=args.backend, precision="fp32"
            )
        except ValueError as e:  # e.g. a model trained without mirroring has no TTA
            rows.append({"overlap": overlap, "tta": tta, "refused": str(e)})
            continue
        names = segmenter.cfg.data.labels
        segmenter.predict(segmenter.load(pairs[0][0]))  # warm-up: compile the backend for this window shape
        start = time.perf_counter()
        labels = [segmenter.predict(segmenter.load(case))[0] for case, _ in pairs]
        seconds = time.perf_counter() - start
        default = labels if default is None else default

        def mean_dice(ours, others):
            per_case = [dice_per_label(a, b, names) for a, b in zip(ours, others)]
            return {names[v]: float(np.mean([d[v] for d in per_case])) for v in names}

        rows.append(
            {
                "overlap": overlap,
                "tta": tta,
                "seconds": seconds,
                "cases": len(pairs),
                "dice_vs_default": mean_dice(labels, default),
                "dice_vs_reference": mean_dice(labels, references),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    source = str(args.manifest) + f" split {args.split}" if args.manifest else str(args.ct)
    report = {"ct": source, "model": args.model, "backend": args.backend, "rows": rows}
    print(write(args.out, args.name, report, markdown(report), made))


def markdown(report: dict) -> list[str]:
    labels = list(next(r for r in report["rows"] if "refused" not in r)["dice_vs_reference"])
    base = report["rows"][0]["seconds"]
    lines = [
        f"Cases: {report['ct']}; model: {report['model']}, {report['backend']} fp32; seconds from "
        "read to labels on the source grid; Dice per label (" + ", ".join(labels) + ").",
        "",
        "| overlap | mirroring TTA | seconds | time vs default | Dice vs default labels | Dice vs reference |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if "refused" in r:
            lines.append(f"| {r['overlap']} | {'yes' if r['tta'] else 'no'} | refused: {r['refused']} | | | |")
            continue
        fmt = lambda d: " / ".join(f"{d[n]:.4f}" for n in labels)  # noqa: E731
        lines.append(
            f"| {r['overlap']} | {'yes' if r['tta'] else 'no'} | {r['seconds']:.1f} | "
            f"{r['seconds'] / base:.2f}x | {fmt(r['dice_vs_default'])} | {fmt(r['dice_vs_reference'])} |"
        )
    return lines


if __name__ == "__main__":
    main()
