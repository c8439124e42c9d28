"""Issue 30, acceptance 1: nnU-Net v2 models run by ``nnUNetv2_predict`` and by ``volseg infer``, side by side.

    .venv/bin/python benchmarks/nnunet_models.py [--spacing 3 1.5] [--ct philips bundled ircadb] [--no-ct]
        [--no-hippocampus] [--hippocampus-minutes 25] [--test-cases 10]
        [--no-tta-off] [--no-tta-on] [--no-defaults] [--no-int8] [--epochs 10 --iterations 20]

0. The hippocampus model (``--no-hippocampus`` skips it): MSD Task04 (``--hippocampus-source``, default
   ``../shared/data/msd_task04_hippocampus``) on volseg's split (``pipelines/hippocampus_manifest.py``: 176
   train / 44 val as nnU-Net's fold 0, the 10 bundled test cases held out), made into nnU-Net's raw dataset
   by ``benchmarks/nnunet_budget.py`` (``Dataset004_Hippocampus``), ``3d_fullres`` fold 0 trained by its
   ``nnUNetTrainerBudget`` (nnU-Net's default recipe, 25-iteration epochs, their number fitted to
   ``--hippocampus-minutes`` of training wall clock; nnU-Net's final validation of the 44 val cases runs),
   under ``nice -n 19``. Its test set: the ``--test-cases`` (10) held-out cases copied into one folder that
   both tools get whole (one ``nnUNetv2_predict`` and one ``volseg infer`` process for all of them, as a user
   runs them), scored against their manual labels; Dice per case and label, then the mean over cases per
   label and the worst case. Its int8 twin is calibrated on ``--calibration-cases`` (10) training cases and
   checked on as many val cases. The same timed runs as the CTs' follow.
1. Data (all of it in ``--work``, default ``runs/nnunet_models/``; none of it is committed):
   - training: the bundled TotalSegmentator example CT and its 4 organ labels (``data/abdomen_ct/ct.nii.gz`` +
     ``ct_labels.nii.gz``, Apache-2.0), resampled with SimpleITK (linear for the image, nearest for the labels)
     to 3 mm (``Dataset931_AbdomenCT3mm``, TotalSegmentator's ``--fast`` spacing) and 1.5 mm
     (``Dataset932_AbdomenCT1p5mm``, its full-resolution spacing);
   - test CTs, each written once as NIfTI with SimpleITK and given as the same file to both tools:
     ``philips`` (the TCIA Philips planning CT, ``../shared/data/tcia_pancreatic_ct_cbct_seg_cb001/planning_ct``,
     DICOM), ``bundled`` (the training CT itself, as shipped, 3 mm: seen in training), ``ircadb`` (3D-IRCADb-01
     patient 1, ``../shared/data/ircadb_3d``, CC BY-NC-ND: local use only; its manual liver, spleen and kidney
     masks score both tools). A missing input is named and skipped; the rest goes on.
2. nnU-Net 2.8.1 in its own venv (``--venv``, created when missing by
   ``benchmarks/nnunet_env.py``): ``nnUNetv2_plan_and_preprocess -c 3d_fullres``, then ``nnUNetv2_train ... all`` with
   ``nnUNetTrainerVolsegShort`` (written into nnU-Net's package: nnU-Net's default recipe, ``--epochs`` x
   ``--iterations``, final validation skipped; under bf16 autocast where the CPU computes bf16 natively,
   ``--train-bf16``: 21 s per iteration on a 2-core Zen 4, where fp32's forward and backward alone take
   41 s). Short on purpose: at nnU-Net's pace on 2 cores a usable CT model takes days, and the tools' label
   agreement needs labels, not a good model.
   Trained models are reused; one trained for fewer epochs of the same length goes on (``--c``).
3. ``volseg export MODEL --precision int8 --calibration <the training CT> --check <a manifest of the training
   CT and the test CTs it was not trained on>`` (agreement with fp32 needs no labels; the worst CT is what
   ``--precision auto`` judges), once per model, twin recipe (``volseg.nnunet.int8.KEEP_FP32``) and check set;
   int8 runs of an earlier twin are repeated. This also makes the fp32 ONNX that OpenVINO compiles, so no
   timed run pays for it.
4. Timed runs, each a separate process, whole case file to file, under ``/usr/bin/time -v`` (its peak RSS,
   which is the largest single process's; the summed RSS of the process tree is sampled too):
   - ``tta_off``: ``nnUNetv2_predict -device cpu -f all --disable_tta``; ``volseg infer --backend openvino
     --precision fp32`` and ``--precision int8``; ``volseg infer --backend torch`` (volseg's pipeline on
     the runtime nnU-Net uses, which separates the pipeline's exactness from OpenVINO's fp32 arithmetic); and
     ``--precision bf16`` where the CPU computes bf16 natively (``--no-bf16`` skips it);
   - ``tta_on``: ``nnUNetv2_predict -device cpu -f all`` (mirroring: nnU-Net's default) and the same volseg
     runs with ``--tta``;
   - ``defaults``: each tool as a user runs it: nnU-Net's default (the ``tta_on`` run) against ``volseg infer
     --model MODEL`` (``--backend auto --precision auto``, no TTA).
   Before each timed run the machine is checked: 1-minute load average below ``--max-load`` and, sampled
   over 10 s while this script sleeps, fewer than ``--max-busy`` cores busy (the load average alone also
   carries the tail of this script's previous run); it waits up to ``--quiet-wait`` seconds for the first
   run of an invocation, ``--quiet-wait-each`` for the others, and records both either way. Each run also
   records the CPU that the rest of the machine used while it ran (``/proc/stat`` less the run's own user +
   system time), so a run disturbed by other work shows it.
5. ``benchmarks/results/nnunet_models.{json,md}`` through ``benchmarks/record.py``: every run record found in
   the work folder (runs of earlier invocations included, so parts can be run separately), with seconds, peak
   MB, speed-up against ``nnUNetv2_predict`` in the same setting, label Dice of volseg against nnU-Net (per
   label and mean), int8 against fp32, and against the manual masks where a CT has them.

Run records are kept in ``<work>/timed/``; a run already recorded is not repeated (``--redo`` repeats the
selected ones, ``--redo-disturbed`` those that did not start quiet or shared the CPU with other work). Run it alone: these are wall-clock times on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import nnunet_budget, nnunet_env  # noqa: E402
from benchmarks.nnunet_env import ensure, environment, short_trainer, versions  # noqa: E402
from benchmarks.record import provenance, write  # noqa: E402
from volseg.nnunet.int8 import KEEP_FP32  # noqa: E402
from volseg.runtime.backends import native_bf16  # noqa: E402

TRAINER_NAME = "nnUNetTrainerVolsegShort"
PLANS = "nnUNetPlans"
CONFIGURATION = "3d_fullres"
SHARED = REPO.parent / "shared" / "data"
BUNDLED = REPO / "data" / "abdomen_ct"
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4}  # data/abdomen_ct
IRCADB_MASKS = {"liver": "liver", "spleen": "spleen", "kidney_right": "rightkidney", "kidney_left": "leftkidney"}
MODELS = {  # spacing (mm) -> (dataset id, dataset name)
    "3": (931, "Dataset931_AbdomenCT3mm"),
    "1.5": (932, "Dataset932_AbdomenCT1p5mm"),
}
CTS = ("philips", "bundled", "ircadb")
# the hippocampus model: its key in ``models``, and the name of its test set (in the runs' "ct" field)
HIPPOCAMPUS = "hippocampus"
HIPPOCAMPUS_ID, HIPPOCAMPUS_DATASET = 4, nnunet_budget.DATASET
HIPPOCAMPUS_LABELS = nnunet_budget.LABELS
HIPPOCAMPUS_TRAINER = nnunet_budget.TRAINER  # nnUNetTrainerBudget: the default recipe in a wall-clock budget
SETTINGS = ("tta_off", "tta_on", "defaults")
# each timed run: (name, tool, setting it belongs to); the nnU-Net default is the tta_on run
RUNS = {
    "nnunet_tta_off": ("nnunet", "tta_off"),
    "volseg_fp32_tta_off": ("volseg", "tta_off"),
    "volseg_int8_tta_off": ("volseg", "tta_off"),
    "volseg_torch_tta_off": ("volseg", "tta_off"),  # volseg's pipeline on nnU-Net's own runtime: exactness apart
    "volseg_bf16_tta_off": ("volseg", "tta_off"),  # OpenVINO bf16, where the CPU computes bf16 natively
    "nnunet_tta_on": ("nnunet", "tta_on"),
    "volseg_fp32_tta_on": ("volseg", "tta_on"),
    "volseg_int8_tta_on": ("volseg", "tta_on"),
    "volseg_default": ("volseg", "defaults"),
}

# written into nnU-Net's package by benchmarks/nnunet_env.py
TRAINER = short_trainer(
    TRAINER_NAME,
    "volseg_models",
    "nnU-Net's default recipe, a few iterations long (benchmarks/nnunet_models.py in volseg). The final\n"
    "    validation (nnU-Net's sliding-window prediction of the validation cases) is skipped: only the weights\n"
    "    are needed.",
    "VOLSEG_NNUNET_SHORT",
    val_iterations=1,
)


# ---------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list, env: dict, log_path: Path) -> float:
    """Run a command, its output into ``log_path``; returns wall seconds. On failure prints the log's tail."""
    return nnunet_env.run(cmd, env, log_path, say=log)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_info() -> dict:
    info: dict = {"cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        names = {
            "model name": "model_name",
            "cpu family": "family",
            "model": "model_number",
            "stepping": "stepping",
            "cpu MHz": "mhz",
        }
        if key in names and names[key] not in info:
            info[names[key]] = value.strip()
        elif key == "flags" and "flags" not in info:
            info["flags"] = value.split()
    flags = set(info.get("flags", []))
    info["simd"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    return info


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def machine_cpu_seconds() -> float:
    """CPU seconds spent by every process on the machine since boot (/proc/stat: all but idle and iowait)."""
    fields = Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def busy_cores(seconds: float) -> float:
    """Cores kept busy by the whole machine over the next ``seconds`` (this script sleeps meanwhile)."""
    before, started = machine_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_cpu_seconds() - before) / (time.monotonic() - started)


