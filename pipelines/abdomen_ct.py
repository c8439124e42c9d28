"""Abdominal CT from one training CT: liver, spleen and kidneys, trained on one source, scored on another.

    python pipelines/abdomen_ct.py                      # both directions, 60-minute budget each
    python pipelines/abdomen_ct.py --direction ts       # TotalSegmentator CT -> IRCADb patient 1 only
    python pipelines/abdomen_ct.py --minutes 10 --set model.features=[8,16,32,64]   # a quick look

Sources (``--shared``, default ../shared/data; read each PROVENANCE.md):
- ``ts``: the TotalSegmentator example CT (3 mm, non-contrast, Apache-2.0), labels are TotalSegmentator's
  own outputs (spleen 1, kidney_right 2, kidney_left 3, liver 5, ...), remapped to the organs below.
- ``ircadb``: 3D-IRCADb-01 patient 1 (0.57 x 0.57 x 1.6 mm, venous phase, CC BY-NC-ND 4.0), manual
  masks read straight from MASKS_DICOM.zip. Everything derived from it stays in the working folder: it may
  be used here, never redistributed, and no model trained on it ships.
- ``ts_dicom``: the TotalSegmentator 20-slice contrast DICOM series (liver and spleen labels only), a
  scan neither training CT comes from: the validation case of both directions.

Steps (each a `volseg` command after the data preparation; re-running reuses what exists):
  prepare -> manifest per direction -> volseg plan -> volseg train (levers below) -> volseg infer on the
  other source, on its own grid -> volseg evaluate -> WORK/results.{json,md}

The levers that make one CT generalise are the ``LEVERS`` overrides plus contrast-phase synthesis
(:func:`synthesize_contrast`): copies of the training CT in which each structure's intensity is moved by
a random amount within its range of enhancement, so that a non-contrast CT teaches contrast CTs and back.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from volseg.files.csv_rows import read_rows

REPO = Path(__file__).resolve().parents[1]
ORGANS = {1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left"}
TS_VALUES = {"liver": 5, "spleen": 1, "kidney_right": 2, "kidney_left": 3}
IRCADB_MASKS = {"liver": "liver", "spleen": "spleen", "kidney_right": "rightkidney", "kidney_left": "leftkidney"}
CONFIG = REPO / "configs" / "abdomen_ct.yaml"

# Train-time overrides on top of the plan, each one a lever whose effect is recorded in the README.
LEVERS = [
    "preprocess.spacing=[3.0, 3.0, 3.0]",  # both sources on the training CT's 3 mm grid
    "preprocess.normalization=window",  # a fixed HU window: the planned clip (the training CT's organ
    "preprocess.hu_window=[-300, 500]",  # percentiles) would flatten every contrast-enhanced organ
    "sampling.patch_size_3d=[80, 80, 80]",  # 24 cm of context; 2.3 s per step of 2 on 2 CPU cores
    "sampling.batch_size_3d=2",
]

# One kidney class, mirrored across x (both kidneys and their mirror images teach it), split back into
# right and left at the body's midline after inference (volseg.runtime.postprocess): side is geometry, not appearance.
MERGED_KIDNEYS = ["data.label_remap={1: 1, 2: 2, 3: 3, 4: 3}", "data.split_at_midline={3: 4}", "augment.flip=[0]"]

# The ROI cascade's locator (`volseg infer --roi kidney_left`): the same organs at 6 mm, small and quick;
# it only has to find each organ's box, which the fine model then segments at 3 mm.
LOCATOR_LEVERS = [
    "preprocess.spacing=[6.0, 6.0, 6.0]",
    "preprocess.normalization=window",
    "preprocess.hu_window=[-300, 500]",
    "sampling.patch_size_3d=[48, 48, 48]",
    "sampling.batch_size_3d=2",
    "model.features=[8, 16, 32, 64]",
]

# Contrast-phase synthesis: HU offset range per structure group, for a non-contrast CT (add enhancement)
# and for a venous-phase CT (take it away). Groups are matched by name against TotalSegmentator's classes
# and IRCADb's mask names; unlisted structures (bone, lung, fat) keep their intensity.
ENHANCE = {
    "kidney": (-20, 260),
    "aort|vena|vein|artery|venous": (-20, 300),
    "spleen": (-20, 140),
    "liver": (-20, 120),
    "pancreas|adrenal": (-20, 100),
    "stomach|bowel|duodenum|colon|esophagus": (-10, 60),
    "gluteus|iliopsoas|autochthon": (-10, 30),
}
DEENHANCE = {
    "kidney": (-220, 20),
    "artery|portal|venous": (-220, 20),
    "spleen": (-110, 20),
    "liver": (-90, 20),
}


def volseg(*args) -> None:
    cmd = [sys.executable, "-m", "volseg", *map(str, args)]
    print("+ volseg " + shlex.join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)


# ------------------------------------------------------------------------------------------ the data


def _save_image(array: np.ndarray, reference, path: Path) -> Path:
    """CT intensities as int16 NIfTI on ``reference``'s grid (write_label keeps the grid, not the dtype)."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.round(array).astype(np.int16), np.asarray(reference.affine, dtype=np.float64))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    nib.save(image, tmp)
    tmp.replace(path)
    return path


