"""volseg's ``--model totalsegmentator:TASK`` against TotalSegmentator itself, on part models synthesized in
TotalSegmentator's weights layout (real weights cannot be downloaded here).

    .venv/bin/python benchmarks/totalseg_parity.py [--work runs/totalseg_parity] [--tasks total,total_fast]
        [--ts-python /work/nnunet_venv/bin/python]

TotalSegmentator (2.18.0, installed in the nnU-Net venv) runs from its own command line, wrapped only so that
its temporary folder (``s01_0000.nii.gz``: the resampled scan; ``s01.nii.gz``: the merged parts on that grid)
is kept. The home folder gets a ``config.json`` with usage statistics off, so nothing goes to the network. The
part models are ``tests/nnunet_folder.write_model_folder`` folders under TotalSegmentator's own dataset folder
names, each dataset.json labelled with TotalSegmentator's part class map (``class_map_5_parts`` for 291-295,
``class_map['total']`` for 297), plans spacing = the task's resample spacing, 32^3 patches, features (4, 8).

Inputs: the bundled CT (3 mm), a reoriented copy (axes permuted and one flipped: a non-canonical affine) and a
crop resampled to 0.8 x 0.8 x 2.5 mm. Compared: the final label maps (voxels differing, Dice per label), the
resampled scan TotalSegmentator feeds its models vs volseg's, and label names/numbering (volseg's
statistics.csv vs ``class_map['total']``). Writes benchmarks/results/totalseg_parity.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402

TS_PYTHON = Path("/work/nnunet_venv/bin/python")
# TotalSegmentator's package facts, read in its own venv
FACTS = """
import json, importlib.metadata as md
from totalsegmentator.map_to_binary import class_map, class_map_5_parts, map_taskid_to_partname_ct
from totalsegmentator.map_tasks_config import TASK_CONFIGS, TASK_ID_WEIGHTS_CONFIGS
print(json.dumps({"class_map_total": class_map["total"], "parts": class_map_5_parts,
                  "partname": map_taskid_to_partname_ct, "tasks": TASK_CONFIGS["total"],
                  "folders": {k: TASK_ID_WEIGHTS_CONFIGS[k]["foldername"] for k in (291, 292, 293, 294, 295, 297)},
                  "versions": {p: md.version(p) for p in ("TotalSegmentator", "nnunetv2", "torch")}}))
"""
# TotalSegmentator's command line, its temporary folder kept (it has no --keep_temp)
WRAPPER = """
import sys, os, tempfile, contextlib
keep = os.environ["TS_KEEP_TMP"]
real = tempfile.TemporaryDirectory
@contextlib.contextmanager
def kept(*args, **kwargs):
    if kwargs.get("prefix") != "nnunet_tmp_":
        with real(*args, **kwargs) as d:
            yield d
        return
    os.makedirs(keep, exist_ok=True)
    yield keep
