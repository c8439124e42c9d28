"""The GPU path checked and measured in one short run, prepared for the first GPU machine this project is lent.

    python benchmarks/gpu_check.py                                  # CUDA when present: results/gpu_check.*
    python benchmarks/gpu_check.py --device cpu                     # the CPU reference: results/gpu_check_cpu.*
    python benchmarks/gpu_check.py --device cpu --tiny --out DIR    # CI: the plumbing and the record, not speed

Each step runs as a user runs it (``python -m volseg ...``) on the device asked for:
- ``volseg train --dims 3 --model attunet --minutes 2`` and ``--dims 2 --model unet --minutes 1`` on the
  embedded data (AMP on CUDA): optimizer steps/s, peak GPU memory and the last validation Dice, read from the
  run's training_log.csv, beside the steps/s of the committed CPU result;
- ``volseg infer`` of the bundled hippocampus MRIs and the bundled CT on the device and on the CPU (torch):
  Dice per label between the two (a check fails below 0.99), seconds per case from volseg_run.csv;
- a pancreas-size volume (a 512x512x150 CT at 0.8x0.8x2.5 mm, on the CT model's grid) through the sliding
  window: windows/s;
- a tiny nnU-Net v2 folder (the suite's, seeded weights) on the device and on the CPU, and
  ``nnUNetv2_predict_from_modelfolder`` beside them where nnU-Net is installed (same folder, TTA off).
The record names the GPU, its driver, torch, CUDA and cuDNN; benchmarks/record.py adds the CPU and the commit.
A failed label check exits 1, after the record is written. docs/gpu.md says how to run it on a lent machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.record import REPO, provenance, write  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
CT = REPO / "data" / "abdomen_ct" / "ct.nii.gz"
LABEL_FLOOR = 0.99  # Dice per label between the device's labels and the CPU's
TRAINING = (  # (dims, model, minutes on a full run)
    (3, "attunet", 2.0),
    (2, "unet", 1.0),
)
TINY_TRAINING = ["--epochs", "1", "--set", "train.iterations_per_epoch=2", "--set", "model.features=[4, 8]"]


def volseg(*args: str | Path) -> float:
    """``python -m volseg ARGS`` from the repository root; its wall seconds. A failure stops the check."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "volseg", *map(str, args)], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"volseg {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_record(device: torch.device) -> dict:
    """What ran the check: torch, CUDA and cuDNN versions, and on a GPU its name, memory and driver."""
    record = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type != "cuda":
        return record
    properties = torch.cuda.get_device_properties(device)
    smi = shutil.which("nvidia-smi")
    driver = None
    if smi:
        query = [smi, "--query-gpu=driver_version", "--format=csv,noheader", f"--id={device.index or 0}"]
        driver = subprocess.run(query, capture_output=True, text=True).stdout.strip() or None
    record.update(
        gpu=properties.name,
        gpu_memory_gib=round(properties.total_memory / 2**30, 1),
        capability=f"{properties.major}.{properties.minor}",
        driver=driver,
        cudnn=torch.backends.cudnn.version(),
    )
    return record


def train(dims: int, model: str, minutes: float, device: str, tiny: bool, work: Path) -> dict:
    """One ``volseg train`` run on the embedded data: the last epoch's steps/s and peak GPU memory, the last
    validation's mean Dice, the wall seconds of the whole command."""
    run = work / f"train_{model}_{dims}d"
    budget = TINY_TRAINING if tiny else ["--minutes", str(minutes)]
    wall = volseg("train", "--dims", dims, "--model", model, "--device", device, "-o", run, *budget)
    with open(run / "training_log.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    validated = [r for r in rows if r["val_dice_mean"]]
    last = rows[-1]
    return {
        "epochs": len(rows),
        "steps_per_second": round(float(last["steps_per_second"]), 2),
        "peak_gpu_memory_mb": float(last["peak_gpu_memory_mb"]) if last["peak_gpu_memory_mb"] else None,
        "val_dice": float(validated[-1]["val_dice_mean"]) if validated else None,
        "wall_s": round(wall, 1),
    }


def agreement(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    """volseg's Dice (its evaluation's, 1.0 where both maps agree a label is absent) of each label found in either
    map, background left out."""
    from volseg.evaluation.metrics import dice_per_label

    found = sorted((set(np.unique(a).tolist()) | set(np.unique(b).tolist())) - {0})
    return dice_per_label(a.astype(np.int32), b.astype(np.int32), found)


def read_labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*_seg.nii.gz"))}


def seconds_per_case(folder: Path) -> list[float]:
    with open(folder / "volseg_run.csv", newline="", encoding="utf-8") as f:
        return [float(r["seconds"]) for r in csv.DictReader(f) if r["status"] == "ok"]


def infer(name: str, inputs: list[Path], model: str | Path, device: str, work: Path) -> dict:
    """``volseg infer`` of ``inputs`` on ``device`` and on the CPU (torch both): the lowest Dice per label
    between the two over the cases, seconds per case on each (the first case of a process pays the warm-up)."""
    runs = {}
    for where in dict.fromkeys([device, "cpu"]):
        out = work / f"infer_{name}_{where.replace(':', '')}"
        volseg("infer", *inputs, "--model", model, "--device", where, "--backend", "torch", "-o", out)
        runs[where] = (read_labels(out), seconds_per_case(out))
    (ours, ours_s), (cpu, cpu_s) = runs[device], runs["cpu"]
    if set(ours) != set(cpu) or not ours:
        raise SystemExit(f"{name}: the device wrote {sorted(ours)}, the CPU {sorted(cpu)}")
    lowest: dict[int, float] = {}
    for case, labels in ours.items():
        for value, dice in agreement(labels, cpu[case]).items():
            lowest[value] = min(dice, lowest.get(value, 1.0))
    return {
        "cases": len(ours),
        "lowest_dice_per_label": {str(k): round(v, 5) for k, v in lowest.items()},
        "passed": all(v >= LABEL_FLOOR for v in lowest.values()),
        "first_case_s": round(ours_s[0], 2),
        "median_case_s": round(statistics.median(ours_s), 2),
        "cpu_median_case_s": round(statistics.median(cpu_s), 2),
    }


def hippocampus_cases(tiny: bool) -> list[Path]:
    with open(REPO / "data_manifest.csv", newline="", encoding="utf-8") as f:
        test = [REPO / r["image"] for r in csv.DictReader(f) if r["split"] == "test"]
    return test[:2] if tiny else test


def sliding_window(device: torch.device, tiny: bool) -> dict:
    """A pancreas-size CT on the abdomen-ct model's grid through volseg's sliding window: windows/s (the second
    of two passes; the first pays cuDNN's start) and the peak GPU memory."""
    from volseg.inference.open_model import InferenceOptions, open_segmenter
    from volseg.runtime.predict import predict_probabilities

    segmenter = open_segmenter("abdomen-ct", InferenceOptions(device=str(device), backend="torch"))
    spacing = segmenter.cfg.preprocess.spacing
    shape = [round(n * s / t) for n, s, t in zip((512, 512, 150), (0.8, 0.8, 2.5), spacing)]
    if tiny:
        shape = [n // 4 for n in shape]
    image = torch.randn(segmenter.cfg.data.in_channels, *shape)
    windows = []

    def counted(x: torch.Tensor) -> torch.Tensor:
        windows.append(x.shape[0])
        return segmenter.network(x)

    seconds = []
    for _ in range(1 if tiny else 2):
        windows.clear()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        predict_probabilities(
            segmenter.model, image, segmenter.cfg, device, overlap=0.5, batch_size=segmenter.batch_size, network=counted
        )
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "grid": shape,
        "windows": sum(windows),
        "seconds": round(seconds[-1], 2),
        "windows_per_second": round(sum(windows) / seconds[-1], 1),
        "peak_gpu_memory_mb": round(peak) if peak else None,
    }


def synthetic_ct(path: Path, tiny: bool) -> Path:
    """A CT-like volume (air, soft tissue, two brighter organs) at 1.5x1.5x2.5 mm, named as nnU-Net reads it."""
    shape = (48, 48, 32) if tiny else (160, 160, 96)
    grid = np.indices(shape).astype(np.float32)
    centre = np.array(shape, np.float32)[:, None, None, None] / 2
    radius = np.sqrt((((grid - centre) / centre) ** 2).sum(0))
    ct = np.where(radius < 0.9, 40.0, -1000.0).astype(np.float32)
    ct[radius < 0.45] = 120.0
    ct[(radius < 0.25) & (grid[0] > centre[0])] = 250.0
    ct += np.random.default_rng(0).normal(0, 10, shape).astype(np.float32)
    path.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(ct, np.diag([1.5, 1.5, 2.5, 1.0])), path / "case_0000.nii.gz")
    return path / "case_0000.nii.gz"


def nnunet(device: str, tiny: bool, work: Path) -> dict:
    """The suite's tiny nnU-Net folder on the device and on the CPU through ``volseg infer``, and nnU-Net's
    own predictor on the device beside it where ``nnUNetv2_predict_from_modelfolder`` is installed."""
    from tests.nnunet_folder import write_model_folder

    folder = write_model_folder(work / "nnunet_model", folds=("0",))
    case = synthetic_ct(work / "nnunet_case", tiny)
    result = infer("nnunet", [case], folder, device, work)
    predict = shutil.which("nnUNetv2_predict_from_modelfolder")
    if predict is None:
        result["nnunet_predict"] = "not installed"
        return result
    out = work / "nnunet_predict"
    command = [predict, "-i", case.parent, "-o", out, "-m", folder, "-f", "0", "-device", device.split(":")[0]]
    started = time.perf_counter()
    subprocess.run([*map(str, command), "--disable_tta"], check=True, capture_output=True)
    theirs = np.asarray(nib.load(out / "case.nii.gz").dataobj)
    ours = read_labels(work / f"infer_nnunet_{device.replace(':', '')}")
    mine = next(iter(ours.values()))
    result["nnunet_predict"] = {
        "process_s": round(time.perf_counter() - started, 1),
        "voxels_differing": int((theirs != mine).sum()),
        "dice_per_label": {str(k): round(v, 5) for k, v in agreement(mine, theirs).items()},
    }
    return result


def cpu_reference() -> dict:
    """The committed CPU run's training steps/s, by run name (empty when there is none yet)."""
    path = RESULTS / "gpu_check_cpu.json"
    if not path.exists():
        return {}
    return {k: v["steps_per_second"] for k, v in json.loads(path.read_text(encoding="utf-8"))["train"].items()}


def markdown(result: dict) -> list[str]:
    d = result["device"]
    where = f"{d.get('gpu')} ({d.get('gpu_memory_gib')} GiB, driver {d.get('driver')})" if "gpu" in d else "CPU"
    lines = [
        f"# The GPU check on {d['device']}: {where}, torch {d['torch']}, CUDA {d['cuda']}, cuDNN {d.get('cudnn')}",
        "",
        "| training run | epochs | steps/s | CPU steps/s (committed) | peak GPU memory MB | last val Dice | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in result["train"].items():
        lines.append(
            f"| {name} | {t['epochs']} | {t['steps_per_second']} | {t.get('cpu_steps_per_second') or '—'} | "
            f"{t['peak_gpu_memory_mb'] or '—'} | {t['val_dice']} | {t['wall_s']} |"
        )
    lines += ["", "| inference | cases | lowest Dice per label vs CPU | passed | s/case (first) | CPU s/case |"]
    lines.append("|---|---|---|---|---|---|")
    for name, i in result["infer"].items():
        dice = ", ".join(f"{k}: {v}" for k, v in i["lowest_dice_per_label"].items())
        lines.append(
            f"| {name} | {i['cases']} | {dice} | {i['passed']} | {i['median_case_s']} ({i['first_case_s']}) | "
            f"{i['cpu_median_case_s']} |"
        )
    w = result["sliding_window"]
    lines += [
        "",
        f"Sliding window, abdomen-ct model, grid {'x'.join(map(str, w['grid']))}: {w['windows']} windows in "
        f"{w['seconds']} s, {w['windows_per_second']} windows/s, peak GPU memory {w['peak_gpu_memory_mb'] or '—'} MB.",
        f"nnUNetv2_predict_from_modelfolder on the same folder: {json.dumps(result['infer']['nnunet'].get('nnunet_predict'))}.",
        f"Wall time of the whole check: {result['wall_s']} s.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="seconds, not minutes: the plumbing, not speed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    made = provenance(__file__)
    device = torch.device(args.device)
    started = time.perf_counter()
    result: dict = {"device": device_record(device), "tiny": args.tiny, "train": {}, "infer": {}}
    reference = cpu_reference()
    with tempfile.TemporaryDirectory(prefix="volseg-gpu-check-") as tmp:
        work = Path(tmp)
        for dims, model, minutes in TRAINING:
            name = f"{model} {dims}D"
            result["train"][name] = train(dims, model, minutes, args.device, args.tiny, work)
            result["train"][name]["cpu_steps_per_second"] = reference.get(name)
        result["infer"]["hippocampus"] = infer(
            "hippocampus", hippocampus_cases(args.tiny), "hippocampus-mri", args.device, work
        )
        result["infer"]["abdomen CT"] = infer("ct", [CT], "abdomen-ct", args.device, work)
        result["infer"]["nnunet"] = nnunet(args.device, args.tiny, work)
        result["sliding_window"] = sliding_window(device, args.tiny)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    name = "gpu_check" + ("_tiny" if args.tiny else "") + ("_cpu" if device.type == "cpu" else "")
    print(write(args.out, name, result, markdown(result), made))
    if not all(i["passed"] for i in result["infer"].values()):
        raise SystemExit(f"a label check fell below Dice {LABEL_FLOOR}: see {args.out / name}.md")


if __name__ == "__main__":
    main()
