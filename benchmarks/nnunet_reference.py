"""Reference labels from nnU-Net v2 itself, for checking volseg's runner of trained nnU-Net model folders.

    python benchmarks/nnunet_reference.py [--work runs/nnunet_reference] [--venv ../nnunet_venv] [--force]

Everything is tiny and synthetic, so the whole chain runs on a CPU in minutes; the models are barely trained
(2 epochs of 10 iterations), which keeps their logits' class margins small: label agreement with
``nnUNetv2_predict`` on them is a sharp test of the pre/post-processing, not of the models' quality.

1. Two raw datasets (NIfTI written with nibabel, realistic non-identity affines, seeded):
   - ``Dataset901_TinyCT``: 8 CT-like training cases about 48x56x20 voxels, anisotropic spacing (about
     0.8x0.8x3 mm, varying per case, so resampling and nnU-Net's separate-z path run), air -1000 HU around a
     body, labels liver=1 / spleen=2 (blobs of different HU); two cases have a zero-padded border (crop to
     non-zero matters), the others have none (the crop does nothing); flipped and rotated directions.
   - ``Dataset902_TinyRegions``: 6 MR-like cases about 40^3 (one z-scored channel, exact-zero background
     around a head, so nnU-Net crops and normalises inside the non-zero mask), region-based labels
     ``{"background": 0, "whole": [1, 2], "core": 2}`` with ``regions_class_order`` [1, 2].
   Three test images per dataset in ``imagesTs`` (labels in ``labelsTs``, which nnU-Net ignores), each with
   another spacing and/or orientation than the training cases (rotated, flipped, axes permuted, zero border).
2. ``nnUNetv2_plan_and_preprocess -d 901 902 -c 3d_fullres 2d --verify_dataset_integrity``, then training
   with ``nnUNetTrainerTiny`` (written into nnU-Net's package, nnU-Net's documented way to add a trainer; its
   final validation is skipped): 901 3d_fullres folds 0 and 1, 901 2d fold 0, 902 3d_fullres fold 0.
3. ``nnUNetv2_predict -device cpu`` on each ``imagesTs``: 901 3d_fullres folds 0+1 with and without mirroring
   TTA, 901 fold 0 alone (with ``--save_probabilities``), 901 2d, 902 3d_fullres with and without TTA (with
   ``--save_probabilities``).
4. ``reference.json`` in the work folder: per prediction run its model folder, folds, checkpoint, TTA,
   inputs, outputs (with label voxel counts), command and wall seconds; the trainings and preprocessing with
   their times; and the type listing of a real ``checkpoint_final.pth`` (what ``torch.load(...,
   weights_only=True)`` says about it, and the globals it needs); the provenance (``benchmarks/record.py``).

nnU-Net runs in its own virtual environment (``--venv``; created with ``nnunetv2==2.8.1`` when missing), with
nnUNet_raw / nnUNet_preprocessed / nnUNet_results inside the work folder. Idempotent: datasets, preprocessing,
trainings and predictions already present are reused (``--force`` deletes this script's folders and redoes
all). Logs of every nnU-Net command are in ``<work>/logs``. Run it alone on a small machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: benchmarks and volseg import from it

from benchmarks.nnunet_env import ensure, environment, run, short_trainer, versions  # noqa: E402
from benchmarks.nnunet_reference_data import ct_dataset, regions_dataset  # noqa: E402
from benchmarks.record import provenance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

TRAINER_NAME = "nnUNetTrainerTiny"
PLANS = "nnUNetPlans"
CT, REGIONS = "Dataset901_TinyCT", "Dataset902_TinyRegions"


# written into nnU-Net's package by benchmarks/nnunet_env.py
TRAINER = short_trainer(
    TRAINER_NAME,
    "volseg_reference",
    "nnU-Net's default recipe, a few iterations long (volseg's reference models: benchmarks/nnunet_reference.py).\n"
    "    The final validation (nnU-Net's sliding-window prediction of the validation cases) is skipped.",
    "VOLSEG_NNUNET_TINY",
    val_iterations=2,
)


# Run in nnU-Net's venv: every type inside a checkpoint, and what weights_only=True makes of it.
CHECKPOINT_PROBE = r"""
import importlib, io, json, pickle, re, sys, zipfile
import torch

path = sys.argv[1]
ck = torch.load(path, map_location="cpu", weights_only=False)
types, outline = {}, []

def name(t):
    return f"{t.__module__}.{t.__qualname__}"

def note(o, p):
    t = type(o)
    if t.__module__ != "builtins":
        paths = types.setdefault(name(t), [])
        if len(paths) < 5:
            paths.append(p)

