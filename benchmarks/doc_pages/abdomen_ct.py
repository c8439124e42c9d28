"""Renderers of docs/abdomen-ct.md: the abdomen-ct model on IRCADb and its engines."""

from __future__ import annotations

from doc_pages.benchmarks import RUN_LABEL
from doc_pages.sources import (
    GOAL_ABDOMEN_CT,
    ORGAN,
    PRETRAINED,
    abdomen_ircadb,
    f2,
    f3,
    f4,
    machine,
    organs,
    result,
    source,
    table,
    times,
    training_record,
)


def abdomen_ct_ircadb() -> str:
    record = training_record(PRETRAINED / "abdomen-ct" / "model.pt")
    fp32 = abdomen_ircadb()
    rows = [
        [
            f"shipped `abdomen-ct` ({record['epochs']} epochs, {record['minutes']:.0f} min of training)",
            *(f"**{f3(fp32[k])}**" for k in ORGAN),
        ],
        ["goal", *(f"{GOAL_ABDOMEN_CT[k]:.2f}" for k in ORGAN)],
    ]
    return (
        table(["trained on the TotalSegmentator CT, scored on IRCADb", *ORGAN.values()], rows)
        + "\n\nSources: `benchmarks/results/whole_volume_abdomen_ct.json` (OpenVINO fp32, window-aligned body crop;"
        f" {machine(result('whole_volume_abdomen_ct')) or 'machine not recorded'}), the checkpoint's training history."
    )


def abdomen_ct_backends() -> str:
    d = result("whole_volume_abdomen_ct")
    rows = [
        [
            RUN_LABEL.get(r["kind"], r["kind"]),
            f"{r['total_s']:.1f}",
            f2(r["stages"]["network"]),
            f2(r["stages"]["invert"]),
            f"{r['peak_memory_mb']:.0f}",
            times(r["speedup_vs_monai"]),
            organs(r["dice_vs_monai_per_label"], f4),
            organs(r["dice_vs_truth_per_label"]),
        ]
        for r in d["rows"]
    ]
    return (
        table(
            [
                "run",
                "total s",
                "network s",
                "invert s",
                "peak MB",
                "speed-up vs MONAI",
                "Dice vs MONAI (liver / spleen / right / left kidney)",
                "Dice vs manual masks",
            ],
            rows,
        )
        + "\n\n"
        + source("whole_volume_abdomen_ct")
    )
