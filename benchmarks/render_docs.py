"""Render the measured figures of the user pages from the committed results.

    python benchmarks/render_docs.py           # rewrite the pages in place
    python benchmarks/render_docs.py --check   # exit 1 and name every page that differs from its rendering

The pages (README.md, docs/*.md, volseg/pretrained/*/MODEL_CARD.md) hold marked blocks (indented alike
inside a list item, and then rendered with that indentation):

    <!-- rendered:NAME -->
    ... whatever the renderer NAME wrote last time ...
    <!-- /rendered -->

Each block's text is replaced by what ``RENDERERS[NAME]`` makes of the committed sources, and nothing else on
the page is touched. The sources: ``benchmarks/results/*.json``, ``docs/comparison.csv`` (written by
``pipelines/compare_models.py``), and the built-in models in ``volseg/pretrained/``: their ``int8.json`` and
the training history every volseg checkpoint carries (read here without torch, as data only). A figure that
has no such source does not belong in a rendered block, nor anywhere else on a user page.

A results file may carry a ``provenance`` entry (machine, command, commit, date): where it does, the line
naming the machine and command is taken from it, else from the file's own ``machine``/``cpu``/``command``
fields, else the line says the file does not record them.

Fast and import-light on purpose (json, csv, zipfile, pickle only): ``tests/test_docs_rendered.py`` renders
every page into memory on each test run.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import math
import pickle
import re
import statistics
import sys
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PRETRAINED = REPO / "volseg" / "pretrained"
COMPARISON_CSV = REPO / "docs" / "comparison.csv"

BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)<!-- rendered:(?P<name>[\w-]+) -->\n(?P<body>.*?)^(?P=indent)<!-- /rendered -->$", re.S | re.M
)

# goals are set by the issues, not measured: the renderers compare the measurements with them
GOAL_ABDOMEN_CT = {"liver": 0.90, "spleen": 0.85, "kidney_right": 0.85, "kidney_left": 0.85}
GOAL_WHOLE_VOLUME_FP32 = 2.5  # x MONAI's sliding_window_inference
GOAL_WHOLE_VOLUME_FASTEST = 8.0  # issue 16, labels at Dice >= 0.99 vs MONAI
GOAL_NNUNET_SPEED = {"fp32": 3.0, "int8": 6.0}  # issue 30: nnU-Net's own time over volseg's
INT8_AUTO_BAR = 0.99  # --precision auto takes int8 where every label's worst case reaches this
ORGAN = {"liver": "liver", "spleen": "spleen", "kidney_right": "right kidney", "kidney_left": "left kidney"}


def pages() -> list[Path]:
    """Every page that may hold rendered blocks."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(PRETRAINED.glob("*/MODEL_CARD.md"))]


# ---------------------------------------------------------------------------------------------------
# the sources


@cache
def result(name: str) -> dict | list:
    """benchmarks/results/NAME.json"""
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


@cache
def pretrained_json(model: str, name: str) -> dict:
    return json.loads((PRETRAINED / model / name).read_text(encoding="utf-8"))


@cache
def comparison() -> list[dict]:
    with COMPARISON_CSV.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class _Tensor:
    """A tensor's shape, all this script needs of a checkpoint's weights."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape


def _rebuild_tensor(storage, offset, size, *rest) -> _Tensor:
    return _Tensor(tuple(size))


class _CheckpointUnpickler(pickle.Unpickler):
    """Reads a torch zip checkpoint's pickle as plain data: tensors become their shapes, storages are never
    loaded, and any class beyond these few is refused (as torch.load(weights_only=True) would)."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, *rest: data
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not plain checkpoint data")

    def persistent_load(self, pid):
        return None


@cache
def checkpoint(path: Path) -> dict:
    """A volseg checkpoint's data (history, best epoch, config), weights as shapes."""
    with zipfile.ZipFile(path) as archive:
        member = next(m for m in archive.namelist() if m.endswith("/data.pkl"))
        with archive.open(member) as f:
            return _CheckpointUnpickler(f).load()


