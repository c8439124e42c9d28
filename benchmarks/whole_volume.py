"""Whole-volume CPU inference of a CT with the pancreas 3D config model, stage by stage, against plain
MONAI ``sliding_window_inference`` in eager fp32 with the same weights and overlap.

Usage: python benchmarks/whole_volume.py [--ct FILE | --synthetic] [--backend auto] [--out benchmarks/results]
       [--quick]
Stages: read, preprocess, network, stitching (sliding window minus network), postprocess, invert, write.
The model has the architecture of configs/pancreas_ct_3d.yaml with seeded random weights (speed does not
depend on training; the label comparison needs only the same weights on both sides). Each backend runs
in its own subprocess, so its peak memory (RSS high-water mark) is its own. Writes whole_volume.json/.md.
"""

from __future__ import annotations

import argparse
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
SPACING = [1.5, 1.5, 2.0]


def synthetic_ct(path: Path, shape=(512, 512, 120), spacing=(0.78, 0.78, 2.5)) -> Path:
    """A body-like CT: air outside an ellipse of soft tissue with a few denser organs, HU values."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x / 0.8) ** 2 + (y / 0.6) ** 2 < 1
    volume = np.full(shape, -1000, np.int16)
    volume[body] = 40
    for cx, cy, r, hu in ((0.3, 0.1, 0.2, 60), (-0.3, 0.0, 0.15, 150), (0.0, -0.3, 0.1, 400)):
        volume[(x - cx) ** 2 + (y - cy) ** 2 < r**2] = hu
    volume = volume + rng.normal(0, 10, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([*spacing, 1.0])), path)
    return path


def make_run(folder: Path, quick: bool) -> Path:
    """A checkpoint with the pancreas 3D architecture, planned patch and CT normalization."""
    from volseg.checkpoint import FORMAT, build_network, save_atomic
    from volseg.config import load_config

    sets = [f"preprocess.spacing={SPACING}", "preprocess.normalization=ct", "preprocess.ct_clip=[-100, 240]",
            "preprocess.ct_mean=80", "preprocess.ct_std=60", "data.labels={1: pancreas}",
            "data.label_remap=null", f"sampling.patch_size_3d={[32] * 3 if quick else [96, 160, 160]}",
            "sampling.batch_size_3d=2"]
    if quick:
        sets.append("model.features=[4, 8, 16]")
    cfg = load_config(REPO / "configs" / "pancreas_ct_3d.yaml", sets)
    torch.manual_seed(0)
    model = build_network(cfg)
    return save_atomic({"format": FORMAT, "model": model.state_dict(), "config": cfg.to_dict(),
                        "label_names": dict(cfg.data.labels), "epoch": 0}, folder / "pancreas_3d.pt")


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def run_volseg(ct: Path, checkpoint: Path, backend: str, overlap: float, out: Path) -> dict:
    from volseg.data import io
    from volseg.data.transforms import to_source_grid
    from volseg.infer import Segmenter
    from volseg.predict import predict_probabilities, probabilities_to_labels

    segmenter = Segmenter(checkpoint, "cpu", overlap=overlap, backend=backend)
    network_seconds = 0.0

    def network(x):
        nonlocal network_seconds
        start = time.perf_counter()
        y = segmenter.network(x)
        network_seconds += time.perf_counter() - start
        return y

    segmenter.network(torch.zeros(1, 1, *segmenter.cfg.sampling.patch_size_3d))  # warm-up (and ONNX export)
    stages = {}
    image, stages["read"] = timed(io.read_channels, [str(ct)])
    data, stages["preprocess"] = timed(lambda: segmenter.chain({"image": image}))
    probs, window = timed(lambda: predict_probabilities(segmenter.model, data["image"], segmenter.cfg, segmenter.device,
                                                        overlap=overlap, network=network))
    stages["network"], stages["stitching"] = network_seconds, window - network_seconds
    back, stages["invert"] = timed(to_source_grid, probs, data["image"], segmenter.chain)
    labels, stages["postprocess"] = timed(lambda: probabilities_to_labels(torch.as_tensor(back)).numpy())
    _, stages["write"] = timed(io.write_label, labels, data["image"], out / f"volseg_{backend}.nii.gz")
    np.save(out / f"labels_{backend}_preprocessed.npy", probabilities_to_labels(probs).numpy().astype(np.uint8))
    return {"backend": segmenter.backend, "stages": stages, "total_s": sum(stages.values()),
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "preprocessed_shape": list(data["image"].shape[1:])}


def run_monai(ct: Path, checkpoint: Path, overlap: float, out: Path) -> dict:
    """The baseline: the same preprocessed image and weights through plain sliding_window_inference."""
    from monai.inferers import sliding_window_inference

    from volseg.infer import Segmenter

    segmenter = Segmenter(checkpoint, "cpu", overlap=overlap, backend="torch")
    model = segmenter.model.to(memory_format=torch.contiguous_format).eval()
    data = segmenter.chain(segmenter.reader({"image": [str(ct)]}))
    cfg = segmenter.cfg
    with torch.inference_mode():
        model(torch.zeros(1, 1, *cfg.sampling.patch_size_3d))
        start = time.perf_counter()
        logits = sliding_window_inference(torch.as_tensor(data["image"])[None], cfg.sampling.patch_size_3d,
                                          cfg.sampling.batch_size_3d, model, overlap=overlap, mode="gaussian")
        seconds = time.perf_counter() - start
    labels = (torch.sigmoid(logits[0, 0]) > 0.5).numpy().astype(np.uint8)
    np.save(out / "labels_monai_preprocessed.npy", labels)
    return {"backend": "monai sliding_window_inference (eager fp32)", "network_and_stitching_s": seconds,
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path, help="a CT NIfTI (default: a synthetic 512x512x120 CT)")
    parser.add_argument("--backends", nargs="*", default=["torch", "auto"])
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="tiny setting for the test suite")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CT", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, ct, checkpoint = args.child[0], Path(args.child[1]), Path(args.child[2])
        work = checkpoint.parent
        result = run_monai(ct, checkpoint, args.overlap, work) if kind == "monai" else \
            run_volseg(ct, checkpoint, kind, args.overlap, work)
        print(json.dumps(result))
        return
    from volseg.metrics import dice

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ct = args.ct or synthetic_ct(work / "ct.nii.gz", shape=(64, 64, 24) if args.quick else (512, 512, 120))
        checkpoint = make_run(work, args.quick)
        rows = []
        for kind in ["monai", *args.backends]:
            cmd = [sys.executable, __file__, "--child", kind, str(ct), str(checkpoint), "--overlap", str(args.overlap)]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
        baseline_labels = np.load(work / "labels_monai_preprocessed.npy")
        for kind, row in zip(args.backends, rows[1:]):
            ours = np.load(work / f"labels_{kind}_preprocessed.npy")
            row["dice_vs_monai"] = dice(ours == 1, baseline_labels == 1)
            row["speedup_vs_monai_network_and_stitching"] = rows[0]["network_and_stitching_s"] / (
                row["stages"]["network"] + row["stages"]["stitching"])
            row["speedup_vs_monai_whole"] = rows[0]["network_and_stitching_s"] / row["total_s"]
            row["non_network_share"] = 1 - row["stages"]["network"] / row["total_s"]
    report = {"ct": str(args.ct or "synthetic 512x512x120, 0.78x0.78x2.5 mm"), "spacing": SPACING,
              "overlap": args.overlap, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "whole_volume.json").write_text(json.dumps(report, indent=1))
    stages = ["read", "preprocess", "network", "stitching", "postprocess", "invert", "write"]
    lines = [f"CT: {report['ct']}; resampled to {SPACING} mm; overlap {args.overlap}", "",
             "| backend | " + " | ".join(f"{s} s" for s in stages) + " | total s | non-network | peak MB | "
             "speed-up vs MONAI | Dice vs MONAI |", "|" + "---|" * (len(stages) + 6)]
    base = rows[0]
    lines.append(f"| {base['backend']} | " + " | ".join("" for _ in stages) +
                 f" | {base['network_and_stitching_s']:.1f} (network+stitching) | | {base['peak_memory_mb']:.0f} | 1.00x | |")
    for r in rows[1:]:
        lines.append(f"| volseg {r['backend']} | " + " | ".join(f"{r['stages'][s]:.2f}" for s in stages) +
                     f" | {r['total_s']:.1f} | {100 * r['non_network_share']:.0f}% | {r['peak_memory_mb']:.0f} | "
                     f"{r['speedup_vs_monai_whole']:.2f}x | {r['dice_vs_monai']:.4f} |")
    (args.out / "whole_volume.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
