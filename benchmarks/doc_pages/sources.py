"""What the page renderers share: the committed results and model files they read (checkpoints without
torch, as data only), where a figure came from (machine, command, date), and number formatting."""

from __future__ import annotations

import collections
import csv
import json
import math
import pickle
import re
import statistics
import zipfile
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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