def wait_quiet(max_load: float, max_busy: float, wait_s: float, step_s: float = 20.0) -> dict:
    """Wait (up to ``wait_s``) until the 1-minute load average is below ``max_load`` and the machine's other
    processes kept fewer than ``max_busy`` cores busy over the last 10 s; record both either way. (The load
    average alone also carries the decaying tail of this script's previous run.)"""
    first = load_average()
    started = time.monotonic()
    busy = busy_cores(10.0)
    now = load_average()
    while (now[0] >= max_load or busy >= max_busy) and time.monotonic() - started < wait_s:
        log(f"load average {now}, {busy:.2f} cores busy (want < {max_load} and < {max_busy}); waiting")
        time.sleep(min(step_s, max(1.0, wait_s - (time.monotonic() - started))))
        busy = busy_cores(10.0)
        now = load_average()
    return {
        "load_before_wait": first,
        "waited_s": round(time.monotonic() - started, 1),
        "load_at_start": now,
        "busy_cores_10s_before": round(busy, 2),
        "quiet": now[0] < max_load and busy < max_busy,
        "max_load": max_load,
        "max_busy": max_busy,
    }


def timed(cmd: list, env: dict, log_path: Path) -> dict:
    """One process under ``/usr/bin/time -v``: wall seconds, its peak RSS (largest single process) and the
    peak summed PSS of the process tree (sampled every 0.2 s; PSS shares pages between the processes that
    map them, so forked workers are not counted twice)."""
    import psutil

    time_file = log_path.with_suffix(".time")
    full = ["/usr/bin/time", "-v", "-o", str(time_file), *[str(c) for c in cmd]]
    log("+ " + " ".join(str(c) for c in cmd))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    peak_tree = [0]
    tree_cpu: dict[int, float] = {}  # each process's own user + system seconds, last seen
    with open(log_path, "w", encoding="utf-8") as out:
        out.write("+ " + " ".join(str(c) for c in cmd) + "\n")
        out.flush()
        started, machine_before = time.perf_counter(), machine_cpu_seconds()
        proc = subprocess.Popen(full, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample():
            try:
                root = psutil.Process(proc.pid)
            except psutil.Error:
                return
            while not done.is_set():
                total = 0
                try:
                    for p in [root, *root.children(recursive=True)]:
                        try:
                            t = p.cpu_times()
                            tree_cpu[p.pid] = t.user + t.system
                            total += p.memory_full_info().pss
                        except (psutil.Error, AttributeError):
                            try:
                                total += p.memory_info().rss
                            except psutil.Error:
                                pass
                except psutil.Error:
                    pass
                peak_tree[0] = max(peak_tree[0], total)
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        seconds = time.perf_counter() - started
        machine_cpu = machine_cpu_seconds() - machine_before
        done.set()
        sampler.join()
    text = time_file.read_text(encoding="utf-8", errors="replace") if time_file.exists() else ""
    if rc:
        print(log_path.read_text(encoding="utf-8", errors="replace")[-6000:], file=sys.stderr)
        raise SystemExit(f"failed ({rc}) after {seconds:.0f} s: see {log_path}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    elapsed = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    log(f"  {seconds:.1f} s")
    result = {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(int(rss.group(1)) / 1024, 1) if rss else None,
        "peak_tree_pss_mb": round(peak_tree[0] / 2**20, 1),
        "time_v_elapsed": elapsed.group(1) if elapsed else None,
    }
    for key, pattern in (
        ("user_s", r"User time \(seconds\): ([\d.]+)"),
        ("system_s", r"System time \(seconds\): ([\d.]+)"),
        ("cpu_percent", r"Percent of CPU this job got: (\d+)%"),
    ):
        found = re.search(pattern, text)
        result[key] = float(found.group(1)) if found else None
    # what the rest of the machine used meanwhile: every process's CPU time less this run's own. The run's own
    # is the larger of /usr/bin/time's (its waited-for processes) and the sampled sum over its process tree
    # (which also sees workers that are not waited for, less their last 0.2 s)
    own = max((result["user_s"] or 0.0) + (result["system_s"] or 0.0), sum(tree_cpu.values()))
    result.update(
        machine_cpu_s=round(machine_cpu, 1),
        run_cpu_s=round(own, 1),
        tree_cpu_sampled_s=round(sum(tree_cpu.values()), 1),
        others_cores_during=round(max(0.0, machine_cpu - own) / seconds, 2),
    )
    return result


# ---------------------------------------------------------------- data


def resample_to(image, spacing: float, interpolator):
    """``image`` on a grid of ``spacing`` mm covering the same extent (same origin and direction)."""
    import SimpleITK as sitk

    size = [max(1, int(round(n * s / spacing))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(
        image,
        size,
        sitk.Transform(),
        interpolator,
        image.GetOrigin(),
        (spacing,) * 3,
        image.GetDirection(),
        -1024 if interpolator != sitk.sitkNearestNeighbor else 0,
        image.GetPixelID(),
    )


def make_training_dataset(raw: Path, name: str, spacing: float) -> Path:
    """The bundled CT and its labels at ``spacing`` mm as an nnU-Net raw dataset (one case)."""
    import SimpleITK as sitk

    folder = raw / name
    if (folder / "dataset.json").exists():
        return folder
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    image = sitk.ReadImage(str(BUNDLED / "ct.nii.gz"))
    label = sitk.ReadImage(str(BUNDLED / "ct_labels.nii.gz"))
    image = sitk.Cast(resample_to(sitk.Cast(image, sitk.sitkFloat32), spacing, sitk.sitkLinear), sitk.sitkFloat32)
    image = sitk.Cast(sitk.Round(image), sitk.sitkInt16)  # HU stay integers, as in the source
    label = resample_to(label, spacing, sitk.sitkNearestNeighbor)
    case = "abdomenct_000"
    sitk.WriteImage(image, str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
    sitk.WriteImage(label, str(folder / "labelsTr" / f"{case}.nii.gz"))
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": 1,
        "file_ending": ".nii.gz",
        "name": name,
        "description": f"data/abdomen_ct/ct.nii.gz + ct_labels.nii.gz (TotalSegmentator example, "
        f"Apache-2.0) resampled to {spacing:g} mm; benchmarks/nnunet_models.py",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1), encoding="utf-8")  # last: marks it done
    return folder


def dicom_to_nifti(folder: Path, out: Path) -> Path:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        raise SystemExit(f"{folder}: expected one DICOM series, found {len(series)}")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(reader.Execute(), str(out))
    return out


def prepare_ct(ct: str, inputs: Path) -> dict | None:
    """The test CT's NIfTI (``inputs/<ct>/<ct>_0000.nii.gz``, the nnU-Net naming that volseg keeps as case id
    ``<ct>``, alone in its folder: nnU-Net takes every NIfTI of the folder as a case) and its manual masks
    (``references/<ct>/``), or None when its source is absent."""
    import SimpleITK as sitk

    folder = inputs / ct
    image = folder / f"{ct}_0000.nii.gz"
    record_path = folder / "input.json"
    if record_path.exists() and image.exists():
        return json.loads(record_path.read_text(encoding="utf-8"))
    if ct == "philips":
        source = SHARED / "tcia_pancreatic_ct_cbct_seg_cb001" / "planning_ct"
        if not source.is_dir():
            return None
        dicom_to_nifti(source, image)
        record = {
            "source": str(source),
            "what": "TCIA Pancreatic-CT-CBCT-SEG case 1 planning CT (Philips, contrast)",
            "license": "TCIA (see ../shared/data/tcia_pancreatic_ct_cbct_seg_cb001/LICENSE_TCIA.txt)",
        }
    elif ct == "bundled":
        source = BUNDLED / "ct.nii.gz"
        if not source.is_file():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, image)  # as shipped, byte for byte
        record = {
            "source": str(source),
            "what": "the bundled TotalSegmentator example CT (the training CT)",
            "license": "Apache-2.0",
            "reference": str(BUNDLED / "ct_labels.nii.gz"),
            "reference_kind": "training labels (TotalSegmentator --fast output, not manual)",
        }
    elif ct == "ircadb":
        source = SHARED / "ircadb_3d" / "3Dircadb1.1"
        if not (source / "PATIENT_DICOM.zip").is_file() or not (source / "MASKS_DICOM.zip").is_file():
            return None
        references = inputs.parent / "references" / ct
        unzipped = references / "dicom"
        for archive in ("PATIENT_DICOM.zip", "MASKS_DICOM.zip"):
            with zipfile.ZipFile(source / archive) as z:
                z.extractall(unzipped)
        dicom_to_nifti(unzipped / "PATIENT_DICOM", image)
        ct_image = sitk.ReadImage(str(image))
        masks = {}
        for organ, mask_name in IRCADB_MASKS.items():
            mask_path = references / f"mask_{organ}.nii.gz"
            mask = dicom_to_nifti(unzipped / "MASKS_DICOM" / mask_name, mask_path)
            m = sitk.ReadImage(str(mask))
            if m.GetSize() != ct_image.GetSize() or not np.allclose(m.GetSpacing(), ct_image.GetSpacing()):
                raise SystemExit(f"{mask_name}: mask grid differs from the CT's")
            masks[organ] = str(mask_path)
        record = {
            "source": str(source),
            "what": "3D-IRCADb-01 patient 1 (venous CT), manual masks",
            "license": "CC BY-NC-ND 4.0: local use only, never committed",
            "masks": masks,
            "reference_kind": "manual masks (3D-IRCADb-01)",
        }
    else:
        raise ValueError(ct)
    written = sitk.ReadImage(str(image))
    record.update(
        image=str(image),
        size=list(written.GetSize()),
        spacing=[round(s, 4) for s in written.GetSpacing()],
        sha256=file_sha256(image),
    )
    record_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


# ---------------------------------------------------------------- nnU-Net


def train_model(bin_dir: Path, work: Path, spacing: str, env: dict, args) -> dict:
    """The model folder at ``spacing`` mm, trained (or reused); returns its record."""
    did, name = MODELS[spacing]
    raw, results = work / "nnUNet_raw", work / "nnUNet_results"
    make_training_dataset(raw, name, float(spacing))
    record_path = work / "models" / f"{name}.json"
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.exists() else {}
    plan_and_preprocess(bin_dir, work, did, name, env, args, record)
    folder = results / name / f"{TRAINER_NAME}__{PLANS}__{CONFIGURATION}"
    checkpoint = folder / "fold_all" / "checkpoint_final.pth"
    trained = record.get("training", {}) if checkpoint.exists() else {}
    # a model trained for fewer epochs of the same length goes on where it stopped (nnUNetv2_train --c)
    more = trained.get("iterations_per_epoch") == args.iterations and trained.get("epochs", 0) < args.epochs
    if not checkpoint.exists() or more:
        # augmentation in the trainer's own process (nnU-Net's planner needs this unset: it sets torch's threads)
        train_env = {
            **env,
            "nnUNet_n_proc_DA": "0",
            "nnUNet_compile": "false",
            "VOLSEG_NNUNET_SHORT_EPOCHS": str(args.epochs),
            "VOLSEG_NNUNET_SHORT_ITERATIONS": str(args.iterations),
            "VOLSEG_NNUNET_SHORT_VAL_ITERATIONS": str(args.val_iterations),
            "VOLSEG_NNUNET_SHORT_BF16": "1" if args.train_bf16 else "0",
        }
        seconds = run(
            [bin_dir / "nnUNetv2_train", did, CONFIGURATION, "all", "-tr", TRAINER_NAME, "-p", PLANS, "-device", "cpu"]
            + (["--c"] if more else []),
            train_env,
            work / "logs" / f"train_{did}{'_continued' if more else ''}.log",
        )
        record["training"] = {
            "seconds": round(seconds + trained.get("seconds", 0.0), 1),
            "epochs": args.epochs,
            "iterations_per_epoch": args.iterations,
            "val_iterations_per_epoch": args.val_iterations,
            "precision": "bf16 autocast" if args.train_bf16 else "fp32",
            "batch_size": None,
        }
        if more:
            record["training"]["continued_from_epoch"] = trained["epochs"]
    return describe(record, record_path, did, name, folder, "all", spacing_mm=float(spacing))


def plan_and_preprocess(bin_dir: Path, work: Path, did: int, name: str, env: dict, args, record: dict) -> None:
    """``nnUNetv2_plan_and_preprocess -c 3d_fullres`` (niced) unless done; its seconds into ``record``."""
    if (work / "nnUNet_preprocessed" / name / f"{PLANS}_{CONFIGURATION}").is_dir():
        return
    record["plan_and_preprocess_s"] = round(
        run(
            [
                "nice",
                "-n",
                "19",
                bin_dir / "nnUNetv2_plan_and_preprocess",
                "-d",
                did,
                "-c",
                CONFIGURATION,
                "--verify_dataset_integrity",
                "-np",
                args.processes,
                "-npfp",
                args.processes,
            ],
            env,
            work / "logs" / f"plan_and_preprocess_{did}.log",
        ),
        1,
    )


def training_log(fold_dir: Path) -> list[str]:
    """The fold's training log lines, oldest first: a continued training (``--c``) starts a log of its own."""
    logs = sorted(fold_dir.glob("training_log_*.txt"))
    return [line for log in logs for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]


def describe(record: dict, record_path: Path, did: int, name: str, folder: Path, fold: str, **extra) -> dict:
    """``record`` completed from the trained model folder (plans, checkpoint, pseudo Dice per epoch) and saved."""
    checkpoint = folder / f"fold_{fold}" / "checkpoint_final.pth"
    cfg = json.loads((folder / "plans.json").read_text(encoding="utf-8"))["configurations"][CONFIGURATION]
    pseudo_dice = []
    for line in training_log(folder / f"fold_{fold}"):
        if "Pseudo dice" in line:
            values = re.sub(r"np\.float\d+\(", "", line.split("Pseudo dice", 1)[1])  # [np.float32(0.1), ...]
            pseudo_dice.append([float(v) for v in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", values)])
    record.update(
        **extra,
        dataset_id=did,
        dataset=name,
        fold=fold,
        model_folder=str(folder),
        checkpoint=str(checkpoint),
        checkpoint_sha256=file_sha256(checkpoint),
        plan={
            "spacing": cfg["spacing"],
            "patch_size": cfg["patch_size"],
            "batch_size": cfg["batch_size"],
            "network": cfg["architecture"]["network_class_name"].rsplit(".", 1)[-1],
            "features_per_stage": cfg["architecture"]["arch_kwargs"].get("features_per_stage"),
            "median_image_size": cfg.get("median_image_size_in_voxels"),
        },
        pseudo_dice_per_epoch=pseudo_dice,
    )
    if "training" in record:
        record["training"]["batch_size"] = cfg["batch_size"]
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


# ---------------------------------------------------------------- the hippocampus model


def hippocampus_manifest(work: Path, source: Path) -> Path:
    """volseg's split of MSD Task04 (``pipelines/hippocampus_manifest.py``) as ``work/hippocampus/manifest.csv``."""
    manifest = work / "hippocampus" / "manifest.csv"
    if not manifest.exists():
        if not source.is_dir():
            raise SystemExit(f"hippocampus: {source} is absent (--hippocampus-source, or --no-hippocampus)")
        manifest.parent.mkdir(parents=True, exist_ok=True)
        run(
            [sys.executable, REPO / "pipelines" / "hippocampus_manifest.py", source.resolve(), manifest],
            dict(os.environ),
            work / "logs" / "hippocampus_manifest.log",
        )
    return manifest


def prepare_hippocampus_tests(manifest: Path, inputs: Path, count: int) -> dict:
    """The first ``count`` held-out test cases copied into ``inputs/hippocampus/`` as ``<case>_0000.nii.gz``
    (the folder both tools get), with their manual labels; returns the test set's record."""
    import SimpleITK as sitk

    from volseg.data.manifest import read_manifest

    cases = sorted((c for c in read_manifest(manifest) if c.split == "test"), key=lambda c: c.case_id)[:count]
    ids = [c.case_id for c in cases]
    folder = inputs / HIPPOCAMPUS
    record_path = folder / "input.json"
    if record_path.exists():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("cases") == ids and all((folder / f"{i}_0000.nii.gz").is_file() for i in ids):
            return record
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    digest = hashlib.sha256()
    sizes, spacings, references = {}, {}, {}
    for case in cases:
        image = folder / f"{case.case_id}_0000.nii.gz"
        shutil.copyfile(case.images[0], image)  # byte for byte
        digest.update(file_sha256(image).encode())
        written = sitk.ReadImage(str(image))
        sizes[case.case_id] = list(written.GetSize())
        spacings[case.case_id] = [round(v, 4) for v in written.GetSpacing()]
        references[case.case_id] = str(Path(case.label).resolve())
    record = {
        "source": str(Path(cases[0].images[0]).resolve().parent) if cases else None,
        "what": f"MSD Task04 hippocampus MRI: {len(ids)} of the held-out test cases of volseg's data_manifest.csv",
        "license": "CC BY-SA 4.0 (Medical Segmentation Decathlon)",
        "folder": str(folder),
        "image": str(folder),
        "cases": ids,
        "sizes": sizes,
        "spacings": spacings,
        "references": references,
        "reference_kind": "manual labels (MSD Task04)",
        "sha256": digest.hexdigest(),  # of the files' digests, in case order
    }
    record_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def train_hippocampus(bin_dir: Path, work: Path, manifest: Path, env: dict, args) -> dict:
    """``3d_fullres`` fold 0 of the hippocampus on volseg's split, trained by nnU-Net's own trainer for
    ``--hippocampus-minutes`` (niced), or reused; returns its record."""
    did, name = HIPPOCAMPUS_ID, HIPPOCAMPUS_DATASET
    splits = nnunet_budget.nnunet_raw(manifest, work / "nnUNet_raw")
    record_path = work / "models" / f"{name}.json"
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.exists() else {}
    plan_and_preprocess(bin_dir, work, did, name, env, args, record)
    nnunet_budget.write_splits(work / "nnUNet_preprocessed" / name, splits)
    trainer = HIPPOCAMPUS_TRAINER.name
    folder = work / "nnUNet_results" / name / f"{trainer}__{PLANS}__{CONFIGURATION}"
    fold_dir = folder / "fold_0"
    if not (fold_dir / "checkpoint_final.pth").exists():
        train_env = {
            **env,
            "VOLSEG_NNUNET_BUDGET_MINUTES": f"{args.hippocampus_minutes:g}",
            "VOLSEG_NNUNET_ITERATIONS": str(args.hippocampus_iterations),
        }
        cmd = ["nice", "-n", "19", bin_dir / "nnUNetv2_train", did, CONFIGURATION, "0", "-tr", trainer, "-p", PLANS]
        cmd += ["-device", "cpu"]
        seconds = run(cmd, train_env, work / "logs" / f"train_{did}.log")
        record["training"] = {
            "command": display(cmd, bin_dir),
            "seconds": round(seconds, 1),  # start-up, the epochs and nnU-Net's final validation
            "budget_minutes": args.hippocampus_minutes,
            "iterations_per_epoch": args.hippocampus_iterations,
            "splits": {k: len(v) for k, v in splits.items()},
        }
    else:
        trained = (record.get("training") or {}).get("budget_minutes")
        if trained != args.hippocampus_minutes:
            log(
                f"reusing {fold_dir} (trained for {trained} min; --hippocampus-minutes ignored: move it away to retrain)"
            )
    lines = training_log(fold_dir)
    epoch_seconds = [float(line.split("Epoch time:")[1].split()[0]) for line in lines if "Epoch time:" in line]
    summary = fold_dir / "validation" / "summary.json"
    if "training" in record:
        record["training"].update(
            epochs=len(epoch_seconds),
            train_minutes=round(sum(epoch_seconds) / 60, 2),  # the logged epoch times: the budget's clock
            val_dice=json.loads(summary.read_text(encoding="utf-8"))["foreground_mean"]["Dice"]
            if summary.exists()
            else None,
        )
    return describe(
        record, record_path, did, name, folder, "0", kind=HIPPOCAMPUS, trainer=trainer, labels=HIPPOCAMPUS_LABELS
    )


def hippocampus_int8_manifests(manifest: Path, work: Path, count: int) -> tuple[Path, Path]:
    """Manifests of ``count`` training cases (calibration, split train) and ``count`` val cases (the int8
    check, split val), from volseg's split."""
    from volseg.data.manifest import read_manifest

    cases = read_manifest(manifest)
    paths = []
    for split, what in (("train", "calibration"), ("val", "check")):
        path = work / "models" / f"{HIPPOCAMPUS_DATASET}.{what}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["case_id", "image", "label", "split"])
            for c in [c for c in cases if c.split == split][:count]:
                w.writerow([c.case_id, Path(c.images[0]).resolve(), Path(c.label).resolve(), split])
        paths.append(path)
    return paths[0], paths[1]


# ---------------------------------------------------------------- volseg's int8 twin


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


# ---------------------------------------------------------------- timed runs


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


# ---------------------------------------------------------------- comparison and tables


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


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "nnunet_models")
    parser.add_argument("--venv", type=Path, default=REPO.parent / "nnunet_venv", help="nnU-Net's own venv")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--spacing", nargs="+", choices=sorted(MODELS), default=["3", "1.5"], help="models to run (mm)")
    parser.add_argument("--ct", nargs="+", choices=CTS, default=list(CTS), help="test CTs to run")
    parser.add_argument("--no-ct", action="store_true", help="skip the CT models (their earlier runs stay)")
    parser.add_argument("--no-hippocampus", action="store_true", help="skip the hippocampus model")
    parser.add_argument(
        "--hippocampus-source", type=Path, default=SHARED / "msd_task04_hippocampus", help="MSD Task04 folder"
    )
    parser.add_argument(
        "--hippocampus-minutes", type=float, default=25.0, help="hippocampus training budget, wall-clock minutes"
    )
    parser.add_argument("--hippocampus-iterations", type=int, default=25, help="hippocampus iterations per epoch")
    parser.add_argument("--test-cases", type=int, default=10, help="hippocampus test cases run (the first N)")
    parser.add_argument(
        "--calibration-cases", type=int, default=10, help="hippocampus int8: training cases calibrated on"
    )
    parser.add_argument("--no-tta-off", action="store_true", help="skip the TTA-off runs")
    parser.add_argument("--no-tta-on", action="store_true", help="skip the TTA-on runs (and so nnU-Net's default)")
    parser.add_argument("--no-defaults", action="store_true", help="skip volseg's default run")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 export and runs")
    parser.add_argument("--no-torch", action="store_true", help="skip volseg's torch-backend run (TTA off)")
    parser.add_argument("--no-bf16", action="store_true", help="skip volseg's bf16 run (TTA off; CPUs with bf16 only)")
    parser.add_argument("--train-only", action="store_true", help="prepare, train and export; no timed runs")
    parser.add_argument("--epochs", type=int, default=10, help="CT training epochs (a shorter model goes on)")
    parser.add_argument("--iterations", type=int, default=20, help="CT training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, default=1, help="validation iterations per epoch")
    parser.add_argument(
        "--train-bf16",
        action=argparse.BooleanOptionalAction,
        default=native_bf16(),
        help="train the CT models under bf16 autocast (default where the CPU computes bf16 natively)",
    )
    parser.add_argument("--processes", type=int, default=2, help="nnU-Net's preprocessing worker processes")
    parser.add_argument("--max-load", type=float, default=1.5, help="1-minute load average taken as quiet")
    parser.add_argument("--max-busy", type=float, default=0.3, help="cores busy over 10 s taken as quiet")
    parser.add_argument(
        "--quiet-wait", type=float, default=600, help="seconds to wait for quiet before the first timed run"
    )
    parser.add_argument("--quiet-wait-each", type=float, default=180, help="... and before each later one")
    parser.add_argument("--redo", action="store_true", help="repeat selected timed runs already recorded")
    parser.add_argument(
        "--redo-disturbed",
        action="store_true",
        help="repeat selected recorded runs that did not start quiet or shared the CPU with other work",
    )
    args = parser.parse_args()
    made = provenance(__file__)

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    load_at_invocation = load_average()
    invocation_started = time.perf_counter()
    bin_dir = ensure(args.venv.absolute(), [TRAINER, HIPPOCAMPUS_TRAINER], work / "logs")
    nn_env = environment(work)
    # volseg's caches (ONNX, the int8 twin) inside the work folder: nothing from other runs is reused
    vs_env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
    vs_env.pop("VOLSEG_CACHE", None)

    if args.no_ct:
        args.spacing, args.ct = [], []
    cts: dict = {}
    for name in CTS:
        cts[name] = prepare_ct(name, work / "inputs") if name in args.ct else None
        if name in args.ct and cts[name] is None:
            log(f"missing input: {name} (its source under {SHARED} is absent); going on without it")
    # CTs prepared by earlier invocations stay in the tables
    for name in CTS:
        record_path = work / "inputs" / name / "input.json"
        if cts[name] is None and record_path.exists():
            cts[name] = json.loads(record_path.read_text(encoding="utf-8"))

    selected = [
        r
        for r in RUNS
        if not (
            (args.no_tta_off and r.endswith("tta_off"))
            or (args.no_tta_on and r.endswith("tta_on"))
            or (args.no_defaults and r == "volseg_default")
            or (args.no_int8 and "int8" in r)
            or (args.no_torch and "torch" in r)
            or ((args.no_bf16 or not native_bf16()) and "bf16" in r)
        )
    ]
    models: dict = {}
    for spacing in MODELS:
        name = MODELS[spacing][1]
        record_path = work / "models" / f"{name}.json"
        if spacing in args.spacing:
            models[spacing] = train_model(bin_dir, work, spacing, nn_env, args)
            if not args.no_int8:
                test_cts = {n: ct["image"] for n, ct in cts.items() if ct and n != "bundled"}  # bundled: trained on
                models[spacing]["int8"] = export_int8(models[spacing], work, vs_env, test_cts=test_cts)
        elif record_path.exists():
            models[spacing] = json.loads(record_path.read_text(encoding="utf-8"))

    # the hippocampus model and its test set (a folder of cases), or those of an earlier invocation
    hippocampus_record = work / "models" / f"{HIPPOCAMPUS_DATASET}.json"
    tests: dict = {}
    if not args.no_hippocampus:
        manifest = hippocampus_manifest(work, args.hippocampus_source)
        tests[HIPPOCAMPUS] = prepare_hippocampus_tests(manifest, work / "inputs", args.test_cases)
        models[HIPPOCAMPUS] = train_hippocampus(bin_dir, work, manifest, nn_env, args)
        if not args.no_int8:
            models[HIPPOCAMPUS]["int8"] = export_int8(
                models[HIPPOCAMPUS], work, vs_env, hippocampus_int8_manifests(manifest, work, args.calibration_cases)
            )
    elif hippocampus_record.exists() and (work / "inputs" / HIPPOCAMPUS / "input.json").exists():
        models[HIPPOCAMPUS] = json.loads(hippocampus_record.read_text(encoding="utf-8"))
        tests[HIPPOCAMPUS] = json.loads((work / "inputs" / HIPPOCAMPUS / "input.json").read_text(encoding="utf-8"))
    for model in models.values():  # not exported by this invocation: an earlier one's twin stays in the tables
        if "int8" not in model and (twin := earlier_int8(work, model["dataset"])):
            model["int8"] = twin

    first = [True]
    if not args.train_only:
        # the hippocampus first: it is the part asked for, the CTs' runs may already be recorded
        if not args.no_hippocampus:
            for run_name in selected:
                do_run(
                    run_name,
                    models[HIPPOCAMPUS],
                    HIPPOCAMPUS,
                    tests[HIPPOCAMPUS],
                    bin_dir,
                    work,
                    nn_env,
                    vs_env,
                    args,
                    first,
                )
        for spacing in args.spacing:
            for ct_name in args.ct:
                if cts[ct_name] is None:
                    continue
                for run_name in selected:
                    do_run(run_name, models[spacing], ct_name, cts[ct_name], bin_dir, work, nn_env, vs_env, args, first)

    # every run recorded in the work folder, this invocation's or earlier ones'
    rows, comparisons, not_run = [], {}, []
    for model in models.values():
        hippocampus = model.get("kind") == HIPPOCAMPUS
        for ct_name, ct in (tests if hippocampus else cts).items():
            if ct is None:
                not_run.append(f"{model['dataset']} x {ct_name}: input missing")
                continue
            records = {}
            for run_name in RUNS:
                path = work / "timed" / model["dataset"] / ct_name / run_name / "run.json"
                r = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
                if (
                    r
                    and r.get("checkpoint_sha256") == model["checkpoint_sha256"]
                    and r.get("input_sha256") == ct["sha256"]
                ):
                    records[run_name] = r
                else:
                    not_run.append(f"{model['dataset']} x {ct_name}: {run_name}")
            if not records:
                continue
            key = f"{model['dataset']}|{ct_name}"
            comparisons[key] = compare_cases(records, ct, HIPPOCAMPUS_LABELS) if hippocampus else compare(records, ct)
            for r in records.values():
                nnunet_run = "nnunet_tta_off" if r["setting"] == "tta_off" else "nnunet_tta_on"
                base = records.get(nnunet_run)
                rows.append(
                    {
                        "record": r,
                        "nnunet_run": nnunet_run,
                        "nnunet_seconds": base["seconds"] if base else None,
                        "comparisons_key": key,
                    }
                )
    for model_spacing in [*MODELS, HIPPOCAMPUS]:
        if model_spacing not in models:
            name = HIPPOCAMPUS_DATASET if model_spacing == HIPPOCAMPUS else MODELS[model_spacing][1]
            not_run.append(f"{name}: not trained in this work folder")

    result = {
        "cpu": cpu_info(),
        "load_at_invocation": load_at_invocation,
        "versions": {
            "nnunet_venv": versions(
                bin_dir / "python", ("nnunetv2", "torch", "numpy", "SimpleITK", "dynamic_network_architectures")
            ),
            "volseg_venv": versions(
                Path(sys.executable),
                ("torch", "openvino", "nncf", "numpy", "SimpleITK", "dynamic_network_architectures"),
            ),
        },
        "work": str(work),
        "models": {m["dataset"]: m for m in models.values()},
        "cts": cts,
        HIPPOCAMPUS: tests.get(HIPPOCAMPUS),
        "rows": rows,
        "comparisons": comparisons,
        "not_run": not_run,
        "this_invocation_s": round(time.perf_counter() - invocation_started, 1),
    }
    print(write(args.out, "nnunet_models", result, tables(result, made), made))


if __name__ == "__main__":
    main()