def training_record(path: Path) -> dict:
    """What a checkpoint says about its own training."""
    data = checkpoint(path)
    history = data["history"]
    best = next(e for e in history if e["epoch"] == data["epoch"])
    labels = data["label_names"]
    return {
        "epoch": data["epoch"],
        "epochs": len(history),
        "minutes": sum(e["seconds"] for e in history) / 60,
        "best_dice": data["best_dice"],
        "best_val": {labels[k]: v for k, v in best["val_dice"].items()},
        "parameters": sum(math.prod(t.shape) for t in data["model"].values()),
        "lr_end_share": history[-1]["lr"] / max(e["lr"] for e in history),
    }


def machine(data: dict) -> str:
    """Where a result was measured, as its file records it."""
    prov = data.get("provenance") if isinstance(data, dict) else None
    if isinstance(prov, dict):
        described = _describe(prov.get("machine") or prov.get("cpu"))
        if described:
            return described
    if isinstance(data, dict) and isinstance(data.get("cpu"), dict):
        cpu = data["cpu"]
        return f"{cpu.get('model_name', 'CPU')}, {cpu.get('cores', '?')} cores"
    if isinstance(data, dict) and data.get("machine"):
        return _describe(data["machine"])
    return ""


def _describe(value) -> str:
    """A machine entry as a few words: a string as it is; a dict as its CPU, cores and Python."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return ""
    name = next(
        (value[k] for k in ("cpu_model", "model_name", "cpu", "processor", "machine") if isinstance(value.get(k), str)),
        "",
    )
    cores = value.get("cores") or value.get("cpu_count")
    bits = [name] if name else []
    if cores:
        bits.append(f"{cores} cores")
    if isinstance(value.get("gpu"), str) and value["gpu"]:
        bits.append(value["gpu"])
    if value.get("python"):
        bits.append(f"Python {value['python']}")
    return ", ".join(bits)


def _machine_value(data: dict, key: str, old_key: str):
    """A machine fact from the result's provenance, else from the top-level key older results used."""
    machine = (data.get("provenance") or {}).get("machine")
    if isinstance(machine, dict) and machine.get(key) is not None:
        return machine[key]
    return data.get(old_key, "?")


def command(data: dict) -> str:
    prov = data.get("provenance") if isinstance(data, dict) else None
    if isinstance(prov, dict) and prov.get("command"):
        return prov["command"]
    return data.get("command", "") if isinstance(data, dict) else ""


def date(data: dict) -> str:
    prov = data.get("provenance") if isinstance(data, dict) else None
    for source in (prov, data):
        if isinstance(source, dict):
            for key in ("date", "started", "finished"):
                if isinstance(source.get(key), str):
                    return source[key][:10]
    return ""


def source(*names: str) -> str:
    """One line per results file: where and how it was measured, as far as the file says."""
    parts = []
    for name in names:
        data = result(name)
        bits = [f"machine: {machine(data)}" if machine(data) else "machine not recorded"]
        if date(data):
            bits.append(date(data))
        if command(data):
            bits.append(f"`{command(data)}`")
        parts.append(f"`benchmarks/results/{name}.json` ({'; '.join(bits)})")
    return "Source: " + "; ".join(parts) + "."


# ---------------------------------------------------------------------------------------------------
# formatting


def f2(x: float) -> str:
    return f"{x:.2f}"


def f3(x: float) -> str:
    return f"{x:.3f}"


def f4(x: float) -> str:
    return f"{x:.4f}"


def times(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}x"


def n(x: float) -> str:
    return f"{x:,.0f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def row_of(name: str, kind: str) -> dict:
    return next(r for r in result(name)["rows"] if r.get("kind") == kind)


def organs(values: dict, fmt=f3) -> str:
    return " / ".join(fmt(values[k]) for k in ORGAN)


# ---------------------------------------------------------------------------------------------------
# the facts several pages quote


def hippocampus() -> dict:
    """The default model: its checkpoint's training record, and its test Dice from its int8 record (fp32 and
    int8 segment the same 10 bundled test cases there)."""
    record = training_record(PRETRAINED / "hippocampus-mri" / "model.pt")
    agreement = pretrained_json("hippocampus-mri", "int8.json")["agreement"]
    ref = agreement["dice_vs_reference"]
    return {
        **record,
        "fp32": ref["fp32"],
        "int8": ref["int8"],
        "fp32_mean": statistics.fmean(ref["fp32"].values()),
        "int8_mean": statistics.fmean(ref["int8"].values()),
        "cases": agreement["cases"],
        "agreement": agreement,
    }


