"""Renderers of docs/inference.md: INT8, inference settings, the ROI cascade, archive discovery."""

from __future__ import annotations

import math
import statistics

from doc_pages.sources import (
    INT8_AUTO_BAR,
    ORGAN,
    abdomen_ircadb,
    f4,
    organs,
    pretrained_json,
    result,
    row_of,
    source,
    table,
    times,
)


def int8_table() -> str:
    hip, ct, wv = result("int8"), result("int8_abdomen_ct"), result("whole_volume")

    def agreement(row: dict, names: dict) -> str:
        return ", ".join(
            f"{names.get(k, k)} {f4(row['dice_vs_fp32_mean'][k])} / {f4(row['dice_vs_fp32_min'][k])}"
            for k in row["dice_vs_fp32_mean"]
        )

    def auto(model: str) -> str:
        worst = min(pretrained_json(model, "int8.json")["agreement"]["dice_vs_fp32_min"].values())
        return "int8" if worst >= INT8_AUTO_BAR else "fp32"

    h, c = hip["rows"][0], ct["rows"][0]
    fp32_ircadb, int8_ircadb = abdomen_ircadb("auto"), abdomen_ircadb("int8")
    wv_auto, wv_int8 = row_of("whole_volume", "auto"), row_of("whole_volume", "int8")
    rows = [
        [
            f"{hip['model']} ({hip['cases']} bundled test cases)",
            "x".join(map(str, hip["window"])),
            f"{hip['fp32_window_s'] * 1000:.0f} -> {h['window_s'] * 1000:.0f} ms ({times(h['speedup_vs_fp32'], 1)})",
            agreement(h, {}),
            ", ".join(
                f"{f4(h['dice_vs_reference']['fp32'][k])} -> {f4(h['dice_vs_reference']['int8'][k])}"
                for k in h["dice_vs_reference"]["fp32"]
            ),
            auto("hippocampus-mri"),
        ],
        [
            f"{ct['model']} (IRCADb CT + its training CT)",
            "x".join(map(str, ct["window"])),
            f"{ct['fp32_window_s'] * 1000:.0f} -> {c['window_s'] * 1000:.0f} ms ({times(c['speedup_vs_fp32'], 1)})",
            agreement(c, ORGAN),
            f"IRCADb: {organs(fp32_ircadb)} -> {organs(int8_ircadb)}",
            auto("abdomen-ct"),
        ],
        [
            f"{wv['model']} on the synthetic CT",
            "whole volume",
            f"network {wv_auto['stages']['network']:.1f} -> {wv_int8['stages']['network']:.1f} s",
            f"Dice vs MONAI {f4(wv_auto['dice_vs_monai'])} (fp32) -> {f4(wv_int8['dice_vs_monai'])} (int8)",
            "",
            "",
        ],
    ]
    return (
        table(
            [
                "model (check cases)",
                "window",
                "fp32 -> int8 window",
                "int8 vs fp32 labels, Dice per label: mean / worst",
                "Dice vs reference, fp32 -> int8",
                "`auto`",
            ],
            rows,
        )
        + "\n\n"
        + source("int8", "int8_abdomen_ct", "whole_volume_abdomen_ct", "whole_volume")
        + " `auto`: from each built-in model's `int8.json`."
    )


def int8_keep_fp32() -> str:
    parts = []
    for name in ("int8", "int8_abdomen_ct"):
        d = result(name)
        base = next(r for r in d["rows"] if r["keep_fp32"] == "none")
        kept = next(r for r in d["rows"] if r["keep_fp32"] == "first_last")
        moved = max(abs(kept["dice_vs_fp32_min"][k] - base["dice_vs_fp32_min"][k]) for k in base["dice_vs_fp32_min"])
        slower = base["speedup_vs_fp32"] / kept["speedup_vs_fp32"] - 1
        parts.append(
            f"{d['model']}: the worst case per label moved by"
            f" {'less than 0.0001' if moved < 0.0001 else 'at most ' + f4(moved)}, the window"
            f" {abs(slower):.0%} {'slower' if slower > 0 else 'faster'}"
        )
    return (
        'Keeping the first and last convolution in fp32 (`export_int8(..., keep_fp32=("first_last",))`) was'
        f" measured on both models ({'; '.join(parts)}), so every layer is quantized. "
        + source("int8", "int8_abdomen_ct")
    )


def _windows(size: int, window: int, overlap: float) -> int:
    """Sliding windows along one axis, as MONAI's sliding window places them."""
    if size <= window:
        return 1
    interval = max(int(window * (1 - overlap)), 1)
    return math.ceil((size - window) / interval) + 1


