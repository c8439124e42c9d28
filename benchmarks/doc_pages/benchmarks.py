"""Renderers of docs/benchmarks.md: the summary of goals, whole-volume inference, the models' speed, batches."""

from __future__ import annotations

from doc_pages.sources import _machine_value, f2, f3, f4, n, result, row_of, source, table, times


def benchmarks_summary() -> str:
    data = result("summary")
    goals = data["goals"] if isinstance(data, dict) else data  # a bare list before results carried provenance
    rows = [[g["goal"], g["measured"], "yes" if g["met"] else "no"] for g in goals]
    return (
        table(["goal", "measured", "met"], rows)
        + "\n\n"
        + source("models", "whole_volume")
        + " `summary.json` is written by `run.py` from these two."
    )


def _stage_row(label: str, r: dict, extra: list[str]) -> list[str]:
    s = r["stages"]
    return [
        label,
        *(f2(s.get(k, 0.0)) for k in ("read", "preprocess", "network", "stitching", "postprocess", "invert", "write")),
        f"{r['total_s']:.1f}",
        f"{r['non_network_share']:.0%}",
        f"{r['peak_memory_mb']:.0f}",
        times(r["speedup_vs_monai"]),
        *extra,
    ]


RUN_LABEL = {
    "monai": "MONAI sliding_window_inference, eager fp32 (baseline)",
    "torch": "volseg torch fp32",
    "onnxruntime": "volseg onnxruntime fp32",
    "auto": "volseg openvino fp32",
    "auto-nocrop": "volseg openvino fp32, no body crop",
    "int8": "volseg openvino int8",
    "int8-nocrop": "volseg openvino int8, no body crop",
}


STAGE_HEADER = ["read s", "preprocess s", "network s", "stitching s", "postprocess s", "invert s", "write s"]


def whole_volume() -> str:
    data = result("whole_volume")
    rows = [
        _stage_row(
            RUN_LABEL.get(r["kind"], r["kind"]),
            r,
            [f4(r["dice_vs_monai"]), f4(r["dice_vs_monai_in_body"]), f4(r["dice_vs_truth"])],
        )
        for r in data["rows"]
    ]
    header = ["run", *STAGE_HEADER, "total s", "non-network", "peak MB", "speed-up vs MONAI"]
    return (
        f"{data['model']} on a {data['ct']} resampled to {'x'.join(f'{v:g}' for v in data['spacing'])} mm,"
        f" overlap {data['overlap']}:\n\n"
        + table([*header, "Dice vs MONAI", "in body", "vs truth"], rows)
        + "\n\n"
        + source("whole_volume")
    )


def whole_volume_window1() -> str:
    monai, torch = row_of("whole_volume_torch_window1", "monai"), row_of("whole_volume_torch_window1", "torch")
    before = row_of("whole_volume", "torch")
    return (
        "Eager torch runs a window of a million voxels or more alone on the CPU (one window at a time holds half"
        " the activations). Re-measured alone (`python benchmarks/whole_volume.py --backends torch --name"
        f" whole_volume_torch_window1`): volseg torch fp32 {torch['total_s']:.1f} s,"
        f" {times(torch['speedup_vs_monai'])} MONAI's {monai['total_s']:.1f} s, Dice vs MONAI"
        f" {f4(torch['dice_vs_monai'])}, **peak {n(torch['peak_memory_mb'])} MB** (the table above, measured"
        f" before this change: {n(before['peak_memory_mb'])} MB; MONAI's own baseline peaks at"
        f" {n(monai['peak_memory_mb'])} MB). " + source("whole_volume_torch_window1")
    )


def whole_volume_ircadb() -> str:
    data = result("whole_volume_ircadb")
    monai, auto, int8 = (row_of("whole_volume_ircadb", k) for k in ("monai", "auto", "int8"))
    return (
        f"**On a real CT** (the same architecture fitted {data['fit_steps']} steps on IRCADb patient 1's liver,"
        " run on that 512x512x129 CT, `benchmarks/results/whole_volume_ircadb.md`): MONAI"
        f" {monai['total_s']:.1f} s, OpenVINO fp32 {auto['total_s']:.1f} s ({times(auto['speedup_vs_monai'])}),"
        f" int8 {int8['total_s']:.1f} s (**{times(int8['speedup_vs_monai'])}**, Dice {f4(int8['dice_vs_monai'])}"
        f" vs MONAI, {n(int8['peak_memory_mb'])} MB peak, {int8['non_network_share']:.0%} non-network). "
        + source("whole_volume_ircadb")
    )


