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
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: benchmarks and volseg import from it

from benchmarks.nnunet_env import ensure, environment, versions  # noqa: E402
from benchmarks.nnunet_models_common import (  # noqa: E402
    CTS,
    HIPPOCAMPUS,
    HIPPOCAMPUS_DATASET,
    HIPPOCAMPUS_LABELS,
    HIPPOCAMPUS_TRAINER,
    MODELS,
    REPO,
    RUNS,
    SHARED,
    TRAINER,
    cpu_info,
    load_average,
    log,
)
from benchmarks.nnunet_models_run import do_run, earlier_int8, export_int8  # noqa: E402
from benchmarks.nnunet_models_tables import compare, compare_cases, tables  # noqa: E402
from benchmarks.nnunet_models_train import (  # noqa: E402
    hippocampus_int8_manifests,
    hippocampus_manifest,
    prepare_ct,
    prepare_hippocampus_tests,
    train_hippocampus,
    train_model,
)
from benchmarks.record import provenance, write  # noqa: E402
from volseg.runtime.backends import native_bf16  # noqa: E402


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
