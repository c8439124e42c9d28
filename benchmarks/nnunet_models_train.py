"""``benchmarks/nnunet_models.py``, step 1: the training data (CTs resampled, the hippocampus split) and
nnU-Net's own training of each model."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

from benchmarks import nnunet_budget
from benchmarks.nnunet_models_common import (  # noqa: E402
    BUNDLED,
    CONFIGURATION,
    HIPPOCAMPUS,
    HIPPOCAMPUS_DATASET,
    HIPPOCAMPUS_ID,
    HIPPOCAMPUS_LABELS,
    HIPPOCAMPUS_TRAINER,
    IRCADB_MASKS,
    LABELS,
    MODELS,
    PLANS,
    REPO,
    SHARED,
    TRAINER_NAME,
    file_sha256,
    log,
    run,
)
from benchmarks.nnunet_models_run import display  # noqa: E402


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
