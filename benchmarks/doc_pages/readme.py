"""Renderers of README.md: the demo's figure and the results at a glance."""

from __future__ import annotations

from doc_pages.slicer import readme_row
from doc_pages.sources import (
    GOAL_ABDOMEN_CT,
    GOAL_WHOLE_VOLUME_FASTEST,
    GOAL_WHOLE_VOLUME_FP32,
    ORGAN,
    _number,
    abdomen_ircadb,
    f3,
    f4,
    hippocampus,
    machine,
    nnunet_runs,
    result,
    row_of,
    study,
    table,
    times,
)


def readme_demo() -> str:
    h = hippocampus()
    a, p = h["int8"]["anterior"], h["int8"]["posterior"]
    return (
        f"On the 10 bundled test cases the shipped model's int8 twin scores a mean Dice of **{f4(h['int8_mean'])}**"
        f" (anterior {f4(a)}, posterior {f4(p)}) and the fp32 model {f4(h['fp32_mean'])}"
        " (`volseg/pretrained/hippocampus-mri/int8.json`)."
    )


def readme_results() -> str:
    h = hippocampus()
    budget = {r["recipe"].split()[0]: r for r in result("nnunet_budget")["rows"]}
    vs, nn = budget["volseg"], budget["nnU-Net"]
    ircadb = abdomen_ircadb()
    missed = [ORGAN[k] for k in ORGAN if ircadb[k] < GOAL_ABDOMEN_CT[k]]
    parity = result("nnunet_parity")
    identical = sum(1 for r in parity["rows"] if r["differ"] == 0)
    speed = nnunet_runs()
    (time_name, time_rows), (epoch_name, epoch_rows) = study("Equal time"), study("Equal epochs")
    wv_auto, wv_int8 = row_of("whole_volume", "auto"), row_of("whole_volume", "int8")
    by_size = sorted(result("batch_scale")["rows"], key=lambda r: r["cases"])
    small, large = by_size[0], by_size[-1]
    int8 = result("int8")["rows"][0]
    worst_int8 = min(int8["dice_vs_fp32_min"].values())

    def speedup(row: dict) -> str:
        return times(row["nnunet_seconds"] / row["record"]["seconds"])

    def ranking(rows: list[dict], k: int) -> str:
        return ", ".join(f"{e['mode']} {e['model']} {f4(e['dice'])}" for e in rows[:k])

    rows = [
        [
            f"`hippocampus-mri`, the default model: 3D U-Net on MSD Task04 (176 train / 44 val), epoch {h['epoch']}"
            f" after {h['minutes']:.0f} min of CPU training",
            f"best val Dice **{f4(h['best_dice'])}**; test Dice **{f4(h['fp32_mean'])}** on the 10 bundled cases",
            "[training](docs/training.md#results)",
        ],
        [
            f"volseg vs nnU-Net v2's default recipe, same split, same {result('nnunet_budget')['minutes']:.0f}"
            " CPU-minutes and epoch rule",
            f"test Dice volseg **{f4(vs['test_dice']['mean'])}**, nnU-Net {f4(nn['test_dice']['mean'])}"
            f" (with its TTA); val {f3(vs['val_dice'])} vs {f3(nn['val_dice'])}",
            "[training](docs/training.md#volseg-vs-nnu-net-v2-in-the-same-cpu-hour)",
        ],
        [
            "`abdomen-ct` (a demonstration, not for patients): trained on **one** CT, scored on an unseen"
            " contrast CT (IRCADb, manual masks)",
            ", ".join(f"{ORGAN[k]} **{f3(ircadb[k])}**" for k in ORGAN)
            + f" (goal {' / '.join(f'{v:.2f}' for v in GOAL_ABDOMEN_CT.values())}: "
            + ("met" if not missed else "not met" if len(missed) == len(ORGAN) else f"not met for {', '.join(missed)}")
            + ")",
            "[abdominal CT](docs/abdomen-ct.md)",
        ],
        [
            "nnU-Net v2 model folders run by volseg vs `nnUNetv2_predict`",
            f"models nnU-Net trained: {identical} of {len(parity['rows'])} case runs identical voxel for voxel,"
            f" worst Dice {f4(parity['worst_dice'])}; a real CT (3 mm model, TTA off):"
            f" OpenVINO fp32 **{speedup(speed['volseg_fp32_tta_off'])}**, int8 {speedup(speed['volseg_int8_tta_off'])}"
            " nnU-Net's speed",
            "[nnU-Net models](docs/nnunet.md)",
        ],
        [
            f"every zoo model, same split, {time_rows[0]['seeds']} seeds: {_number(time_name)} CPU-minutes each, and"
            f" {_number(epoch_name)} epochs each",
            f"equal time, test Dice: {ranking(time_rows, 3)}; equal epochs: {ranking(epoch_rows, 3)}",
            "[model comparison](docs/models.md#the-model-comparison)",
        ],
        [
            "whole-volume CT inference vs MONAI's `sliding_window_inference` (pancreas-size 3D model, synthetic CT)",
            f"OpenVINO fp32 **{times(wv_auto['speedup_vs_monai'])}** (goal {GOAL_WHOLE_VOLUME_FP32}x), int8"
            f" **{times(wv_int8['speedup_vs_monai'])}** at Dice {f4(wv_int8['dice_vs_monai'])} vs MONAI"
            f" (goal {GOAL_WHOLE_VOLUME_FASTEST:.0f}x)",
            "[benchmarks](docs/benchmarks.md)",
        ],
        [
            f"a {large['cases']:,}-case batch (tiny scans, tiny model)",
            f"{large['cases'] // small['cases']}x the cases: {large['wall_s'] / small['wall_s']:.1f}x the time,"
            f" {large['run_record_bytes_per_case']:.0f} bytes of run record per case, memory"
            f" {large['rss_after_10pct_mb']:.0f} -> {large['rss_after_100pct_mb']:.0f} MB",
            "[benchmarks](docs/benchmarks.md#batches-at-archive-scale)",
        ],
        [
            f"INT8 on CPU ({result('int8')['model']}, {int8['cases']} test cases)",
            f"{times(int8['speedup_vs_fp32'], 1)} faster per window; labels vs fp32 at Dice >= {f4(worst_int8)}"
            " (worst case, per label)",
            "[INT8](docs/inference.md#int8)",
        ],
        readme_row(),
    ]
    machines: dict[str, list[str]] = {}
    for name in ("nnunet_budget", "whole_volume_abdomen_ct", "nnunet_parity", "nnunet_models", "whole_volume"):
        machines.setdefault(machine(result(name)) or "not recorded", []).append(name)
    for name in ("batch_scale", "int8", "serve_latency"):
        machines.setdefault(machine(result(name)) or "not recorded", []).append(name)
    where = "; ".join(f"{m} ({', '.join(names)})" for m, names in machines.items())
    return (
        table(["what", "result", "details"], rows)
        + "\n\nAll on CPU, no GPU. Machines, as the results files record them: "
        + where
        + "."
    )