def inference_settings() -> str:
    hip = result("inference_settings")
    ct = result("inference_settings_abdomen_ct")

    def get(d, overlap, tta):
        return next(r for r in d["rows"] if r["overlap"] == overlap and r["tta"] == tta)

    same = all(all(v == 1.0 for v in get(d, 0.25, False)["dice_vs_default"].values()) for d in (hip, ct) if "rows" in d)
    plain, tta = get(hip, 0.5, False), get(hip, 0.5, True)
    gain = statistics.fmean(tta["dice_vs_reference"].values()) - statistics.fmean(plain["dice_vs_reference"].values())
    cropped = row_of("whole_volume_abdomen_ct", "auto")["preprocessed_shape"]
    window = result("int8_abdomen_ct")["window"]
    grids = {
        overlap: "x".join(str(_windows(s, w, overlap)) for s, w in zip(cropped, window, strict=True))
        for overlap in (0.5, 0.25)
    }
    shape = "x".join(map(str, cropped))
    return (
        f"- Overlap 0.5 vs 0.25: {'identical labels' if same else 'different labels'} on both built-in models. A"
        f" hippocampus crop is one window; the IRCADb CT at 3 mm, cropped to the body ({shape} voxels), is"
        f" {grids[0.5]} windows of {'x'.join(map(str, window))} at overlap 0.5 and {grids[0.25]} at 0.25."
        " Overlap matters where a volume spans many windows (the pancreas"
        " model at 1.5 mm: 0.25 is the default).\n"
        f"- Mirroring TTA on {hip['model']} ({tta['cases']} test cases): Dice "
        f"{' / '.join(f4(v) for v in plain['dice_vs_reference'].values())} -> "
        f"{' / '.join(f4(v) for v in tta['dice_vs_reference'].values())} ({gain:+.3f} mean) for"
        f" {tta['seconds'] / plain['seconds']:.1f}x the time. `--tta` mirrors only along the axes the model was"
        " trained mirrored on (as nnU-Net does), and refuses a model trained without mirroring, such as"
        " abdomen-ct, whose left and right kidneys must not be swapped.\n\n"
        + source("inference_settings", "inference_settings_abdomen_ct")
    )


def roi_cascade() -> str:
    d = result("roi_cascade")
    by_ct: dict[str, list[dict]] = {}
    for r in d["rows"]:
        by_ct.setdefault(r["ct"], []).append(r)
    parts = []
    for ct, rows in by_ct.items():
        s = [r["speedup"] for r in rows]
        dice = [r["dice_vs_full"] for r in rows]
        speed = f"{min(s):.1f}x" if f"{min(s):.1f}" == f"{max(s):.1f}" else f"{min(s):.1f}-{max(s):.1f}x"
        parts.append(
            f"on {ct} the cascade runs at {speed} the full-volume run's speed per organ,"
            f" with Dice {min(dice):.3f}-{max(dice):.3f} against the full-volume labels"
        )
    shares = [r["box_share"] for r in d["rows"]]
    held = all(r["box_holds_full"] for r in d["rows"])
    return (
        f"Measured (`benchmarks/roi_cascade.py`, {d['backend']} {d['precision']} for both models, end to end from"
        f" the file; `benchmarks/results/roi_cascade.md`): {'; '.join(parts)}. "
        + ("Every box held every voxel of the full-volume organ. " if held else "")
        + f"The boxes cover {min(shares):.0%}-{max(shares):.0%} of these scans. "
        + source("roi_cascade")
    )


def archive_discovery() -> str:
    d = result("archive_discovery")
    return (
        f"A synthetic {d['files']:,}-file archive ({d['series']} series) is discovered in {d['seconds']:.1f} s"
        f" ({d['files_per_second']:,.0f} files/s, {d['peak_memory_mb']:.0f} MB peak), reading"
        f" {d['bytes_read_per_file'] / 1024:.0f} KB of each {d['file_bytes'] / 1024:.0f} KB file"
        " (`benchmarks/archive_discovery.py`, `benchmarks/results/archive_discovery.md`). "
        + source("archive_discovery")
    )


def rtstruct_bounds() -> str:
    """A speckled label map's RTSTRUCT (benchmarks/rtstruct_bounds.py)."""
    d = result("rtstruct_bounds")
    u = d["unbounded"]
    return (
        f"Measured on the Philips CT (512x512x79) with four organ discs and {d['per_slice']} random islands of 1-20"
        f" voxels per slice and label: the RTSTRUCT is written in {d['seconds']:.1f} s and weighs"
        f" {d['megabytes']:.1f} MB ({d['contours']:,} contours; goal: under 20 MB and 20 s:"
        f" {'met' if d['met'] else 'not met'}); its note: `{d['note']}`. Without a minimum area it would hold"
        f" {u['contours']:,} contours and {u['points']:,} points. " + source("rtstruct_bounds")
    )