def abdomen_ircadb(kind: str = "auto") -> dict:
    """abdomen-ct against IRCADb's manual masks (OpenVINO, window-aligned body crop)."""
    return row_of("whole_volume_abdomen_ct", kind)["dice_vs_truth_per_label"]


def studies() -> dict[str, list[dict]]:
    """The model comparison per study: one entry per model and mode, mean over seeds and half the range."""
    grouped: dict[str, dict[tuple[str, str], list[dict]]] = {}
    for r in comparison():
        grouped.setdefault(r["study"], {}).setdefault((r["model"], r["mode"]), []).append(r)
    out = {}
    for study, models in grouped.items():
        entries = []
        for (model, mode), runs in models.items():
            dice = [float(r["dice_mean"]) for r in runs]
            entries.append(
                {
                    "model": model,
                    "mode": mode,
                    "dice": statistics.fmean(dice),
                    "spread": (max(dice) - min(dice)) / 2,
                    "seeds": len(runs),
                    "epochs": statistics.fmean(int(r["epochs"]) for r in runs),
                    "minutes": statistics.fmean(float(r["train_minutes"]) for r in runs),
                }
            )
        out[study] = sorted(entries, key=lambda e: -e["dice"])
    return out


def study(prefix: str) -> tuple[str, list[dict]]:
    return next((k, v) for k, v in studies().items() if k.startswith(prefix))


def _number(text: str) -> str:
    """The first number in a study's name ("Equal time: 10 minutes each" -> "10")."""
    return re.search(r"\d+(\.\d+)?", text).group(0)


def nnunet_runs(ct: str = "philips") -> dict:
    """The nnU-Net model folder timings on one CT: {run: row}."""
    return {r["record"]["run"]: r for r in result("nnunet_models")["rows"] if r["record"]["ct"] == ct}


# ---------------------------------------------------------------------------------------------------
# the renderers: NAME -> Markdown


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
    ]
    machines: dict[str, list[str]] = {}
    for name in ("nnunet_budget", "whole_volume_abdomen_ct", "nnunet_parity", "nnunet_models", "whole_volume"):
        machines.setdefault(machine(result(name)) or "not recorded", []).append(name)
    for name in ("batch_scale", "int8"):
        machines.setdefault(machine(result(name)) or "not recorded", []).append(name)
    where = "; ".join(f"{m} ({', '.join(names)})" for m, names in machines.items())
    return (
        table(["what", "result", "details"], rows)
        + "\n\nAll on CPU, no GPU. Machines, as the results files record them: "
        + where
        + "."
    )


def training_default_model() -> str:
    h = hippocampus()
    _, rows = study("Equal time")
    unet2d = next(e for e in rows if e["model"] == "unet" and e["mode"] == "2D")
    return (
        table(
            ["mode", "model", "command", "training", "best val Dice (mean / anterior / posterior)", "test Dice"],
            [
                [
                    "3D",
                    "unet (16-128), patches 40x56x40",
                    "`pipelines/train_default_model.sh`",
                    f"{h['minutes']:.0f} min to its best epoch ({h['epoch']})",
                    f"**{f4(h['best_dice'])}** / {f4(h['best_val']['anterior'])} / {f4(h['best_val']['posterior'])}",
                    f4(h["fp32_mean"]),
                ],
                [
                    "2D",
                    "unet (32-256), axial slices, 2.5D",
                    "`python pipelines/compare_models.py` ([the model comparison](models.md#the-model-comparison))",
                    f"{unet2d['minutes']:.0f} min ({unet2d['epochs']:.0f} epochs), mean of {unet2d['seeds']} seeds",
                    "-",
                    f4(unet2d["dice"]),
                ],
            ],
        )
        + "\n\nSources: the shipped checkpoint's training history (`volseg/pretrained/hippocampus-mri/model.pt`:"
        " minutes are its epochs' summed seconds), its test Dice from `volseg/pretrained/hippocampus-mri/int8.json`"
        f" (fp32, {h['cases']} cases); the 2D row from `docs/comparison.csv`."
    )