def organ_map(masks: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """One label map (ORGANS values) from binary masks; where masks overlap, the later organ in ORGANS
    wins (kidneys over spleen over liver: the smaller structure keeps its boundary voxels). Returns the
    overlapping voxel count per organ for the record."""
    shape = next(iter(masks.values())).shape
    labels = np.zeros(shape, np.uint8)
    overlaps = {}
    for value, name in ORGANS.items():
        mask = masks[name]
        overlaps[name] = int((mask & (labels > 0)).sum())
        labels[mask] = value
    return labels, overlaps


def synthesize_contrast(
    image: np.ndarray,
    structures: dict[str, np.ndarray],
    ranges: dict[str, tuple[float, float]],
    rng: np.random.Generator,
) -> np.ndarray:
    """A copy of ``image`` (HU) in another contrast phase: every structure whose name matches a group of
    ``ranges`` is shifted by one offset drawn from that group's range, blended over a voxel at its edge
    (partial volume). SynthSeg (Billot et al. 2023) draws whole images from labels; here only the
    enhancement that differs between phases is drawn, and the anatomy stays real."""
    import re

    from scipy import ndimage

    out = image.astype(np.float32).copy()
    for pattern, (low, high) in ranges.items():
        for name, mask in structures.items():
            if re.search(pattern, name):
                weight = ndimage.gaussian_filter(mask.astype(np.float32), sigma=0.7)
                out += rng.uniform(low, high) * weight
    return np.clip(out, -1024, 3071)


def _structure_masks_ts(seg: np.ndarray, shared: Path) -> dict[str, np.ndarray]:
    names = json.loads(
        (shared / "totalsegmentator_example" / "totalsegmentator_class_maps.json").read_text(encoding="utf-8")
    )["total"]
    return {names[str(v)]: seg == v for v in np.unique(seg) if v and str(v) in names}


def _ircadb_masks(zip_path: Path, work: Path) -> dict[str, np.ndarray]:
    """Every mask series of MASKS_DICOM.zip, extracted unchanged into the working folder and read there."""
    from volseg.data import io

    folder = work / "ircadb_dicom"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    masks = {}
    for series in sorted(p for p in (folder / "MASKS_DICOM").iterdir() if p.is_dir()):
        masks[series.name] = io.read_image(series)[0].numpy() > 0
    return masks


def prepare(shared: Path, work: Path, variants: int, seed: int = 0) -> dict:
    """Image and 4-organ label files of the three sources, plus ``variants`` contrast-synthesized copies of
    each training CT, in ``work``; returns what was built (paths, voxel counts, overlaps)."""
    from monai import transforms as mt

    from volseg.data import io

    done = work / "prepared.json"
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    record: dict = {}

    ts = shared / "totalsegmentator_example"
    ct = io.read_image(ts / "example_ct.nii.gz")
    seg = io.read_label(ts / "example_seg_fast_force_split.nii.gz")[0].numpy().astype(np.int64)
    labels, overlaps = organ_map({name: seg == TS_VALUES[name] for name in ORGANS.values()})
    record["ts"] = {
        "image": str(ts / "example_ct.nii.gz"),
        "label": str(io.write_label(labels, ct, work / "ts_labels.nii.gz")),
        "overlaps": overlaps,
    }
    structures = _structure_masks_ts(seg, shared)
    record["ts"]["variants"] = [
        str(
            _save_image(
                synthesize_contrast(ct[0].numpy(), structures, ENHANCE, rng), ct, work / f"ts_synth{k:02d}.nii.gz"
            )
        )
        for k in range(variants)
    ]

    ircadb = shared / "ircadb_3d" / "3Dircadb1.1"
    with zipfile.ZipFile(ircadb / "PATIENT_DICOM.zip") as archive:
        archive.extractall(work / "ircadb_dicom")
    image = io.read_image(work / "ircadb_dicom" / "PATIENT_DICOM")
    masks = _ircadb_masks(ircadb / "MASKS_DICOM.zip", work)
    labels, overlaps = organ_map({name: masks[IRCADB_MASKS[name]] for name in ORGANS.values()})
    record["ircadb"] = {
        "image": str(_save_image(image[0].numpy(), image, work / "ircadb_ct.nii.gz")),
        "label": str(io.write_label(labels, image, work / "ircadb_labels.nii.gz")),
        "overlaps": overlaps,
        "dicom": str(work / "ircadb_dicom" / "PATIENT_DICOM"),
    }
    record["ircadb"]["variants"] = [
        str(
            _save_image(
                synthesize_contrast(image[0].numpy(), masks, DEENHANCE, rng),
                image,
                work / f"ircadb_synth{k:02d}.nii.gz",
            )
        )
        for k in range(variants)
    ]

    # the contrast DICOM slab: its label file lies on a y-flipped grid; put it on the series' own grid
    dicom = ts / "example_ct_dicom"
    image = io.read_image(dicom)
    label = io.read_label(ts / "example_seg_dicom.nii.gz")
    resample = mt.ResampleToMatch(mode="nearest")
    on_grid = resample(label, image)[0].numpy().round().astype(np.int64)
    empty = np.zeros_like(on_grid, bool)
    labels, _ = organ_map({"liver": on_grid == 5, "spleen": on_grid == 1, "kidney_right": empty, "kidney_left": empty})
    record["ts_dicom"] = {
        "image": str(dicom),
        "label": str(io.write_label(labels, image, work / "ts_dicom_labels.nii.gz")),
    }
    done.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def write_manifest(record: dict, train: str, test: str, path: Path, synthetic: bool) -> Path:
    from volseg.data.manifest import Case
    from volseg.data.manifest import write_manifest as write

    label = Path(record[train]["label"])
    cases = [Case(f"{train}_ct", (Path(record[train]["image"]),), label, "train")]
    if synthetic:
        cases += [
            Case(f"{train}_synth{k:02d}", (Path(v),), label, "train") for k, v in enumerate(record[train]["variants"])
        ]
    cases.append(Case("ts_dicom", (Path(record["ts_dicom"]["image"]),), Path(record["ts_dicom"]["label"]), "val"))
    cases.append(Case(f"{test}_ct", (Path(record[test]["image"]),), Path(record[test]["label"]), "test"))
    write(cases, path)
    return path


# ------------------------------------------------------------------------------------------ one direction


def run_direction(
    record: dict,
    train: str,
    test: str,
    work: Path,
    minutes: float,
    synthetic: bool,
    overrides: list[str],
    tag: str = "",
    merge_kidneys: bool = False,
) -> dict:
    out = work / f"{train}_to_{test}{tag}"
    out.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(record, train, test, out / "manifest.csv", synthetic)
    plan = out / "plan.yaml"
    volseg(
        "plan",
        manifest,
        "-o",
        plan,
        "--config",
        CONFIG,
        "--modality",
        "CT",
        "--labels",
        ",".join(f"{v}={n}" for v, n in ORGANS.items()),
    )
    sets = [*LEVERS, *(MERGED_KIDNEYS if merge_kidneys else []), f"train.time_budget_minutes={minutes}", *overrides]
    run = out / "train"
    if not (run / "last.pt").exists():
        volseg(
            "train",
            "--config",
            plan,
            "--manifest",
            manifest,
            "--output",
            run,
            *[item for o in sets for item in ("--set", o)],
        )
    # the last epoch, not the "best" on the validation slab: a 20-slice slab without kidneys is too thin
    # a view to choose a model by (it is there to watch the contrast gap close, epoch by epoch)
    volseg("infer", manifest, "--split", "test", "--model", run / "last.pt", "-o", out / "pred", "--resume", "--qc")
    volseg(
        "evaluate",
        "--pred",
        out / "pred",
        "--manifest",
        manifest,
        "--split",
        "test",
        "--config",
        CONFIG,
        "-o",
        out / "test_metrics.csv",
    )
    summary = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    train_seconds = sum(float(row["seconds"]) for row in read_rows(run / "training_log.csv"))
    return {
        "train": train,
        "test": test,
        "synthetic_contrast": synthetic,
        "overrides": sets,
        "train_seconds": round(train_seconds, 1),
        "dice": {k: v["dice"]["mean"] for k, v in summary.items()},
        "hd95_mm": {k: v["hd95"]["median"] for k, v in summary.items()},
    }


def train_locator(direction: Path, minutes: float) -> Path:
    """The coarse locator, trained on the fine model's manifest and plan (same organs, same data)."""
    run = direction / "locator"
    if not (run / "last.pt").exists():
        sets = [*LOCATOR_LEVERS, f"train.time_budget_minutes={minutes}"]
        volseg(
            "train",
            "--config",
            direction / "plan.yaml",
            "--manifest",
            direction / "manifest.csv",
            "--output",
            run,
            *[item for o in sets for item in ("--set", o)],
        )
    return run / "last.pt"


def ship(run: Path, target: Path = REPO / "volseg" / "pretrained" / "abdomen-ct" / "model.pt") -> Path:
    """Install a run's model as the built-in abdomen-ct model: only one trained on redistributable data."""
    from volseg.data.manifest import read_manifest
    from volseg.runtime.checkpoint import load_checkpoint, resolve_checkpoint, slim_checkpoint

    manifest = load_checkpoint(resolve_checkpoint(run))["config"]["data"]["manifest"]  # run: folder or .pt
    trained_on = [c for c in read_manifest(manifest) if c.split == "train"]

    def from_ircadb(path: Path) -> bool:
        path = path.resolve()
        return path.name.startswith("ircadb") or "ircadb_3d" in path.parts or "PATIENT_DICOM" in path.parts

    licensed = [c.case_id for c in trained_on if any(from_ircadb(p) for p in c.images)]
    if licensed:
        raise SystemExit(f"{run}: trained on 3D-IRCADb ({licensed[:3]}), CC BY-NC-ND: its weights may not ship")
    return slim_checkpoint(run, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "abdomen_ct", help="working folder (gitignored)")
    parser.add_argument(
        "--direction",
        choices=("ts", "ircadb", "both"),
        default="both",
        help="ts: train on the TotalSegmentator CT, score on IRCADb; ircadb: the reverse",
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget per direction (wall clock)")
    parser.add_argument("--variants", type=int, default=16, help="contrast-synthesized copies per training CT")
    parser.add_argument("--no-synthetic-contrast", dest="synthetic", action="store_false")
    parser.add_argument(
        "--merge-kidneys",
        action="store_true",
        help="train one kidney class, mirrored across x, and split it by side at the midline",
    )
    parser.add_argument("--tag", default="", help="suffix of the run folders, to keep experiments apart")
    parser.add_argument(
        "--ship",
        action="store_true",
        help="install the TotalSegmentator-trained model as the built-in abdomen-ct model",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="train-time config override")
    parser.add_argument(
        "--locator-minutes",
        type=float,
        default=20.0,
        help="training budget of the ROI cascade's 6 mm locator (direction ts; 0: none)",
    )
    args = parser.parse_args()

    args.work = args.work.resolve()
    record = prepare(args.shared, args.work, args.variants)
    directions = {"ts": [("ts", "ircadb")], "ircadb": [("ircadb", "ts")], "both": [("ts", "ircadb"), ("ircadb", "ts")]}
    results = []
    for train, test in directions[args.direction]:
        results.append(
            run_direction(
                record,
                train,
                test,
                args.work,
                args.minutes,
                args.synthetic,
                args.overrides,
                args.tag,
                args.merge_kidneys,
            )
        )
        print(json.dumps(results[-1], indent=1), flush=True)
    ts_run = args.work / f"ts_to_ircadb{args.tag}"
    locator = (
        train_locator(ts_run, args.locator_minutes) if args.locator_minutes and args.direction != "ircadb" else None
    )
    if args.ship:
        target = ship(ts_run / "train" / "last.pt")
        print(f"installed {target}")
        if locator is not None:
            print(f"installed {ship(locator, target.with_name('locator.pt'))}")
    path = args.work / f"results{args.tag}.json"
    path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