tempfile.TemporaryDirectory = kept
from totalsegmentator.bin.TotalSegmentator import main
sys.argv = ["TotalSegmentator", *sys.argv[1:]]
main()
"""


def dice(a: np.ndarray, b: np.ndarray, value: int) -> float:
    total = (a == value).sum() + (b == value).sum()
    return 1.0 if total == 0 else float(2 * ((a == value) & (b == value)).sum() / total)


def facts(ts_python: Path) -> dict:
    out = subprocess.run([str(ts_python), "-c", FACTS], check=True, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_home(home: Path, info: dict) -> None:
    """TOTALSEG_HOME_DIR: config.json (no usage statistics, disclaimer shown) and the synthesized weights."""
    from tests.nnunet_folder import write_model_folder

    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(
        json.dumps(
            {
                "totalseg_id": "totalseg_parity",
                "send_usage_stats": False,
                "prediction_counter": 0,
                "statistics_disclaimer_shown": True,
            },
            indent=4,
        )
    )
    root = home / "nnunet" / "results"
    default, fast = info["tasks"]["sub_modes"]["default"], info["tasks"]["sub_modes"]["fast"]
    models = [
        (tid, info["parts"][info["partname"][str(tid)]], default["resample"], default["trainer"])
        for tid in default["task_id"]
    ]
    models.append((fast["task_id"], info["class_map_total"], fast["resample"], fast["trainer"]))
    for i, (tid, names, spacing, trainer) in enumerate(models):
        folder = root / info["folders"][str(tid)] / f"{trainer}__nnUNetPlans__3d_fullres"
        if (folder / "fold_0" / "checkpoint_final.pth").exists():
            continue
        labels = {"background": 0, **{name: int(value) for value, name in names.items()}}
        write_model_folder(
            root,
            folds=("0",),
            seed=100 + i,
            mirror_axes=None,
            labels=labels,
            dataset_name=info["folders"][str(tid)],
            trainer=trainer,
            patch=(32, 32, 32),
            spacing=(float(spacing),) * 3,
            features=(4, 8),
        )


def make_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    source = nib.load(REPO / "data" / "abdomen_ct" / "ct.nii.gz")
    paths = {"ct": folder / "ct.nii.gz", "reoriented": folder / "reoriented.nii.gz", "aniso": folder / "aniso.nii.gz"}
    nib.save(source, paths["ct"])
    # input axis 0 -> output axis 1 flipped, 1 -> 2, 2 -> 0: a non-canonical (SLP-like) affine
    nib.save(source.as_reoriented(np.array([[1, -1], [2, 1], [0, 1]])), paths["reoriented"])
    data = np.asarray(source.dataobj)[40:80, 30:70, 40:70].astype(np.float64)
    factor = np.array([3.0, 3.0, 3.0]) / np.array([0.8, 0.8, 2.5])
    resampled = np.round(ndimage.zoom(data, factor, order=1)).astype(np.int16)
    affine = source.affine.copy()
    affine[:3, 3] = source.affine[:3, :3] @ np.array([40, 30, 40]) + source.affine[:3, 3]
    affine[:3, :3] = source.affine[:3, :3] @ np.diag(1 / factor)
    nib.save(nib.Nifti1Image(resampled, affine), paths["aniso"])
    return paths


def run(command: list[str], env: dict, timeout: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return time.perf_counter() - started


def volseg_resampled(image: Path, task: str) -> np.ndarray:
    """The int32 grid volseg's TotalSegmentator path feeds its part models (recorded at its ndimage.zoom)."""
    import types

    from volseg.inference.inputs import CaseInput
    from volseg.nnunet import totalseg

    seen = []

    def zoom(*args, **kwargs):
        out = ndimage.zoom(*args, **kwargs)
        seen.append(out)
        return out

    original = totalseg.ndimage
    totalseg.ndimage = types.SimpleNamespace(zoom=zoom)
    try:
        segmenter = totalseg.TotalSegmentatorSegmenter(task, backend="torch")
        segmenter.load(CaseInput(image.name.split(".")[0], (image,)))
    finally:
        totalseg.ndimage = original
    return seen[0].astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "totalseg_parity")
    parser.add_argument("--tasks", default="total_fast,total")
    parser.add_argument("--cases", default="ct,reoriented,aniso")
    parser.add_argument("--ts-python", type=Path, default=TS_PYTHON)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument(
        "--before", type=Path, help="an earlier totalseg_parity.json to show beside (e.g. before a fix)"
    )
    args = parser.parse_args()
    made = provenance(__file__)
    work = args.work.resolve()
    info = facts(args.ts_python)
    home = work / "home"
    make_home(home, info)
    inputs = make_inputs(work / "inputs")
    env = {
        **os.environ,
        "TOTALSEG_HOME_DIR": str(home),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "nnUNet_def_n_proc": "1",
        "no_proxy": "*",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    env.pop("TOTALSEG_WEIGHTS_PATH", None)
    os.environ["TOTALSEG_HOME_DIR"] = str(home)
    os.environ.pop("TOTALSEG_WEIGHTS_PATH", None)
    total_names = {int(k): v for k, v in info["class_map_total"].items()}
    rows, commands = [], {}
    for task in args.tasks.split(","):
        fast = task == "total_fast"
        for case in args.cases.split(","):
            image = inputs[case]
            out = work / task / case
            ts_out, vs_out, keep = out / "totalseg.nii.gz", out / "volseg", out / "ts_tmp"
            ts_cmd = [
                str(args.ts_python),
                "-c",
                WRAPPER,
                "-i",
                str(image),
                "-o",
                str(ts_out),
                "--ml",
                "-ta",
                "total",
                *(["--fast"] if fast else []),
                "--device",
                "cpu",
                "--nr_thr_resamp",
                "1",
                "--nr_thr_saving",
                "1",
            ]
            vs_cmd = [
                str(REPO / ".venv" / "bin" / "volseg"),
                "infer",
                str(image),
                "--model",
                f"totalsegmentator:{task}",
                "-o",
                str(vs_out),
                "--backend",
                "torch",
            ]
            commands[task] = {
                "totalsegmentator": "TOTALSEG_HOME_DIR=runs/totalseg_parity/home TotalSegmentator -i IN "
                "-o OUT.nii.gz --ml -ta total"
                + (" --fast" if fast else "")
                + " --device cpu --nr_thr_resamp 1 --nr_thr_saving 1 (temporary folder kept)",
                "volseg": f"TOTALSEG_HOME_DIR=runs/totalseg_parity/home .venv/bin/volseg infer IN --model "
                f"totalsegmentator:{task} -o OUT --backend torch",
            }
            ts_seconds = run(ts_cmd, {**env, "TS_KEEP_TMP": str(keep)}, args.timeout) if not ts_out.exists() else None
            vs_seconds = run(vs_cmd, env, args.timeout) if not (vs_out / f"{case}_seg.nii.gz").exists() else None
            expected = np.asarray(nib.load(ts_out).dataobj).astype(np.int64)
            labels = np.asarray(nib.load(vs_out / f"{case}_seg.nii.gz").dataobj).astype(np.int64)
            ts_grid = np.asarray(nib.load(keep / "s01_0000.nii.gz").dataobj)
            vs_grid = volseg_resampled(image, task)
            grid = {"ts_shape": list(ts_grid.shape), "volseg_shape": list(vs_grid.shape)}
            if ts_grid.shape == vs_grid.shape:
                delta = np.abs(ts_grid.astype(np.int64) - vs_grid)
                grid.update(differ=int((delta != 0).sum()), max_abs=int(delta.max()), voxels=int(delta.size))
            with open(vs_out / "statistics.csv", newline="") as f:
                stats = list(csv.DictReader(f))
            values = sorted(int(v) for v in set(np.unique(expected)) | set(np.unique(labels)) if v != 0)
            rows.append(
                {
                    "task": task,
                    "case": case,
                    "shape": list(expected.shape),
                    "voxels": int(expected.size),
                    "differ": int((labels != expected).sum()) if labels.shape == expected.shape else None,
                    "labels_ts": int(len(set(np.unique(expected)) - {0})),
                    "labels_volseg": int(len(set(np.unique(labels)) - {0})),
                    "dice": {str(v): round(dice(labels, expected, v), 6) for v in values},
                    "resampled_input": grid,
                    "seconds": {"totalsegmentator": ts_seconds, "volseg": vs_seconds},
                    "statistics_labels": len(stats),
                    "statistics_names_differing": [
                        [r["label"], r["name"], total_names.get(int(r["label"]))]
                        for r in stats
                        if total_names.get(int(r["label"])) != r["name"]
                    ],
                }
            )
            print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("dice",)}), flush=True)
    # label names/numbering: volseg's TotalSegmentator model info vs class_map['total']
    from volseg.nnunet.totalseg import TotalSegmentatorSegmenter

    naming = {}
    for task in args.tasks.split(","):
        names = dict(TotalSegmentatorSegmenter(task, backend="torch").info.labels)
        mismatched = {
            v: [names.get(v), total_names.get(v)]
            for v in sorted(set(names) | set(total_names))
            if names.get(v) != total_names.get(v)
        }
        naming[task] = {
            "volseg_labels": len(names),
            "totalsegmentator_labels": len(total_names),
            "mismatched": {str(k): v for k, v in mismatched.items()},
        }
    lines = [
        "# volseg vs TotalSegmentator on synthesized part models",
        "",
        f"`{made['command']}` on {made['machine']['cpu']}; TotalSegmentator "
        f"{info['versions']['TotalSegmentator']}, nnU-Net {info['versions']['nnunetv2']}, torch "
        f"{info['versions']['torch']} (its venv). Part models: tests/nnunet_folder.write_model_folder under "
        "TotalSegmentator's dataset folder names, labelled with its part class maps, random weights, 32^3 patches.",
        "",
        *(f"- {task}: `{c['totalsegmentator']}` vs `{c['volseg']}`" for task, c in commands.items()),
        "",
        "| task | case | shape | voxels differing | labels TS / volseg | worst Dice | resampled input (TS s01_0000 vs volseg) |"
        + (" before: voxels differing, worst Dice |" if args.before else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if args.before else ""),
    ]
    before = {(r["task"], r["case"]): r for r in json.loads(args.before.read_text())["rows"]} if args.before else {}
    for r in rows:
        g = r["resampled_input"]
        grid = (
            f"{g['differ']} of {g['voxels']} differ (max {g['max_abs']} HU)"
            if "differ" in g
            else f"shapes {g['ts_shape']} vs {g['volseg_shape']}"
        )
        worst = min(r["dice"].values(), default=1.0)
        lines.append(
            f"| {r['task']} | {r['case']} | {'x'.join(map(str, r['shape']))} | "
            f"{r['differ']} of {r['voxels']} ({100 * (r['differ'] or 0) / r['voxels']:.2f}%) | "
            f"{r['labels_ts']} / {r['labels_volseg']} | {worst:.4f} | {grid} |"
            + (
                f" {b['differ']}, {min(b['dice'].values(), default=1.0):.4f} |"
                if (b := before.get((r["task"], r["case"])))
                else (" - |" if args.before else "")
            )
        )
    try:
        import totalsegmentator  # noqa: F401

        source = "the totalsegmentator package installed beside volseg"
    except ImportError:
        source = "volseg's built-in layout (no totalsegmentator package beside volseg): names in part order from each dataset.json"
    lines += [
        "",
        f"Label numbering (volseg's model labels, from {source}, vs TotalSegmentator's class_map['total']):",
        "",
        f"- statistics.csv of every run above: {sum(r['statistics_labels'] for r in rows)} (label, name) rows, "
        f"{sum(len(r['statistics_names_differing']) for r in rows)} named differently from class_map['total']",
    ]
    for task, n in naming.items():
        lines.append(
            f"- {task}: {n['volseg_labels']} vs {n['totalsegmentator_labels']} labels, "
            f"{len(n['mismatched'])} numbers named differently"
            + (f" (first: {dict(list(n['mismatched'].items())[:3])})" if n["mismatched"] else "")
        )
    lines += ["", "Seconds per run are in the JSON (null where an earlier run's output in --work was reused)."]
    if args.before:
        lines += [
            "",
            f"Before: `{args.before.name}`, the same run before volseg resampled the scan with "
            "TotalSegmentator's default `--resampling_order 1` (it used order 3).",
        ]
    result = {
        "versions": info["versions"],
        "commands": commands,
        "rows": rows,
        "naming": naming,
        "before": list(before.values()),
    }
    print(write(args.out, "totalseg_parity", result, lines, made))


if __name__ == "__main__":
    main()