def nnunet_budget() -> str:
    data = result("nnunet_budget")
    rows = []
    for r in data["rows"]:
        name = r["recipe"]
        name = (
            "volseg `configs/hippocampus_3d.yaml`"
            if name.startswith("volseg")
            else name.replace("nnU-Net v2", "nnU-Net " + r.get("version", "v2").replace("nnunetv2==", "v"))
        )
        d = r["test_dice"]
        rows.append(
            [
                name,
                r["epochs"],
                f"{r['train_minutes']:.1f}",
                f3(r["val_dice"]),
                f4(d["anterior"]),
                f4(d["posterior"]),
                f"**{f4(d['mean'])}**",
                f2(r["predict_s_per_case"]),
            ]
        )
    vs, nn = data["rows"][0], data["rows"][1]
    return (
        table(
            [
                "recipe",
                "epochs",
                "train min",
                "val Dice",
                "test Dice anterior",
                "test Dice posterior",
                "test Dice mean",
                "predict s/case",
            ],
            rows,
        )
        + f"\n\nvolseg is ahead by {f3(vs['test_dice']['mean'] - nn['test_dice']['mean'])} on test and"
        f" {f3(vs['val_dice'] - nn['val_dice'])} on validation, and predicts"
        f" {nn['predict_s_per_case'] / vs['predict_s_per_case']:.0f}x faster (nnU-Net's time and test score"
        " include its mirroring TTA; volseg's do not). " + source("nnunet_budget")
    )


def comparison_summary() -> str:
    lines = []
    for name, rows in studies().items():
        best = ", ".join(f"{e['mode']} {e['model']} {f4(e['dice'])}" for e in rows[:3])
        worst = rows[-1]
        lines.append(
            f"- **{name}**: best {best}; last {worst['mode']} {worst['model']} {f4(worst['dice'])}"
            f" (mean of {worst['seeds']} seeds, test Dice on the 10 held-out cases)."
        )
    return "\n".join(lines) + "\n\nSource: `docs/comparison.csv`, every run of both studies."


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


def report_page() -> str:
    d = result("report_page")
    openings = d["openings"]
    viewer = [o["viewer_wall_s"] for o in openings]
    return (
        f"A {d['cases']}-case page (`benchmarks/results/report_page.md`): the table is"
        f" on screen {f2(d['table_s_median'])} s after navigation (median of {len(openings)} openings in headless"
        f" Chromium; {f2(openings[0]['table_painted_ms'] / 1000)} s on the first), the viewer shows the first case"
        f" after {min(viewer):.1f}-{max(viewer):.1f} s, and `index.html` weighs {f2(d['index_html_mb'])} MB"
        f" (goal: under 5 MB). Building it took {d['build_s']:.1f} s. " + source("report_page")
    )


