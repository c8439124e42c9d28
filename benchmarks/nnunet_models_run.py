"""``benchmarks/nnunet_models.py``, step 2: each timed run (nnUNetv2_predict and volseg in each setting),
the int8 twins, and the records that let a later invocation reuse them."""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from benchmarks.nnunet_models_common import (  # noqa: E402
    CONFIGURATION,
    LABELS,
    PLANS,
    RUNS,
    TRAINER_NAME,
    log,
    run,
    timed,
    wait_quiet,
)
from volseg.nnunet.int8 import KEEP_FP32


def export_int8(
    model: dict, work: Path, env: dict, calibration: tuple[Path, Path] | None = None, test_cts: dict | None = None
) -> dict:
    """``volseg export MODEL --precision int8`` calibrated on the model's training CT and checked on it and on
    the ``test_cts`` ({name: image}: agreement with fp32 needs no labels, and CTs the twin was not calibrated on
    are the ones that tell), or on ``calibration`` (a calibration manifest and a check manifest), once per
    checkpoint, twin recipe and check set, niced. It also leaves the fp32 ONNX in the cache, so no timed fp32
    run pays for the export."""
    name = model["dataset"]
    record_path = work / "models" / f"{name}.int8.json"
    checked = [[n, str(p)] for n, p in sorted((test_cts or {}).items())]
    if record_path.exists():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        twin = record.get("twin_record") or {}
        if (
            record.get("checkpoint_sha256") == model["checkpoint_sha256"]
            and twin.get("keep_fp32") == list(KEEP_FP32)
            and record.get("test_cts_checked", []) == checked
        ):
            return record  # made from this checkpoint by the twin export of this volseg, checked on these CTs
    if calibration is None:
        training = work / "nnUNet_raw" / name
        manifest = work / "models" / f"{name}.check.csv"
        with open(manifest, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["case_id", "image", "label", "split"])
            w.writerow(
                [
                    "abdomenct_000",
                    training / "imagesTr" / "abdomenct_000_0000.nii.gz",
                    training / "labelsTr" / "abdomenct_000.nii.gz",
                    "val",
                ]
            )
            for ct_name, image in checked:
                w.writerow([ct_name, image, "", "val"])
        calibration = (training / "imagesTr", manifest)
    cmd = [
        "nice",
        "-n",
        "19",
        sys.executable,
        "-m",
        "volseg",
        "export",
        model["model_folder"],
        "--precision",
        "int8",
        "--calibration",
        calibration[0],
        "--check",
        calibration[1],
        "--check-split",
        "val",
    ]
    log_path = work / "logs" / f"export_int8_{name}.log"
    seconds = run(cmd, env, log_path)
    twins = sorted((Path(env["XDG_CACHE_HOME"]) / "volseg" / "nnunet_int8").glob("*/int8.json"))
    twin = next(
        (
            json.loads(p.read_text(encoding="utf-8"))
            for p in twins
            if model["checkpoint_sha256"] in json.loads(p.read_text(encoding="utf-8")).get("checkpoints_sha256", [])
        ),
        None,
    )
    record = {
        "checkpoint_sha256": model["checkpoint_sha256"],
        "seconds": round(seconds, 1),
        "command": "volseg " + " ".join(str(c) for c in cmd[6:]),
        "twin_record": twin,
        "test_cts_checked": checked,
        "output_tail": log_path.read_text(encoding="utf-8", errors="replace")[-2000:],
    }
    record_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def run_command(run_name: str, model: dict, ct: dict, bin_dir: Path, out: Path) -> list:
    """The run's command; a test set with a ``folder`` (the hippocampus cases) is given whole to both tools."""
    image = Path(ct["image"])
    if run_name.startswith("nnunet"):
        cmd = [
            bin_dir / "nnUNetv2_predict",
            "-i",
            ct.get("folder", image.parent),
            "-o",
            out,
            "-d",
            model["dataset_id"],
            "-c",
            CONFIGURATION,
            "-tr",
            model.get("trainer", TRAINER_NAME),
            "-p",
            PLANS,
            "-f",
            model.get("fold", "all"),
            "-device",
            "cpu",
        ]
        return cmd + (["--disable_tta"] if run_name == "nnunet_tta_off" else [])
    cmd = [sys.executable, "-m", "volseg", "infer", image, "--model", model["model_folder"], "-o", out]
    if run_name != "volseg_default":
        if "torch" in run_name:
            cmd += ["--backend", "torch"]
        else:
            precision = next((p for p in ("int8", "bf16") if p in run_name), "fp32")
            cmd += ["--backend", "openvino", "--precision", precision]
        cmd += ["--tta"] if run_name.endswith("tta_on") else []
    return cmd