def models_forward() -> str:
    data = result("models")
    matmul = data["matmul_gflops_per_s"]
    default = [
        [
            r["counterpart"],
            "x".join(map(str, r["patch"])),
            f"{r['gflop']:.1f}",
            f3(r["forward_s"]),
            f"{r['gflops_per_s']:.1f}",
            f"{r['share_of_matmul_peak']:.0%}",
        ]
        for r in data["rows"]
        if r["kind"] == "default"
    ]
    zoo = []
    for r in data["rows"]:
        if r["kind"] == "default":
            continue
        vs = r.get("train_step_vs_monai")
        per = r.get("train_time_per_gflop_vs_monai")
        zoo.append(
            [
                r["model"],
                "volseg" if r["kind"] == "volseg" else r["counterpart"],
                n(r["parameters"]),
                f"{r['gflop']:.1f}",
                f3(r["forward_s"]),
                f"{r['gflops_per_s']:.1f}",
                f"{r['share_of_matmul_peak']:.0%}",
                f3(r["train_step_s"]),
                f"{r['peak_memory_mb']:.0f}",
                times(vs) if vs is not None else "",
                times(per) if per is not None else "",
            ]
        )
    return (
        f"fp32 matmul: {matmul:.0f} GFLOP/s; device {data['device']}, torch {_machine_value(data, 'torch', 'torch')}.\n\n"
        "Default model forward pass (as `volseg infer` runs it, one window):\n\n"
        + table(["backend", "patch", "GFLOP", "forward s", "GFLOP/s", "% of matmul"], default)
        + f"\n\nZoo vs MONAI, eager torch fp32, patch {data['patch']}^3, batch 1:\n\n"
        + table(
            [
                "model",
                "net",
                "params",
                "GFLOP",
                "forward s",
                "GFLOP/s",
                "% matmul",
                "train step s",
                "peak MB",
                "step vs MONAI",
                "per-GFLOP vs MONAI",
            ],
            zoo,
        )
        + "\n\n"
        + source("models")
    )


def batch_scale() -> str:
    data = result("batch_scale")
    rows = [
        [
            f"{r['cases']:,}",
            f"{r['wall_s']:.1f}",
            f"{r['s_per_case']:.4f}",
            f"{r['s_per_case_first_10pct']:.4f}",
            f"{r['s_per_case_last_10pct']:.4f}",
            f"{r['run_record_bytes'] / 1000:.0f} KB ({r['run_record_bytes_per_case']:.0f} B/case)",
            f"{r['rss_after_10pct_mb']:.0f} / {r['rss_after_100pct_mb']:.0f} MB",
            f"{r['peak_rss_mb']:.0f} MB",
        ]
        for r in data["rows"]
    ]
    by_size = sorted(data["rows"], key=lambda r: r["cases"])
    small, large = by_size[0], by_size[-1]
    return (
        table(
            [
                "cases",
                "wall s",
                "s/case",
                "s/case, first 10 %",
                "s/case, last 10 %",
                "run record",
                "RSS after 10 % / 100 %",
                "peak RSS",
            ],
            rows,
        )
        + f"\n\n{large['cases'] // small['cases']}x the cases took {large['wall_s'] / small['wall_s']:.1f}x the"
        f" time, the run record grows by one {large['run_record_bytes_per_case']:.0f}-byte line per case, and"
        f" memory moves by {large['rss_after_100pct_mb'] - large['rss_after_10pct_mb']:.0f} MB between the first"
        f" tenth and the end of the {large['cases']:,}. " + source("batch_scale")
    )


def case_stages() -> str:
    """One CT case stage by stage, fresh and warm (benchmarks/case_stages.py)."""
    d = result("case_stages")
    stages = list(d["rows"][0]["fresh_stages"]["stages"])  # in the order the benchmark measures them
    rows = []
    for r in d["rows"]:
        for run, block, ratio in (
            ("fresh", r["fresh_stages"], r["fresh_over_network"]),
            ("warm", r["warm_stages"], r["warm_over_network"]),
        ):
            cells = []
            for stage in stages:
                wall, cpu = block["stages"][stage]
                cells.append(
                    f"{wall:.2f}" + (f" ({cpu / wall:.1f})" if wall > 0.05 and cpu / wall > 1.2 else "")
                    if wall
                    else "—"
                )
            total = r["fresh_process"]["wall"] if run == "fresh" else block["total"]
            rows.append([r["model"], r["engine"], run, *cells, f"{total:.1f}", f"{ratio:.2f}x"])
        batch = r["batch_process"]
        rows.append(
            [
                r["model"],
                r["engine"],
                f"batch of {batch['cases']}",
                *["—"] * len(stages),
                f"{batch['seconds_per_case']:.1f}",
                f"{r['batch_over_network']:.2f}x",
            ]
        )
    return (
        f"CT: {d['ct']}. Seconds per stage (exclusive: nested work counted once; in brackets the CPU/wall ratio"
        " where above 1.2, i.e. the stage ran on both cores; nnU-Net's argmax runs inside its logits back, fused)."
        ' Fresh: a new process\'s first case; its "case" is the'
        " whole `volseg infer` process, start-up included. Warm: the median of cases 2-5 in one process, stage by"
        " stage. Batch: `volseg infer` on a folder of 5 copies, seconds per case after the first (the batch runner"
        " reads the next case while the current one is predicted). x network:"
        f" the case over its own network seconds (goals: fresh <= {d['goals']['fresh']}x, warm <="
        f" {d['goals']['warm']}x, for int8 and bf16). Hashing the nnU-Net checkpoints, which every run did before"
        f" their digests were cached: {d['checkpoint_hash_seconds']:.2f} s.\n\n"
        + table(["model", "engine", "run", *stages, "case s", "x network"], rows)
        + "\n\n"
        + source("case_stages")
    )