def ddp_throughput() -> str:
    d = result("ddp_throughput")
    one, two = sorted(d["rows"], key=lambda r: r["nproc"])[:2]
    return (
        f"Measured: {f2(one['samples_per_second'])} samples/s with {one['nproc']} process and"
        f" {f2(two['samples_per_second'])} with {two['nproc']} processes sharing the same"
        f" {_machine_value(d, 'cores', 'cpu_count')} cores, {times(two['speedup'])}. " + source("ddp_throughput")
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


def nnunet_parity() -> str:
    d = result("nnunet_parity")
    rows = d["rows"]
    identical = sum(1 for r in rows if r["differ"] == 0)
    torch_rows = [r for r in rows if r["backend"] == "torch"]
    torch_same = sum(1 for r in torch_rows if r["differ"] == 0)
    return (
        f"`benchmarks/nnunet_parity.py` compares every `nnUNetv2_predict` run it recorded (TTA on and off, one and"
        f" two folds): [{identical} of {len(rows)} case runs identical voxel for voxel, worst Dice"
        f" {f4(d['worst_dice'])}](../benchmarks/results/nnunet_parity.md) (torch identical in {torch_same} of"
        f" {len(torch_rows)}). " + source("nnunet_parity")
    )


def totalseg_parity() -> str:
    d = result("totalseg_parity")
    rows = d["rows"]
    identical = sum(1 for r in rows if r["differ"] == 0)
    names = d["naming"]
    agree = all(not v["mismatched"] and v["volseg_labels"] == v["totalsegmentator_labels"] for v in names.values())
    count = max(v["volseg_labels"] for v in names.values())
    return (
        f"`benchmarks/totalseg_parity.py` runs TotalSegmentator {d['versions']['TotalSegmentator']} itself and"
        " volseg on the bundled CT, a reoriented copy and an anisotropic crop: [label maps identical voxel for"
        f" voxel in {identical} of {len(rows)} runs"
        + (f", the same {count} names and numbers" if agree else "")
        + "](../benchmarks/results/totalseg_parity.md). "
        + source("totalseg_parity")
    )


def nnunet_speed() -> str:
    d = result("nnunet_models")
    rows = []
    for r in d["rows"]:
        rec = r["record"]
        own = r.get("nnunet_seconds")
        # same setting; the defaults row against nnU-Net's default (mirroring on) where that ran
        speedup = "" if rec["tool"] == "nnunet" or not own else times(own / rec["seconds"])
        rows.append(
            [
                rec["ct"],
                rec["setting"],
                "nnUNetv2_predict" if rec["tool"] == "nnunet" else f"volseg {rec['engine']}",
                f"{rec['seconds']:.1f}",
                f"{rec['peak_rss_mb']:.0f}",
                speedup,
            ]
        )
    cts = ", ".join(f"{k} {'x'.join(map(str, v['size']))}" for k, v in d["cts"].items() if v)
    best: dict[str, dict[str, tuple]] = {}  # kind -> CT -> (speed-up, setting, agreement with fp32)
    for r in d["rows"]:
        rec = r["record"]
        if (
            rec["ct"] in d["cts"]
            and rec["tool"] == "volseg"
            and rec["setting"] in ("tta_off", "tta_on")
            and r.get("nnunet_seconds")
        ):
            kind = rec["engine"].split()[-1]
            speedup = r["nnunet_seconds"] / rec["seconds"]
            if speedup > best.get(kind, {}).get(rec["ct"], (0.0,))[0]:
                setting = rec["setting"]
                agreement = (
                    d["comparisons"]
                    .get(r.get("comparisons_key"), {})
                    .get(f"volseg_{kind}_{setting}_vs_volseg_fp32_{setting}")
                    if kind != "fp32"
                    else None
                )
                best.setdefault(kind, {})[rec["ct"]] = (speedup, setting.replace("_", " "), agreement)

    def verdict(kind: str, goal: float) -> str:
        """The goal judged on every CT, each at its best setting; int8 also needs its labels to agree."""
        parts, met = [], []
        for ct, (speedup, setting, agreement) in best[kind].items():
            mean = (agreement or {}).get("mean")
            if kind == "fp32":
                parts.append(f"{ct} {times(speedup)} ({setting})")
                ok = speedup >= goal
            else:
                labels = f"labels vs fp32 {f4(mean)}" if mean is not None else "no label found"
                parts.append(f"{ct} {times(speedup)} ({setting}; {labels})")
                ok = speedup >= goal and mean is not None and mean >= INT8_AUTO_BAR
            met += [ct] if ok else []
        if len(met) == len(parts):
            outcome = "met on every CT"
        else:
            outcome = f"met on {', '.join(met)} only" if met else "not met"
            outcome += " (the labels must also agree at 0.99)" if kind != "fp32" else ""
        return f"{goal:.0f}x with {kind}, best per CT: {', '.join(parts)}: {outcome}"

    goals = "; ".join(verdict(kind, goal) for kind, goal in GOAL_NNUNET_SPEED.items() if kind in best)
    hippocampus, agreement = d.get("hippocampus"), ""
    if hippocampus:
        cases = len(hippocampus["cases"])
        for row in rows:
            if row[0] == "hippocampus":
                row[0] = f"hippocampus ({cases} cases, one process)"
        model = next((m for m in d["models"].values() if m.get("kind") == "hippocampus"), {})
        training = model.get("training") or {}
        c = d["comparisons"].get(f"{model.get('dataset')}|hippocampus", {})
        found = [
            f"{setting.replace('_', ' ')} mean {f4(v['mean'])}, worst case {f4(v['case_mean_min'])}"
            for setting in ("tta_off", "tta_on")
            if (v := c.get(f"volseg_fp32_{setting}_vs_nnunet_{setting}")) and v.get("mean") is not None
        ]
        agreement = (
            f" A hippocampus `3d_fullres` model nnU-Net trained on volseg's split for {training.get('budget_minutes')}"
            f" min ({training.get('epochs')} epochs of {training.get('iterations_per_epoch')} iterations; val Dice"
            f" {f4(training['val_dice']) if training.get('val_dice') is not None else '?'}"
            f"{', barely trained too' if (training.get('val_dice') or 0) < 0.5 else ''}),"
            f" its {cases} held-out test MRIs given to each tool as one folder; volseg OpenVINO fp32 labels against"
            f" nnU-Net's, Dice per label over the cases: {'; '.join(found) or 'not run'}."
        )
    return (
        f"A 3 mm CT model nnU-Net itself trained (barely: its labels measure the tools' agreement, not a usable"
        f" model), whole case file to file, one process each, on a quiet machine; CTs: {cts}."
        + agreement
        + " Speed-up: nnU-Net's time in the same setting over volseg's (defaults: nnU-Net's default, mirroring on,"
        " over volseg's default). Label agreement per run and label:"
        " [`nnunet_models.md`](../benchmarks/results/nnunet_models.md).\n\n"
        + table(["input", "setting", "run", "s", "peak MB", "speed-up vs nnU-Net"], rows)
        + f"\n\nGoals on the CTs, nnU-Net's time over volseg's in the same TTA setting: {goals}. Not run yet: "
        + "; ".join(d.get("not_run", []))
        + ". "
        + source("nnunet_models")
    )


def nnunet_engines() -> str:
    """Per window on each engine, one whole case stage by stage, and the fp32 bound that follows."""
    d = result("nnunet_engines")
    rows = [
        [r["engine"], f"skipped: {r['skipped']}", "", ""]
        if "skipped" in r
        else [r["engine"], f2(r["window_s"]), f"{r['gflop']:.0f}", f"{r['gflop_per_s']:.0f}"]
        for r in d["engines"]
    ]
    cases = [
        [
            f"OpenVINO {r['precision']}",
            str(r["windows"]),
            *(f"{r['stages'][k]:.1f}" for k in ("read", "preprocess", "network", "export")),
            f"{r['total_s']:.1f}",
        ]
        for r in d["case_runs"]
        if "stages" in r
    ]
    text = (
        f"Where the time goes: one {'x'.join(map(str, d['patch']))} window of `{d['model']}` on each engine, and"
        f" the case `{d['case']}` through volseg in one process (start-up, model loading and writing excluded):\n\n"
        + table(["engine", "s per window", "GFLOP per window", "GFLOP/s"], rows)
        + "\n\n"
        + table(["run", "windows", "read s", "preprocess s", "network s", "export s", "total s"], cases)
    )
    fp32 = next((r for r in d["case_runs"] if r.get("precision") == "fp32" and "stages" in r), None)
    ct = d["case"].removesuffix(".nii.gz").removesuffix("_0000")
    own = d.get("nnunet_seconds") or next(
        (
            r["record"]["seconds"]
            for r in result("nnunet_models")["rows"]
            if r["record"]["ct"] == ct and r["record"]["run"] == "nnunet_tta_off"
        ),
        None,
    )
    if own and fp32:
        text += (
            f"\n\n`nnUNetv2_predict` takes {own:.1f} s on this case with TTA off; volseg's fp32 network alone takes"
            f" {fp32['stages']['network']:.1f} s of it, so an fp32 run can be at most"
            f" {times(own / fp32['stages']['network'])} faster than nnU-Net here, with everything but the network free."
        )
    return text + "\n\n" + source("nnunet_engines", "nnunet_models")


def card_hippocampus() -> str:
    h = hippocampus()
    a = h["agreement"]
    hip = result("int8")["rows"][0]
    return "\n".join(
        [
            f"- **Parameters**: {n(h['parameters'])} (counted from `model.pt`).",
            f"- **Training time**: {h['minutes']:.0f} min of CPU training to the shipped epoch {h['epoch']} (its"
            " epochs' summed seconds, from the checkpoint's history; no GPU).",
            f"- **Validation** (44 cases, whole volumes, best epoch {h['epoch']}): mean Dice {f4(h['best_dice'])}"
            f" (anterior {f4(h['best_val']['anterior'])}, posterior {f4(h['best_val']['posterior'])}).",
            f"- **Test** (the {h['cases']} bundled test cases, never seen in training or model selection): Dice"
            f" anterior {f4(h['fp32']['anterior'])}, posterior {f4(h['fp32']['posterior'])}, mean"
            f" {f4(h['fp32_mean'])} (fp32, from `int8.json`).",
            f"- **INT8 twin** agreement on those cases: labels vs fp32 at Dice"
            f" {' / '.join(f4(v) for v in a['dice_vs_fp32_mean'].values())} mean,"
            f" {' / '.join(f4(v) for v in a['dice_vs_fp32_min'].values())} worst (anterior / posterior); Dice"
            f" against the manual labels {' / '.join(f4(v) for v in h['int8'].values())} (fp32"
            f" {' / '.join(f4(v) for v in h['fp32'].values())}). A {'x'.join(map(str, result('int8')['window']))}"
            f" window runs {times(hip['speedup_vs_fp32'], 1)} faster than OpenVINO fp32"
            f" ({hip['window_s'] * 1000:.0f} vs {result('int8')['fp32_window_s'] * 1000:.0f} ms,"
            " `benchmarks/results/int8.md`).",
        ]
    )


def card_abdomen() -> str:
    model = training_record(PRETRAINED / "abdomen-ct" / "model.pt")
    locator = training_record(PRETRAINED / "abdomen-ct" / "locator.pt")
    fp32, int8 = abdomen_ircadb("auto"), abdomen_ircadb("int8")
    a = pretrained_json("abdomen-ct", "int8.json")["agreement"]
    worst = a["dice_vs_fp32_min"]
    below = [ORGAN[k] for k in ORGAN if worst[k] < INT8_AUTO_BAR]
    ct = result("int8_abdomen_ct")
    base = next(r for r in ct["rows"] if r["keep_fp32"] == "none")
    met = [ORGAN[k] for k in ORGAN if fp32[k] >= GOAL_ABDOMEN_CT[k]]
    return "\n".join(
        [
            f"- **Parameters**: {n(model['parameters'])} (counted from `model.pt`).",
            f"- **Training time**: {model['minutes']:.0f} min of CPU training over {model['epochs']} epochs (the"
            " checkpoint's history); the learning rate ended at"
            f" {model['lr_end_share']:.0%} of its peak.",
            "- **Cross-source Dice** on 3D-IRCADb-01 patient 1, a contrast (venous) CT with **manual** masks, never"
            " seen in training, scored on its own grid with volseg's window-aligned body crop"
            " (`benchmarks/results/whole_volume_abdomen_ct.json`): "
            + ", ".join(f"{ORGAN[k]} **{f3(fp32[k])}**" for k in ORGAN)
            + f". The goals were {' / '.join(f'{v:.2f}' for v in GOAL_ABDOMEN_CT.values())}: met for "
            + (", ".join(met) if met else "no organ")
            + ".",
            "- **INT8 twin** (`int8.json`): labels vs fp32, Dice per organ, worst of the"
            f" {a['cases']} check CTs: " + ", ".join(f"{ORGAN[k]} {f3(worst[k])}" for k in ORGAN) + "; on IRCADb"
            f" against the manual masks int8 scores {organs(int8)} (fp32 {organs(fp32)}). "
            + (
                f"The {', '.join(below)} {'is' if len(below) == 1 else 'are'} below the {INT8_AUTO_BAR} agreement"
                " bar, so `--precision auto` keeps this model in fp32; `--precision int8` forces the twin"
                if below
                else "Every organ reaches the agreement bar, so `--precision auto` runs the twin"
            )
            + f" (window {'x'.join(map(str, ct['window']))}: {times(base['speedup_vs_fp32'], 1)} faster than"
            " OpenVINO fp32, `benchmarks/results/int8_abdomen_ct.md`).",
            f"- **Locator for `--roi`** (`locator.pt`): {n(locator['parameters'])} parameters, trained"
            f" {locator['minutes']:.0f} min ({locator['epochs']} epochs, its checkpoint's history).",
        ]
    )


def nnunet_int8_variants() -> str:
    """The NNCF settings tried for nnU-Net int8 twins: worst label's Dice vs fp32 per CT, window time."""
    d = result("nnunet_int8_variants")
    cases = sorted({c for r in d["rows"] for c in r["cases"]})
    rows = [
        [
            r["calibration"],
            f"`{r['variant']}`",
            str(r["fp32_convolutions"]),
            f2(r["window_s"]),
            *(f4(min(r["cases"][c]["dice_vs_fp32"].values())) if c in r["cases"] else "—" for c in cases),
        ]
        for r in d["rows"]
    ]
    models = sorted({r["model"] for r in d["rows"]})
    return (
        f"NNCF settings for the int8 twin of `{', '.join(models)}`: each quantizes the model from the windows"
        " that the twin export cuts from the calibration scans; then each CT is segmented (TTA off) in fp32 and in"
        " int8, and the table gives the worst label's Dice of int8 against fp32"
        " ([`nnunet_int8_variants.md`](../benchmarks/results/nnunet_int8_variants.md) has every label):\n\n"
        + table(["calibration", "variant", "fp32 convolutions", "s per window", *cases], rows)
        + "\n\n"
        + source("nnunet_int8_variants")
    )


RENDERERS: dict[str, Callable[[], str]] = {
    "readme-demo": readme_demo,
    "readme-results": readme_results,
    "training-default-model": training_default_model,
    "nnunet-budget": nnunet_budget,
    "comparison-summary": comparison_summary,
    "benchmarks-summary": benchmarks_summary,
    "whole-volume": whole_volume,
    "whole-volume-window1": whole_volume_window1,
    "whole-volume-ircadb": whole_volume_ircadb,
    "models-forward": models_forward,
    "batch-scale": batch_scale,
    "report-page": report_page,
    "ddp-throughput": ddp_throughput,
    "int8-table": int8_table,
    "int8-keep-fp32": int8_keep_fp32,
    "inference-settings": inference_settings,
    "roi-cascade": roi_cascade,
    "archive-discovery": archive_discovery,
    "abdomen-ct-ircadb": abdomen_ct_ircadb,
    "abdomen-ct-backends": abdomen_ct_backends,
    "nnunet-parity": nnunet_parity,
    "totalseg-parity": totalseg_parity,
    "nnunet-speed": nnunet_speed,
    "nnunet-engines": nnunet_engines,
    "nnunet-int8-variants": nnunet_int8_variants,
    "card-hippocampus-mri": card_hippocampus,
    "card-abdomen-ct": card_abdomen,
}


# ---------------------------------------------------------------------------------------------------
# pages


def render_text(text: str, where: str = "page") -> str:
    """The page with every rendered block filled anew."""

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise KeyError(f"{where}: no renderer named {name!r} (known: {', '.join(sorted(RENDERERS))})")
        indent = match["indent"]
        body = "\n".join((indent + line).rstrip() for line in RENDERERS[name]().rstrip("\n").split("\n"))
        return f"{indent}<!-- rendered:{name} -->\n{body}\n{indent}<!-- /rendered -->"

    return BLOCK.sub(fill, text)


def render_all() -> dict[Path, tuple[str, str]]:
    """{page: (committed text, rendered text)} for every page holding a rendered block."""
    out = {}
    for path in pages():
        text = path.read_text(encoding="utf-8")
        if "<!-- rendered:" in text:
            out[path] = (text, render_text(text, str(path.relative_to(REPO))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 naming pages that differ")
    args = parser.parse_args(argv)
    differ = []
    for path, (old, new) in render_all().items():
        if old != new:
            differ.append(str(path.relative_to(REPO)))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check:
        if differ:
            print("pages that differ from their rendering (run python benchmarks/render_docs.py):")
            print("\n".join(f"  {p}" for p in differ))
            return 1
        print("every rendered page is up to date")
        return 0
    print("\n".join(f"rewrote {p}" for p in differ) or "nothing to rewrite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