def walk(o, p):
    note(o, p)
    if isinstance(o, torch.Tensor):
        return
    if isinstance(o, dict):
        for k, v in o.items():
            note(k, p + "<key>")
            walk(v, f"{p}[{k!r}]")
    elif isinstance(o, (list, tuple, set, frozenset)):
        for i, v in enumerate(o):
            walk(v, f"{p}[{i}]")
    elif hasattr(o, "__dict__") and not isinstance(o, type):
        for k, v in vars(o).items():
            walk(v, f"{p}.{k}")

def leaf(o):
    if isinstance(o, torch.Tensor):
        return f"torch.Tensor {str(o.dtype)} {tuple(o.shape)}"
    text = repr(o)
    return f"{name(type(o))} = {text if len(text) <= 70 else text[:67] + '...'}"

def show(o, p, depth=0):
    if isinstance(o, dict) and o:
        values = list(o.values())
        if len(o) > 6 and all(isinstance(v, torch.Tensor) for v in values):
            dtypes = sorted({str(v.dtype) for v in values})
            keys = sorted({name(type(k)) for k in o})
            outline.append(f"{p}: {name(type(o))} of {len(o)} tensors (keys {keys}, dtypes {dtypes})")
            return
        outline.append(f"{p}: {name(type(o))} with {len(o)} keys")
        items = list(o.items())
        shown = items if len(items) <= 12 or depth < 1 else items[:2]
        for k, v in shown:
            show(v, f"{p}[{k!r}]", depth + 1)
        if len(shown) < len(items):
            kinds = sorted({name(type(v)) for _, v in items})
            outline.append(f"{p}[...]: {len(items) - len(shown)} more entries like these ({kinds})")
        return
    if isinstance(o, (list, tuple)) and o:
        kinds = sorted({name(type(v)) for v in o})
        if all(not isinstance(v, (dict, list, tuple)) for v in o) and len(o) > 4:
            outline.append(f"{p}: {name(type(o))}[{len(o)}] of {kinds}")
            return
        outline.append(f"{p}: {name(type(o))}[{len(o)}]")
        for i, v in enumerate(o[:6]):
            show(v, f"{p}[{i}]", depth + 1)
        if len(o) > 6:
            outline.append(f"{p}[6:]: {len(o) - 6} more of {kinds}")
        return
    outline.append(f"{p}: {leaf(o)}")

walk(ck, "ck")
show(ck, "ck")
result = {"path": path, "torch": torch.__version__, "top_level_keys": list(ck),
          "non_builtin_types": types, "outline": outline}
try:
    torch.load(path, map_location="cpu", weights_only=True)
    result["weights_only_true"] = "loads"
except Exception as e:
    result["weights_only_true"] = f"{type(e).__name__}: {e}"
result["get_unsafe_globals_in_checkpoint"] = torch.serialization.get_unsafe_globals_in_checkpoint(path)

# every global the pickle names (what a restricted unpickler has to resolve), read without building anything;
# numpy.dtypes.Float32DType is no global of the pickle: torch's weights_only check meets it as the type of the
# numpy.dtype it builds
class Stub:
    def __init__(self, *args, **kwargs): pass
    def __setitem__(self, key, value): pass
    def __setstate__(self, state): pass

class Lister(pickle.Unpickler):
    seen = {}
    def find_class(self, module, name):
        self.seen[f"{module}.{name}"] = self.seen.get(f"{module}.{name}", 0) + 1
        return Stub
    def persistent_load(self, pid):
        return None

with zipfile.ZipFile(path) as archive:
    member = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
    Lister(io.BytesIO(archive.read(member))).load()
result["pickle_globals"] = sorted(Lister.seen)  # each named once (the pickle memoizes them)

def resolve(qualified):
    module, _, attr = qualified.rpartition(".")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj

# the smallest allow-list that loads it: add what each failure names, until it loads
allow, names = [], []
for _ in range(20):
    try:
        with torch.serialization.safe_globals(allow):
            again = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        found = re.search(r"GLOBAL ([\w.]+) was not an allowed global", str(e)) or \
            re.search(r"but got <class '([\w.]+)'>", str(e))
        if not found or found.group(1) in names:
            result["weights_only_true_allow_list"] = {"globals": names, "fails": f"{type(e).__name__}: {e}"}
            break
        names.append(found.group(1))
        allow.append(resolve(found.group(1)))
        continue
    same = all(torch.equal(again["network_weights"][k], v) for k, v in ck["network_weights"].items())
    result["weights_only_true_allow_list"] = {"globals": names, "loads": True, "same_network_weights": same,
                                              "loaded_types": sorted({name(type(v)) for v in (
                                                  again["_best_ema"], again["init_args"]["device"])})}
    break
