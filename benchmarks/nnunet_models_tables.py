"""``benchmarks/nnunet_models.py``, step 3: the label maps compared (Dice per case and label) and the
results tabulated."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from benchmarks.nnunet_models_common import HIPPOCAMPUS, HIPPOCAMPUS_DATASET, HIPPOCAMPUS_LABELS, LABELS  # noqa: E402
from benchmarks.nnunet_models_run import dice, dice_per_label, labels_of, mean_of, reference_masks  # noqa: E402

PAIRS = [  # label maps compared: (run, against run)
    ("volseg_fp32_tta_off", "nnunet_tta_off"),
    ("volseg_int8_tta_off", "nnunet_tta_off"),
    ("volseg_torch_tta_off", "nnunet_tta_off"),
    ("volseg_bf16_tta_off", "nnunet_tta_off"),
    ("volseg_bf16_tta_off", "volseg_fp32_tta_off"),
    ("volseg_fp32_tta_off", "volseg_torch_tta_off"),
    ("volseg_fp32_tta_on", "nnunet_tta_on"),
    ("volseg_int8_tta_on", "nnunet_tta_on"),
    ("volseg_default", "nnunet_tta_on"),
    ("volseg_default", "nnunet_tta_off"),
    ("volseg_int8_tta_off", "volseg_fp32_tta_off"),
    ("volseg_int8_tta_on", "volseg_fp32_tta_on"),
    ("volseg_fp32_tta_on", "volseg_fp32_tta_off"),
    ("nnunet_tta_on", "nnunet_tta_off"),
]


def compare_cases(records: dict, test: dict, labels: dict) -> dict:
    """Dice figures for a test set of several cases (the hippocampus): per case and label, then per label the
    mean over cases (``dice``), their mean (``mean``), the worst case and label (``min``) and the worst case's
    mean over labels (``case_mean_min``); against the manual labels the mean over cases per label."""
    maps = {
        name: {case: labels_of(Path(p))[0] for case, p in r["outputs"].items()}
        for name, r in records.items()
        if all(Path(p).is_file() for p in r.get("outputs", {}).values()) and r.get("outputs")
    }

    def summary(per_case: dict) -> dict:
        per_label = {n: mean_of({c: v[n] for c, v in per_case.items()}) for n in next(iter(per_case.values()), {})}
        values = [d for v in per_case.values() for d in v.values() if d is not None]
        case_means = [m for m in (mean_of(v) for v in per_case.values()) if m is not None]
        return {
            "dice": per_label,
            "mean": mean_of(per_label),
            "min": min(values, default=None),
            "case_mean_min": min(case_means, default=None),
            "per_case": per_case,
        }

    out: dict = {}
    for a, b in PAIRS:
        if a in maps and b in maps:
            if any(maps[a][c].shape != maps[b][c].shape for c in test["cases"]):
                out[f"{a}_vs_{b}"] = {"error": "grids differ"}
                continue
            per_case = {c: dice_per_label(maps[a][c], maps[b][c], labels) for c in test["cases"]}
            out[f"{a}_vs_{b}"] = {
                **summary(per_case),
                "voxels_differing": int(sum((maps[a][c] != maps[b][c]).sum() for c in test["cases"])),
                "voxels": int(sum(maps[a][c].size for c in test["cases"])),
            }
    references = {
        c: np.rint(np.asarray(nib.load(p).dataobj, dtype=np.float32)).astype(np.int16)
        for c, p in test["references"].items()
        if c in test["cases"]
    }
    for name, cases in maps.items():
        per_case = {c: dice_per_label(cases[c], references[c], labels) for c in test["cases"]}
        out[f"{name}_vs_reference"] = summary(per_case)
    out["label_voxels"] = {
        name: {k: int(sum((m == v).sum() for m in cases.values())) for k, v in labels.items() if v}
        for name, cases in maps.items()
    }
    return out


def compare(records: dict, ct: dict) -> dict:
    """Dice figures for one model x CT from its run records (keyed by run name)."""
    labels = {name: labels_of(Path(r["output"])) for name, r in records.items() if Path(r["output"]).is_file()}
    out: dict = {}
    for a, b in PAIRS:
        if a in labels and b in labels:
            (la, aa), (lb, ab) = labels[a], labels[b]
            if la.shape != lb.shape:
                out[f"{a}_vs_{b}"] = {"error": f"grids differ: {la.shape} vs {lb.shape}"}
                continue
            per = dice_per_label(la, lb)
            out[f"{a}_vs_{b}"] = {
                "dice": per,
                "mean": mean_of(per),
                "min": min((v for v in per.values() if v is not None), default=None),
                "voxels_differing": int((la != lb).sum()),
                "voxels": int(la.size),
                "affine_max_abs_difference": float(np.abs(aa - ab).max()),
            }
    masks = reference_masks(ct)
    if masks is not None:
        for name, (lab, _) in labels.items():
            if lab.shape != next(iter(masks.values())).shape:
                out[f"{name}_vs_reference"] = {"error": f"grid {lab.shape} differs from the reference's"}
                continue
            per = {organ: dice(lab == LABELS[organ], mask) for organ, mask in masks.items()}
            out[f"{name}_vs_reference"] = {"dice": per, "mean": mean_of(per)}
    out["label_voxels"] = {
        name: {k: int((lab == v).sum()) for k, v in LABELS.items() if v} for name, (lab, _) in labels.items()
    }
    return out


def fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def hippocampus_tables(result: dict) -> list[str]:
    """The hippocampus model's section: its runs over the whole test set, Dice per label and per case."""
    test = result.get(HIPPOCAMPUS)
    model = result["models"].get(HIPPOCAMPUS_DATASET)
    key = f"{HIPPOCAMPUS_DATASET}|{HIPPOCAMPUS}"
    if not test or not model or key not in result["comparisons"]:
        return []
    c = result["comparisons"][key]
    names = [n for n in HIPPOCAMPUS_LABELS if HIPPOCAMPUS_LABELS[n]]
    t = model.get("training") or {}
    n = len(test["cases"])
    lines = [
        "",
        f"## Hippocampus: nnU-Net `3d_fullres` fold 0 on {n} held-out MSD Task04 test cases",
        "",
        f"Trained by nnU-Net's own `{model.get('trainer')}` on volseg's split ({t.get('splits')}) for a budget of "
        f"{t.get('budget_minutes')} min: {t.get('epochs')} epochs x {t.get('iterations_per_epoch')} iterations, "
        f"{fmt(t.get('train_minutes'), 1)} min of logged epochs, {fmt(t.get('seconds'), 0)} s in all with nnU-Net's "
        f"final validation (val Dice {fmt(t.get('val_dice'))}); `{t.get('command')}`. Test cases: "
        f"{', '.join(test['cases'])} (sizes {min(min(v) for v in test['sizes'].values())}-"
        f"{max(max(v) for v in test['sizes'].values())} voxels a side, 1 mm). Each run is one process for the whole "
        "folder of cases. Dice vs nnU-Net: per case and label, label maps of the same model and setting; mean: "
        "over cases per label, then over labels; worst case: the lowest mean over labels of one case; worst "
        "case x label: the lowest single Dice. vs manual: mean Dice against the manual labels; Δ: that less "
        "nnU-Net's in the same setting (the defaults row: less nnU-Net's default, mirroring on).",
        "",
        "| setting | run | engine | s | s per case | peak MB | tree MB | speed-up vs nnU-Net "
        "| Dice vs nnU-Net mean | worst case | worst case x label | int8 vs fp32 mean (worst case) "
        "| vs manual mean | Δ vs nnU-Net's | load 1/5/15 at start | other processes' cores during the run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in [row for row in result["rows"] if row["record"]["ct"] == HIPPOCAMPUS]:
        r = row["record"]
        base = row.get("nnunet_seconds")
        vs_nn = c.get(f"{r['run']}_vs_{row['nnunet_run']}") if r["tool"] == "volseg" else None
        int8 = c.get(f"{r['run']}_vs_volseg_fp32_{r['setting']}") if "int8" in r["run"] else None
        ref = c.get(f"{r['run']}_vs_reference")
        nn_ref = c.get(f"{row['nnunet_run']}_vs_reference")
        delta = (
            f"{ref['mean'] - nn_ref['mean']:+.4f}"
            if r["tool"] == "volseg"
            and ref
            and nn_ref
            and ref.get("mean") is not None
            and nn_ref.get("mean") is not None
            else "—"
        )
        ok = vs_nn and "error" not in vs_nn
        speedup = f"{base / r['seconds']:.2f}x" if base and r["tool"] == "volseg" else "—"
        lines.append(
            f"| {r['setting']} | {r['run']} | {r.get('engine') or ('torch' if r['tool'] == 'nnunet' else '')} | "
            f"{r['seconds']:.1f} | {r['seconds'] / n:.2f} | {fmt(r.get('peak_rss_mb'), 0)} | "
            f"{fmt(r.get('peak_tree_pss_mb'), 0)} | "
            f"{speedup} | "
            f"{fmt(vs_nn.get('mean')) if ok else '—'} | {fmt(vs_nn.get('case_mean_min')) if ok else '—'} | "
            f"{fmt(vs_nn.get('min')) if ok else '—'} | "
            f"{(fmt(int8.get('mean')) + ' (' + fmt(int8.get('case_mean_min')) + ')') if int8 and 'error' not in int8 else '—'} | "
            f"{fmt(ref.get('mean')) if ref else '—'} | {delta} | "
            f"{'/'.join(str(v) for v in r['load_at_start'])}{'' if r.get('quiet') else ' (busy)'} | "
            f"{fmt(r.get('others_cores_during'), 2)} |"
        )
    lines += ["", "Acceptance (issue 30: mean >= 0.99, every case >= 0.97; vs manual within 0.003 of nnU-Net):", ""]
    for setting in ("tta_off", "tta_on"):
        v = c.get(f"volseg_fp32_{setting}_vs_nnunet_{setting}")
        ref, nn_ref = c.get(f"volseg_fp32_{setting}_vs_reference"), c.get(f"nnunet_{setting}_vs_reference")
        if not v or "error" in v:
            lines.append(f"- {setting}: not run")
            continue
        gap = abs(ref["mean"] - nn_ref["mean"]) if ref and nn_ref else None
        met = v["mean"] >= 0.99 and v["case_mean_min"] >= 0.97 and gap is not None and gap <= 0.003
        lines.append(
            f"- {setting}, volseg OpenVINO fp32 vs `nnUNetv2_predict`: mean {fmt(v['mean'])}, worst case "
            f"{fmt(v['case_mean_min'])} (worst case x label {fmt(v['min'])}); vs manual labels "
            f"{fmt(ref and ref['mean'])} against nnU-Net's {fmt(nn_ref and nn_ref['mean'])} (gap {fmt(gap)}): "
            f"{'met' if met else 'not met'}"
        )
    lines += [
        "",
        "### Hippocampus Dice per label (mean over cases; worst case in brackets)",
        "",
        "| comparison | " + " | ".join(names) + " | voxels differing |",
        "|---|" + "---|" * len(names) + "---|",
    ]
    for name, v in c.items():
        if name == "label_voxels" or "dice" not in v:
            continue
        worst = {
            label: min((d[label] for d in v["per_case"].values() if d[label] is not None), default=None)
            for label in names
        }
        lines.append(
            f"| {name} | "
            + " | ".join(f"{fmt(v['dice'].get(label))} ({fmt(worst[label])})" for label in names)
            + f" | {v.get('voxels_differing', '—')} |"
        )
    shown = [k for k in ("volseg_fp32_tta_off_vs_nnunet_tta_off", "volseg_fp32_tta_on_vs_nnunet_tta_on") if k in c]
    shown += [k for k in ("nnunet_tta_off_vs_reference", "volseg_fp32_tta_off_vs_reference") if k in c]
    if shown:
        lines += [
            "",
            "### Hippocampus per case (mean Dice over labels)",
            "",
            "| case | size | " + " | ".join(shown) + " |",
            "|---|---|" + "---|" * len(shown),
        ]
        for case in test["cases"]:
            lines.append(
                f"| {case} | {'x'.join(map(str, test['sizes'][case]))} | "
                + " | ".join(fmt(mean_of(c[k]["per_case"][case])) for k in shown)
                + " |"
            )
    lines += ["", "| run | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, counts in c.get("label_voxels", {}).items():
        lines.append(f"| {name} (label voxels, all cases) | " + " | ".join(str(counts[x]) for x in names) + " |")
    return lines


def tables(result: dict, made: dict) -> list[str]:
    cpu = result["cpu"]
    ct_comparisons = {k: v for k, v in result["comparisons"].items() if not k.endswith(f"|{HIPPOCAMPUS}")}
    lines = [
        "# nnU-Net v2 models: `nnUNetv2_predict` vs `volseg infer` (issue 30, acceptance 1)",
        "",
        f"Command: `{made['command']}` ({result['this_invocation_s']:.0f} s wall clock, training included)  ",
        f"Date: {made['date']}; machine: {cpu.get('model_name')} (family {cpu.get('family')} model "
        f"{cpu.get('model_number')}, {cpu.get('cores')} cores; SIMD flags {' '.join(cpu.get('simd', []))}); "
        f"load average at the start of this invocation {result['load_at_invocation']}.  ",
        f"nnU-Net venv: {result['versions']['nnunet_venv']}; volseg venv: {result['versions']['volseg_venv']}.",
        "",
        "Each run is one process, whole case from file to file (start-up, model loading, reading, "
        "preprocessing, network, export, writing), timed with `/usr/bin/time -v`. Peak MB: its maximum RSS "
        "(the largest single process); tree MB: the summed PSS of the process tree (nnU-Net's worker processes "
        "included, shared pages counted once), sampled every 0.2 s. "
        "Speed-up: the `nnUNetv2_predict` run of the same model, CT and setting divided by this run (the "
        "defaults rows: nnU-Net's default, mirroring on). Dice vs nnU-Net: per label, label maps of the same "
        "model and setting (mean over the 4 organs; min is the worst organ); a label empty in both counts "
        "as absent (—), not as 1. The models are trained briefly on purpose (their pseudo Dice is in the "
        "Models table; the label voxel counts are at the end): Dice against the reference masks measures "
        "the agreement of the tools, not a usable model, and where a label has a few hundred voxels each "
        "voxel that differs moves its Dice by about 0.002-0.01. Rows: every run recorded in the work folder, "
        "possibly by several invocations (each run's command, start time and load are in the JSON). Other "
        "processes' cores: the machine's CPU time during the run (/proc/stat) less the run's own, per second; "
        "about 0.1 on an idle machine (system services and this script's sampler).",
        "",
    ]
    lines += [
        "## Models",
        "",
        "| model | plan spacing | patch | batch | network | training | pseudo Dice last epoch "
        "| int8 twin: calibration windows; int8 vs fp32 on its check cases (worst label) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in result["models"].values():
        t = m.get("training") or {}
        twin = (m.get("int8") or {}).get("twin_record") or {}
        agreement = twin.get("agreement", {}).get("dice_vs_fp32_min")
        worst = min((v for v in (agreement or {}).values() if v is not None), default=None)
        plan = m["plan"]
        lines.append(
            f"| {m['dataset']} | {plan['spacing']} | {plan['patch_size']} | {plan['batch_size']} | "
            f"{plan['network']} {plan['features_per_stage']} | {t.get('epochs', '?')} x "
            f"{t.get('iterations_per_epoch', '?')} iterations, {fmt(t.get('seconds'), 0)} s | "
            f"{(m.get('pseudo_dice_per_epoch') or ['—'])[-1]} | "
            f"{twin.get('calibration', {}).get('windows', '—')} windows; {fmt(worst)} |"
        )
    lines += ["", "## Test CTs", "", "| CT | size | spacing (mm) | reference labels |", "|---|---|---|---|"]
    for name, ct in result["cts"].items():
        if ct is None:
            lines.append(f"| {name} | missing | | |")
        else:
            lines.append(
                f"| {name} | {'x'.join(map(str, ct['size']))} | {'x'.join(f'{s:g}' for s in ct['spacing'])} | "
                f"{ct.get('reference_kind', 'none')} |"
            )
    lines += [
        "",
        "## Runs",
        "",
        "| model | CT | setting | run | engine | s | peak MB | tree MB | speed-up vs nnU-Net "
        "| Dice vs nnU-Net mean (min) | int8 vs fp32 mean (min) | vs reference mean | load 1/5/15 at start "
        "| other processes' cores during the run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in [row for row in result["rows"] if row["record"]["ct"] != HIPPOCAMPUS]:
        r, c = row["record"], result["comparisons"][row["comparisons_key"]]
        base = row.get("nnunet_seconds")
        vs_nn = c.get(f"{r['run']}_vs_{row['nnunet_run']}") if r["tool"] == "volseg" else None
        against = ""
        if vs_nn is None and r["run"] == "volseg_default" and "volseg_default_vs_nnunet_tta_off" in c:
            vs_nn, against = c["volseg_default_vs_nnunet_tta_off"], " vs nnU-Net TTA off"  # nnU-Net's default not run
        int8 = c.get(f"{r['run']}_vs_volseg_fp32_{r['setting']}") if "int8" in r["run"] else None
        ref = c.get(f"{r['run']}_vs_reference")
        speedup = f"{base / r['seconds']:.2f}x" if base and r["tool"] == "volseg" else "—"
        lines.append(
            f"| {r['spacing_mm']:g} mm | {r['ct']} | {r['setting']} | {r['run']} | {r.get('engine') or ('torch' if r['tool'] == 'nnunet' else '')} | "
            f"{r['seconds']:.1f} | {fmt(r.get('peak_rss_mb'), 0)} | {fmt(r.get('peak_tree_pss_mb'), 0)} | "
            f"{speedup} | "
            f"{(fmt(vs_nn.get('mean')) + ' (' + fmt(vs_nn.get('min')) + ')' + against) if vs_nn and 'error' not in vs_nn else '—'} | "
            f"{(fmt(int8.get('mean')) + ' (' + fmt(int8.get('min')) + ')') if int8 and 'error' not in int8 else '—'} | "
            f"{fmt(ref.get('mean')) if ref and 'error' not in ref else '—'} | "
            f"{'/'.join(str(v) for v in r['load_at_start'])}{'' if r.get('quiet') else ' (busy)'} | "
            f"{fmt(r.get('others_cores_during'), 2)} |"
        )
    lines += [
        "",
        "## Dice per label",
        "",
        "| model | CT | comparison | " + " | ".join(n for n in LABELS if LABELS[n]) + " | voxels differing |",
        "|---|---|---|" + "---|" * (len(LABELS) - 1) + "---|",
    ]
    for key, c in ct_comparisons.items():
        model, ct = key.split("|")
        for name, v in c.items():
            if name == "label_voxels" or "dice" not in v:
                continue
            lines.append(
                f"| {model} | {ct} | {name} | "
                + " | ".join(fmt(v["dice"].get(n)) for n in LABELS if LABELS[n])
                + f" | {v.get('voxels_differing', '—')} |"
            )
    low = [
        f"{key.replace('|', ' x ')}: {name} {label} {d:.4f}"
        for key, c in ct_comparisons.items()
        for name, v in c.items()
        if name.startswith("volseg_")
        and "int8" not in name
        and "dice" in v
        and name.endswith(("_vs_nnunet_tta_off", "_vs_nnunet_tta_on"))
        for label, d in v["dice"].items()
        if d is not None and d < 0.99
    ]
    lines += ["", "## volseg fp32 (OpenVINO, torch, default) labels below 0.99 Dice against nnU-Net's", ""]
    lines += [f"- {item}" for item in low] or ["- none"]
    names = [n for n in LABELS if LABELS[n]]
    lines += [
        "",
        "## Label voxels",
        "",
        "| model | CT | run | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for key, c in ct_comparisons.items():
        model, ct = key.split("|")
        for name, counts in c.get("label_voxels", {}).items():
            lines.append(f"| {model} | {ct} | {name} | " + " | ".join(str(counts[n]) for n in names) + " |")
    lines += hippocampus_tables(result)
    lines += ["", "## Not run", ""]
    lines += [f"- {item}" for item in result["not_run"]] or ["- nothing: every model, CT and setting has a run."]
    return lines