def outputs_of(out: Path, ct_name: str, ct: dict, tool: str) -> dict[str, Path]:
    """Each case's label map, named by the case id (the input's name less _0000): nnU-Net's CASE.nii.gz,
    volseg's CASE_seg.nii.gz."""
    suffix = "_seg.nii.gz" if tool == "volseg" else ".nii.gz"
    return {case: out / f"{case}{suffix}" for case in ct.get("cases", [ct_name])}


def display(cmd: list, bin_dir: Path) -> str:
    words = [str(c) for c in cmd]
    if words[:3] == [sys.executable, "-m", "volseg"]:
        words = ["volseg", *words[3:]]
    elif words[0].startswith(str(bin_dir)):
        words[0] = Path(words[0]).name
    return " ".join(words)


def labels_of(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(path))
    return np.asarray(image.dataobj).astype(np.int16), image.affine


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two masks; None when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def dice_per_label(pred: np.ndarray, ref: np.ndarray, labels: dict = LABELS) -> dict:
    return {name: dice(pred == value, ref == value) for name, value in labels.items() if value}


def mean_of(values: dict) -> float | None:
    kept = [v for v in values.values() if v is not None]
    return float(np.mean(kept)) if kept else None


def reference_masks(ct: dict) -> dict[str, np.ndarray] | None:
    if "masks" in ct:
        return {organ: np.asarray(nib.load(p).dataobj) > 0 for organ, p in ct["masks"].items()}
    if "reference" in ct:
        ref = np.asarray(nib.load(ct["reference"]).dataobj)
        return {name: ref == value for name, value in LABELS.items() if value}
    return None


def disturbed(record: dict, max_busy: float) -> bool:
    """A run that did not start on a quiet machine, or during which other processes kept ``max_busy`` cores
    or more busy on average."""
    others = record.get("others_cores_during")
    return not record.get("quiet") or others is None or others >= max_busy


def earlier_int8(work: Path, dataset: str) -> dict | None:
    """The int8 export record an earlier invocation left for ``dataset``, if any."""
    path = work / "models" / f"{dataset}.int8.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def int8_twin(run_name: str, model: dict) -> str | None:
    """For an int8 run, a digest of the twin's export record (its agreement aside: that is measured after): a
    run of an earlier twin is repeated."""
    if "int8" not in run_name:
        return None
    twin = {k: v for k, v in (model.get("int8", {}).get("twin_record") or {}).items() if k != "agreement"}
    return hashlib.sha256(json.dumps(twin, sort_keys=True).encode()).hexdigest()


def do_run(
    run_name: str,
    model: dict,
    ct_name: str,
    ct: dict,
    bin_dir: Path,
    work: Path,
    nn_env: dict,
    vs_env: dict,
    args,
    first: list,
) -> dict:
    folder = work / "timed" / model["dataset"] / ct_name / run_name
    record_path = folder / "run.json"
    if record_path.exists() and not args.redo:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        same = (
            record.get("checkpoint_sha256") == model["checkpoint_sha256"] and record.get("input_sha256") == ct["sha256"]
        )
        if same and record.get("int8_twin") == int8_twin(run_name, model):
            if not (args.redo_disturbed and disturbed(record, args.max_busy)):
                log(f"reusing {record_path}")
                return record
            log(
                f"repeating {record_path}: disturbed (quiet at start: {record.get('quiet')}, other processes' "
                f"cores during it: {record.get('others_cores_during')})"
            )
    out = folder / "out"
    if out.exists():
        shutil.rmtree(out)
    cmd = run_command(run_name, model, ct, bin_dir, out)
    load = wait_quiet(args.max_load, args.max_busy, args.quiet_wait if first[0] else args.quiet_wait_each)
    first[0] = False
    started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    result = timed(cmd, nn_env if run_name.startswith("nnunet") else vs_env, folder / "run.log")
    outputs = outputs_of(out, ct_name, ct, RUNS[run_name][0])
    missing = [str(p) for p in outputs.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"{run_name}: no output {', '.join(missing)}; see {folder / 'run.log'}")
    text = (folder / "run.log").read_text(encoding="utf-8", errors="replace")
    engine = re.search(r"backend (\w+) (\w+)", text)
    record = {
        "run": run_name,
        "tool": RUNS[run_name][0],
        "setting": RUNS[run_name][1],
        "model": model["dataset"],
        "spacing_mm": model.get("spacing_mm"),
        "ct": ct_name,
        "command": display(cmd, bin_dir),
        "started": started_at,
        **load,
        **result,
        "output": str(outputs[ct_name]) if ct_name in outputs else str(out),
        **({"outputs": {k: str(v) for k, v in outputs.items()}} if "cases" in ct else {}),
        "checkpoint_sha256": model["checkpoint_sha256"],
        "input_sha256": ct["sha256"],
        "engine": f"{engine.group(1)} {engine.group(2)}" if engine and RUNS[run_name][0] == "volseg" else None,
        "int8_twin": int8_twin(run_name, model),
    }
    record_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record