print(json.dumps(result))
"""


def label_counts(path: Path) -> dict:
    data = np.asarray(nib.load(str(path)).dataobj)
    values, counts = np.unique(data, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts)}


TRAININGS = [  # (dataset id, dataset, configuration, fold)
    (901, CT, "3d_fullres", 0),
    (901, CT, "3d_fullres", 1),
    (901, CT, "2d", 0),
    (902, REGIONS, "3d_fullres", 0),
]


PREDICTIONS = [  # (name, dataset id, dataset, configuration, folds, tta, save_probabilities)
    ("901_3d_fullres_f01_tta", 901, CT, "3d_fullres", (0, 1), True, False),
    ("901_3d_fullres_f01_notta", 901, CT, "3d_fullres", (0, 1), False, False),
    ("901_3d_fullres_f0_tta_probs", 901, CT, "3d_fullres", (0,), True, True),
    ("901_2d_f0_tta", 901, CT, "2d", (0,), True, False),
    ("902_3d_fullres_f0_tta_probs", 902, REGIONS, "3d_fullres", (0,), True, True),
    ("902_3d_fullres_f0_notta", 902, REGIONS, "3d_fullres", (0,), False, False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "nnunet_reference")
    parser.add_argument("--venv", type=Path, default=REPO.parent / "nnunet_venv", help="nnU-Net's own venv")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10, help="training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, default=2, help="validation iterations per epoch")
    parser.add_argument("--processes", type=int, default=2, help="nnU-Net's worker processes (preprocessing)")
    parser.add_argument("--force", action="store_true", help="delete this script's outputs and redo everything")
    args = parser.parse_args()
    made = provenance(__file__)
    work = args.work.resolve()
    raw, pre, results, predictions = (
        work / "nnUNet_raw",
        work / "nnUNet_preprocessed",
        work / "nnUNet_results",
        work / "predictions",
    )
    if args.force:
        for folder in (
            raw,
            pre,
            results,
            predictions,
            work / "logs",
            work / "timings.json",
            work / "checkpoint_types.json",
            work / "reference.json",
        ):
            if folder.is_dir():
                shutil.rmtree(folder)
            elif folder.exists():
                folder.unlink()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bin_dir = ensure(args.venv.absolute(), [TRAINER], work / "logs")
    env = environment(
        work,  # nnUNet_raw, nnUNet_preprocessed, nnUNet_results: raw, pre, results above
        nnUNet_compile="false",
        PYTHONHASHSEED="0",
        VOLSEG_NNUNET_TINY_EPOCHS=str(args.epochs),
        VOLSEG_NNUNET_TINY_ITERATIONS=str(args.iterations),
        VOLSEG_NNUNET_TINY_VAL_ITERATIONS=str(args.val_iterations),
    )
    timings_path = work / "timings.json"  # measured once; a rerun that reuses a step keeps its time
    timings = json.loads(timings_path.read_text(encoding="utf-8")) if timings_path.exists() else {}

    def save_timings():
        timings_path.write_text(json.dumps(timings, indent=1), encoding="utf-8")

    # 1. raw datasets
    for name, make, seed in ((CT, ct_dataset, 901), (REGIONS, regions_dataset, 902)):
        if not (raw / name / "dataset.json").exists():
            print(f"writing {raw / name}", flush=True)
            make(raw / name, np.random.default_rng(seed))

    # 2. plans, preprocessing, trainings
    if not all((pre / name / f"{PLANS}_{cfg}").is_dir() for name in (CT, REGIONS) for cfg in ("3d_fullres", "2d")):
        timings["plan_and_preprocess_s"] = run(
            [
                bin_dir / "nnUNetv2_plan_and_preprocess",
                "-d",
                "901",
                "902",
                "-c",
                "3d_fullres",
                "2d",
                "--verify_dataset_integrity",
                "-np",
                args.processes,
                "-npfp",
                args.processes,
            ],
            env,
            work / "logs" / "plan_and_preprocess.log",
        )
        save_timings()
    # augmentation in the trainer's own process (nnU-Net's planner needs this unset: it sets torch's threads to it)
    train_env = {**env, "nnUNet_n_proc_DA": "0"}
    trainings = []
    for did, name, cfg, fold in TRAININGS:
        model = results / name / f"{TRAINER_NAME}__{PLANS}__{cfg}"
        key = f"train_{did}_{cfg}_fold{fold}"
        if not (model / f"fold_{fold}" / "checkpoint_final.pth").exists():
            timings[key] = {
                "seconds": run(
                    [bin_dir / "nnUNetv2_train", did, cfg, fold, "-tr", TRAINER_NAME, "-p", PLANS, "-device", "cpu"],
                    train_env,
                    work / "logs" / f"{key}.log",
                ),
                "epochs": args.epochs,
                "iterations_per_epoch": args.iterations,
                "val_iterations_per_epoch": args.val_iterations,
            }
            save_timings()
        trainings.append(
            {
                "dataset": name,
                "configuration": cfg,
                "fold": fold,
                "model_folder": str(model),
                "checkpoints": sorted(p.name for p in (model / f"fold_{fold}").glob("checkpoint_*.pth")),
                **timings.get(key, {}),
            }
        )

    # 3. predictions
    runs = []
    for name, did, dataset, cfg, folds, tta, probs in PREDICTIONS:
        out = predictions / name
        images = raw / dataset / "imagesTs"
        inputs = sorted(p.name for p in images.glob("*.nii.gz"))
        record_path = out / "volseg_reference_run.json"
        if not record_path.exists():
            if out.exists():
                shutil.rmtree(out)  # an interrupted run: nnU-Net would skip its finished cases otherwise
            cmd = [
                bin_dir / "nnUNetv2_predict",
                "-i",
                images,
                "-o",
                out,
                "-d",
                did,
                "-c",
                cfg,
                "-tr",
                TRAINER_NAME,
                "-p",
                PLANS,
                "-f",
                *folds,
                "-chk",
                "checkpoint_final.pth",
                "-device",
                "cpu",
                "-npp",
                "1",
                "-nps",
                "1",
                "--disable_progress_bar",
            ]
            cmd += [] if tta else ["--disable_tta"]
            cmd += ["--save_probabilities"] if probs else []
            seconds = run(cmd, env, work / "logs" / f"predict_{name}.log")
            record = {
                "name": name,
                "dataset": dataset,
                "configuration": cfg,
                "model_folder": str(results / dataset / f"{TRAINER_NAME}__{PLANS}__{cfg}"),
                "trainer": TRAINER_NAME,
                "plans": PLANS,
                "folds": list(folds),
                "checkpoint": "checkpoint_final.pth",
                "tta": tta,
                "step_size": 0.5,
                "save_probabilities": probs,
                "input_folder": str(images),
                "input_images": inputs,
                "output_folder": str(out),
                "wall_seconds": round(seconds, 2),
                "command": " ".join(str(c) for c in cmd),
            }
            outputs = {}
            for case in inputs:
                seg = out / case.replace("_0000.nii.gz", ".nii.gz")
                entry = {"segmentation": seg.name, "label_voxels": label_counts(seg)}
                if probs:
                    entry.update(
                        probabilities=seg.name.replace(".nii.gz", ".npz"),
                        properties=seg.name.replace(".nii.gz", ".pkl"),
                    )
                outputs[case] = entry
            record["outputs"] = outputs
            record_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
        runs.append(json.loads(record_path.read_text(encoding="utf-8")))

    # 4. the reference, with a real checkpoint's types
    python = bin_dir / "python"
    probe_path = work / "checkpoint_types.json"
    checkpoint = results / CT / f"{TRAINER_NAME}__{PLANS}__3d_fullres" / "fold_0" / "checkpoint_final.pth"
    if not probe_path.exists() or json.loads(probe_path.read_text(encoding="utf-8"))["path"] != str(checkpoint):
        probe = subprocess.run(
            [python, "-c", CHECKPOINT_PROBE, checkpoint], check=True, capture_output=True, text=True, env=env
        )
        probe_path.write_text(json.dumps(json.loads(probe.stdout.strip().splitlines()[-1]), indent=1), encoding="utf-8")
    reference = {
        "script": "benchmarks/nnunet_reference.py",
        "command": made["command"],  # benchmarks/nnunet_parity.py quotes it
        "provenance": made,
        "nnunet_venv": str(args.venv.absolute()),
        "versions": versions(
            python, ("nnunetv2", "torch", "numpy", "SimpleITK", "dynamic_network_architectures", "batchgeneratorsv2")
        ),
        "environment": {
            **{k: env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")},
            "nnUNet_n_proc_DA (training)": train_env["nnUNet_n_proc_DA"],
        },
        "datasets": {
            name: {
                "raw": str(raw / name),
                "preprocessed": str(pre / name),
                "cases": json.loads((raw / name / "cases.json").read_text(encoding="utf-8")),
            }
            for name in (CT, REGIONS)
        },
        "plan_and_preprocess_s": timings.get("plan_and_preprocess_s"),
        "trainings": trainings,
        "predictions": runs,
        "checkpoint_types": json.loads(probe_path.read_text(encoding="utf-8")),
        "steps_s": round(
            (timings.get("plan_and_preprocess_s") or 0)
            + sum(t.get("seconds", 0) for t in trainings)
            + sum(r["wall_seconds"] for r in runs),
            1,
        ),  # as measured when each step ran
        "this_invocation_s": round(time.perf_counter() - started, 1),
    }
    (work / "reference.json").write_text(json.dumps(reference, indent=1), encoding="utf-8")
    print(
        f"{work / 'reference.json'}: {len(runs)} prediction runs, {len(trainings)} trainings, "
        f"this call {reference['this_invocation_s']} s (steps as measured: {reference['steps_s']} s)"
    )


if __name__ == "__main__":
    main()
