"""Whole-volume CPU inference of a CT with the pancreas 3D config model, stage by stage, against plain
MONAI ``sliding_window_inference`` in eager fp32 with the same weights and overlap.

Usage: python benchmarks/whole_volume.py [--ct FILE [--label FILE]] [--model NAME_OR_CHECKPOINT]
                                        [--backends torch auto auto-nocrop int8] [--out benchmarks/results] [--quick]
Kinds: a volseg backend in fp32, ``int8`` (OpenVINO int8: a built-in model's shipped twin, else quantized on
windows of the benchmark CT), and either with ``-nocrop`` (the body crop off).
With --model (e.g. the built-in ``abdomen-ct``) a trained model runs on --ct, and every Dice is per label.
Stages: read, preprocess, network, stitching (sliding window minus network), postprocess, invert, write.
The model has the architecture and planned patch of configs/pancreas_ct_3d.yaml. Its weights are fitted
for a few steps (--fit-steps) to the synthetic CT's dense "organ" so that its labels are not pure noise
around 0.5; this is far from a trained model (Dice about 0.1 against the organ after 40 steps), so
label agreement with the body crop on says little about a trained model's. The baseline is the same volume, resampled and normalized the same way
(without volseg's body crop), through MONAI's sliding_window_inference with the model in eager fp32,
inverted with MONAI's Invertd and made discrete with MONAI's AsDiscrete (argmax), as a MONAI user would.
Each run is its own subprocess started by a small parent (Linux keeps the RSS high-water mark across exec,
so the parent must stay small: int8 calibration runs in a child too), so its peak memory is its own.
Writes whole_volume.json and whole_volume.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402

SPACING = [1.5, 1.5, 2.0]
STAGES = ["read", "preprocess", "network", "stitching", "postprocess", "invert", "write"]


def synthetic_ct(folder: Path, shape=(512, 512, 120), spacing=(0.78, 0.78, 2.5)) -> tuple[Path, Path]:
    """A body-like CT in HU (air outside an ellipse of soft tissue, three denser organs) and a label of
    the organ at 150 HU."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x / 0.8) ** 2 + (y / 0.6) ** 2 < 1
    volume = np.full(shape, -1000, np.int16)
    volume[body] = 40
    organs = {}
    for cx, cy, r, hu in ((0.3, 0.1, 0.2, 60), (-0.3, 0.0, 0.15, 150), (0.0, -0.3, 0.1, 400)):
        organs[hu] = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        volume[organs[hu]] = hu
    volume = volume + rng.normal(0, 10, shape).astype(np.int16)
    label = np.zeros(shape, np.uint8)
    label[organs[150]] = 1
    label[..., : shape[2] // 6] = 0  # the organ does not span the whole scan
    volume[..., : shape[2] // 6][organs[150][..., None].repeat(shape[2] // 6, -1)] = 40
    affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), folder / "ct.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), folder / "label.nii.gz")
    return folder / "ct.nii.gz", folder / "label.nii.gz"


def make_run(folder: Path, ct: Path, label: Path | None, quick: bool, steps: int) -> Path:
    """A checkpoint with the pancreas 3D architecture and planned patch, fitted for ``steps`` steps."""
    from monai import transforms as mt

    from volseg.config import load_config
    from volseg.data.transforms import load_and_preprocess
    from volseg.runtime.checkpoint import FORMAT, build_network, save_atomic
    from volseg.training.losses import SegmentationLoss

    sets = [
        f"preprocess.spacing={SPACING}",
        "preprocess.normalization=ct",
        "preprocess.ct_clip=[-100, 240]",
        "preprocess.ct_mean=80",
        "preprocess.ct_std=60",
        "data.labels={1: pancreas}",
        "data.label_remap=null",
        f"sampling.patch_size_3d={[32] * 3 if quick else [96, 160, 160]}",
        "sampling.batch_size_3d=2",
    ]
    if quick:
        sets.append("model.features=[4, 8, 16]")
    cfg = load_config(REPO / "configs" / "pancreas_ct_3d.yaml", sets)
    torch.manual_seed(0)
    model = build_network(cfg)
    if label is not None and steps:
        whole_scan = copy.deepcopy(cfg)  # fit on the whole field of view: the baseline sees the air too
        whole_scan.preprocess.crop_foreground = False
        data = load_and_preprocess(whole_scan)({"image": [str(ct)], "label": str(label)})
        crop = mt.RandCropByPosNegLabeld(
            ["image", "label"], "label", [32, 48, 48] if not quick else [16] * 3, pos=1, neg=1, num_samples=1
        )
        crop.set_random_state(0)
        loss_fn, optimizer = SegmentationLoss(1), torch.optim.AdamW(model.parameters(), 3e-3)
        losses = []
        for _ in range(steps):
            patch = crop(data)[0]
            loss = loss_fn(model(patch["image"][None].as_tensor()), patch["label"][None].as_tensor())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"fitted {steps} steps, mean loss of the last 10: {np.mean(losses[-10:]):.3f}", file=sys.stderr)
    return save_atomic(
        {
            "format": FORMAT,
            "model": model.state_dict(),
            "config": cfg.to_dict(),
            "label_names": dict(cfg.data.labels),
            "epoch": 0,
        },
        folder / "pancreas_3d.pt",
    )


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def run_case(ct: Path, checkpoint: Path, kind: str, overlap: float, out: Path) -> dict:
    """One whole-volume inference, stage by stage. ``kind``: a volseg backend (``auto``, ``torch``, ...),
    ``<backend>-nocrop`` (volseg without the body crop), or ``monai`` (the baseline)."""
    from monai import transforms as mt
    from monai.inferers import sliding_window_inference

    from volseg.data import io
    from volseg.data.transforms import preprocess, to_source_grid
    from volseg.inference.inputs import CaseInput
    from volseg.inference.zoo_segmenter import ZooSegmenter
    from volseg.runtime.predict import activate

    backend = "torch" if kind == "monai" else kind.removesuffix("-nocrop")
    precision = "int8" if backend == "int8" else "fp32"
    backend = "openvino" if backend == "int8" else backend
    segmenter = ZooSegmenter(checkpoint, "cpu", overlap=overlap, backend=backend, precision=precision)
    if kind == "monai" or kind.endswith("-nocrop"):
        segmenter.cfg.preprocess.crop_foreground = False
        segmenter.chain = preprocess(segmenter.cfg)
    if kind == "monai":  # MONAI's own resampling back to the scan's grid (grid_sample), not volseg's
        for step in segmenter.chain.transforms:
            if isinstance(step, mt.Spacingd):
                ours = step.spacing_transform.sp_resample
                step.spacing_transform.sp_resample = mt.SpatialResample(
                    mode=ours.mode, padding_mode=ours.padding_mode, align_corners=ours.align_corners, dtype=ours.dtype
                )
    cfg = segmenter.cfg
    with torch.inference_mode():
        segmenter.network(torch.zeros(1, 1, *cfg.sampling.patch_size_3d))  # warm-up (and the cached ONNX export)
    if kind == "monai":
        stages = {}
        image, stages["read"] = timed(io.read_channels, [str(ct)])
        data, stages["preprocess"] = timed(lambda: segmenter.chain({"image": image}))
        model = segmenter.model.eval()
        with torch.inference_mode():
            logits, stages["network"] = timed(
                lambda: sliding_window_inference(
                    data["image"].as_tensor()[None],
                    cfg.sampling.patch_size_3d,
                    cfg.sampling.batch_size_3d,
                    model,
                    overlap=overlap,
                    mode="gaussian",
                )
            )
        stages["stitching"] = 0.0  # not separable inside MONAI: counted in network
        probs, seconds = timed(lambda: activate(logits)[0])
        back, stages["invert"] = timed(to_source_grid, probs, data["image"], segmenter.chain)
        discrete = mt.AsDiscrete(argmax=True) if back.shape[0] > 1 else mt.AsDiscrete(threshold=0.5)
        labels, post = timed(lambda: discrete(back)[0].numpy().astype(np.uint8))  # MONAI's own post-processing
        stages["postprocess"] = seconds + post
    else:  # exactly what `volseg infer` runs, timed by ZooSegmenter itself
        data = segmenter.load(CaseInput(ct.name, (ct,)))
        labels, _ = segmenter.predict(data)
        stages = data["timings"]
    _, stages["write"] = timed(io.write_label, labels, data["image"], out / f"labels_{kind}.nii.gz")
    return {
        "kind": kind,
        "backend": "monai" if kind == "monai" else segmenter.backend,
        "precision": segmenter.precision,
        "stages": stages,
        "total_s": sum(stages.values()),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "preprocessed_shape": list(data["image"].shape[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path, help="a CT NIfTI (default: a synthetic 512x512x120 CT)")
    parser.add_argument("--label", type=Path, help="its label map, to fit the weights to (with --ct)")
    parser.add_argument(
        "--model",
        help="a trained model (built-in name, run folder or checkpoint) instead of the "
        "fitted pancreas-architecture one",
    )
    parser.add_argument("--backends", nargs="*", default=["torch", "auto", "auto-nocrop", "int8"])
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--fit-steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="whole_volume", help="base name of the JSON and Markdown results")
    parser.add_argument("--quick", action="store_true", help="tiny setting for the test suite")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CT", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, ct, checkpoint = args.child[0], Path(args.child[1]), Path(args.child[2])
        if kind == "export-int8":
            int8_beside(checkpoint, args.model, ct)
        else:
            print(json.dumps(run_case(ct, checkpoint, kind, args.overlap, checkpoint.parent)))
        return
    made = provenance(__file__)
    report = benchmark(args)
    print(write(args.out, args.name, report, markdown(report), made))


def per_label_dice(ours: np.ndarray, other: np.ndarray, labels: dict[int, str], within=None) -> dict[str, float]:
    from volseg.evaluation.metrics import dice

    if within is not None:
        ours, other = np.where(within, ours, 0), np.where(within, other, 0)
    return {name: dice(ours == value, other == value) for value, name in labels.items()}


def benchmark(args) -> dict:
    from volseg.data import io
    from volseg.data.transforms import BODY_HU
    from volseg.pretrained import resolve_model
    from volseg.runtime.checkpoint import load_checkpoint, resolve_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.ct:
            ct, label = args.ct, args.label
        else:
            ct, label = synthetic_ct(work, shape=(64, 64, 24) if args.quick else (512, 512, 120))
        if args.model:
            checkpoint = work / "model.pt"
            checkpoint.symlink_to(resolve_checkpoint(resolve_model(args.model)).resolve())
        else:
            checkpoint = make_run(work, ct, label, args.quick, 2 if args.quick else args.fit_steps)
        if any(kind.startswith("int8") for kind in args.backends):  # in a child: calibration's memory is its own
            cmd = [sys.executable, __file__, "--child", "export-int8", str(ct), str(checkpoint)]
            subprocess.run(cmd + (["--model", args.model] if args.model else []), check=True, capture_output=True)
        config = load_checkpoint(checkpoint)["config"]
        labels = config["data"]["labels"]
        classes = dict(enumerate(labels.values(), start=1))  # class index -> name, as the runs write them
        rows = []
        for kind in ["monai", *args.backends]:
            cmd = [sys.executable, __file__, "--child", kind, str(ct), str(checkpoint), "--overlap", str(args.overlap)]
            rows.append(
                json.loads(
                    subprocess.run(cmd, check=True, capture_output=True, encoding="utf-8").stdout.splitlines()[-1]
                )
            )
        base = rows[0]
        baseline_labels = np.asarray(nib.load(work / "labels_monai.nii.gz").dataobj)
        body = io.read_image(ct)[0].numpy() > BODY_HU  # on the same (source) grid as every label map
        truth = io.read_label(label)[0].numpy().astype(np.int64) if label else None
        values = {v: k for k, v in labels.items()}
        truth_classes = {c: values[n] for c, n in classes.items()}  # class index -> label value in the truth file
        for row in rows:
            ours = np.asarray(nib.load(work / f"labels_{row['kind']}.nii.gz").dataobj)
            row["foreground_voxels"] = int((ours > 0).sum())
            row["dice_vs_monai_per_label"] = per_label_dice(ours, baseline_labels, classes)
            row["dice_vs_monai_in_body_per_label"] = per_label_dice(ours, baseline_labels, classes, within=body)
            row["dice_vs_monai"] = min(row["dice_vs_monai_per_label"].values())
            row["dice_vs_monai_in_body"] = min(row["dice_vs_monai_in_body_per_label"].values())
            if truth is not None:
                ours_values = np.zeros_like(truth)
                for c, v in truth_classes.items():
                    ours_values[ours == c] = v
                row["dice_vs_truth_per_label"] = per_label_dice(ours_values, truth, labels)
                row["dice_vs_truth"] = min(row["dice_vs_truth_per_label"].values())
            row["speedup_vs_monai"] = base["total_s"] / row["total_s"]
            row["network_speedup_vs_monai"] = base["stages"]["network"] / row["stages"]["network"]
            row["non_network_share"] = 1 - row["stages"]["network"] / row["total_s"]
    return {
        "ct": str(args.ct or "synthetic 512x512x120, 0.78x0.78x2.5 mm"),
        "spacing": config["preprocess"]["spacing"],
        "model": args.model or f"pancreas 3D architecture fitted {args.fit_steps} steps",
        "overlap": args.overlap,
        "fit_steps": 0 if args.model else args.fit_steps,
        "labels": list(labels.values()),
        "rows": rows,
    }


def int8_beside(checkpoint: Path, model: str | None, ct: Path) -> None:
    """Put the int8 model next to ``checkpoint``: a built-in model's shipped twin, else one quantized by
    volseg's own export, calibrated on windows of the benchmark CT itself (a speed figure, not accuracy)."""
    from volseg.pretrained import resolve_model
    from volseg.runtime.quantize import IR_NAME, RECORD_NAME, export_int8

    if model:
        source = Path(resolve_model(model)).resolve()
        source = source.parent if source.is_file() else source
        if (source / IR_NAME).is_file():
            for name in (IR_NAME, Path(IR_NAME).with_suffix(".bin").name, RECORD_NAME):
                (checkpoint.parent / name).symlink_to(source / name)
            return
    manifest = checkpoint.parent / "calibration.csv"
    manifest.write_text(f"case_id,image,split\nct,{ct.resolve()},train\n", encoding="utf-8")
    export_int8(checkpoint, checkpoint.parent, manifest)


def markdown(report: dict) -> list[str]:
    names = {"monai": "MONAI sliding_window_inference, eager fp32 (baseline)"}
    lines = [
        f"CT: {report['ct']}; model: {report.get('model', 'fitted')}; resampled to {report['spacing']} mm; "
        f"overlap {report['overlap']}; MONAI's network column includes its stitching. Dice columns: the "
        f"lowest over the labels ({', '.join(report.get('labels', []))}); per label in the JSON.",
        "",
        "| run | " + " | ".join(f"{s} s" for s in STAGES) + " | total s | non-network | peak MB | "
        "speed-up vs MONAI | Dice vs MONAI | in body | vs truth |",
        "|" + "---|" * (len(STAGES) + 8),
    ]
    for r in report["rows"]:
        name = names.get(
            r["kind"],
            f"volseg {r['backend']} {r.get('precision', 'fp32')}"
            + (", no body crop" if r["kind"].endswith("-nocrop") else ""),
        )
        lines.append(
            f"| {name} | "
            + " | ".join(f"{r['stages'][s]:.2f}" for s in STAGES)
            + f" | {r['total_s']:.1f} | {100 * r['non_network_share']:.0f}% | {r['peak_memory_mb']:.0f} | "
            f"{r['speedup_vs_monai']:.2f}x | {r['dice_vs_monai']:.4f} | {r['dice_vs_monai_in_body']:.4f} | "
            + (f"{r['dice_vs_truth']:.4f} |" if "dice_vs_truth" in r else "n/a |")
        )
    return lines


if __name__ == "__main__":
    main()
