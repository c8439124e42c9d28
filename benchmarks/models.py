"""Zoo models vs their MONAI counterparts on a 3D patch: latency, training step, memory, FLOPs.

Usage: python benchmarks/models.py [--patch 96] [--repeats 5] [--out benchmarks/results] [--quick]
Each (model, mode) runs in a fresh subprocess so its peak memory (RSS high-water mark on CPU,
max_memory_allocated on CUDA) is its own. FLOPs come from torch's FlopCounterMode; achieved GFLOP/s is
FLOPs / median forward time, beside the fp32 matmul GFLOP/s measured in the same run.
Writes models.json and models.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, seconds_per_call, write  # noqa: E402

# volseg model -> (its widths, the MONAI counterpart built at matched widths)
PAIRS = {
    "unet": ((32, 32, 64, 128, 256), "BasicUNet"),
    "unetpp": ((32, 32, 64, 128, 256), "BasicUNetPlusPlus"),
    "attunet": ((16, 32, 64, 128, 256), "AttentionUnet"),
    "resunet": ((16, 32, 64, 128, 256), "UNet (2 residual units)"),
    "r2unet": ((16, 32, 64, 128, 256), None),
    "r2attunet": ((16, 32, 64, 128, 256), None),
}


def build(kind: str, name: str, features: tuple[int, ...]) -> torch.nn.Module:
    if kind == "volseg":
        from volseg.models import build_model

        return build_model(name, 3, 1, 2, features=features, norm="instance")
    from monai.networks import nets

    counterpart = PAIRS[name][1]
    if counterpart == "BasicUNet":
        return nets.BasicUNet(3, 1, 2, features=(*features, features[0]))
    if counterpart == "BasicUNetPlusPlus":
        return nets.BasicUNetPlusPlus(3, 1, 2, features=(*features, features[0]))
    if counterpart == "AttentionUnet":
        return nets.AttentionUnet(3, 1, 2, channels=features, strides=(2,) * (len(features) - 1))
    return nets.UNet(3, 1, 2, channels=features, strides=(2,) * (len(features) - 1), num_res_units=2)


def matmul_gflops(device: torch.device, n: int = 4096, repeats: int = 3, rounds: int = 3) -> float:
    """The best of a few rounds of large fp32 matmuls: the reference a network's GFLOP/s is judged against
    (taking the best keeps the ratio conservative)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = 0.0
    for _ in range(rounds):
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(kind: str, name: str, patch: int, repeats: int, device: str) -> dict:
    """One model in this process: forward latency, GFLOP/s, training step, peak memory."""
    from volseg.models import count_parameters, forward_flops

    dev = torch.device(device)
    features = PAIRS[name][0]
    model = build(kind, name, features).to(dev)
    x = torch.randn(1, 1, patch, patch, patch, device=dev)
    model.eval()
    flops = forward_flops(model, tuple(x.shape))
    with torch.inference_mode():
        times = seconds_per_call(lambda: model(x), repeats, lambda: _sync(dev))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    target = torch.randint(0, 2, (1, patch, patch, patch), device=dev)

    def train_step() -> None:
        out = model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(out, target).backward()
        optimizer.step()

    steps = seconds_per_call(train_step, max(2, repeats // 2), lambda: _sync(dev))
    forward = statistics.median(times)
    peak_mb = (
        torch.cuda.max_memory_allocated(dev) / 2**20
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "kind": kind,
        "model": name,
        "counterpart": PAIRS[name][1] if kind == "monai" else name,
        "features": list(features),
        "parameters": count_parameters(model),
        "forward_s": forward,
        "train_step_s": statistics.median(steps),
        "gflop": flops / 1e9,
        "gflops_per_s": flops / forward / 1e9,
        "peak_memory_mb": peak_mb,
    }


def measure_default_model(backend: str, repeats: int, device: str) -> dict:
    """The shipped default model's forward pass as `volseg infer` runs it: one window of its training patch
    through a volseg inference backend (batch 1, the fastest on CPU for OpenVINO)."""
    from torch.utils.flop_counter import FlopCounterMode

    from volseg.inference.zoo_segmenter import ZooSegmenter
    from volseg.models import count_parameters
    from volseg.pretrained import DEFAULT, model_file
    from volseg.runtime.onnx_export import example_input

    segmenter = ZooSegmenter(model_file(DEFAULT), device, backend=backend)
    x = example_input(segmenter.cfg)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            segmenter.model(x.to(segmenter.device))
        times = seconds_per_call(lambda: segmenter.network(x), repeats, lambda: _sync(segmenter.device))
    forward, flops = min(times), counter.get_total_flops()
    return {
        "kind": "default",
        "model": "default model",
        "counterpart": f"volseg {segmenter.backend}",
        "features": list(segmenter.cfg.model.features),
        "patch": list(x.shape[2:]),
        "parameters": count_parameters(segmenter.model),
        "forward_s": forward,
        "gflop": flops / 1e9,
        "gflops_per_s": flops / forward / 1e9,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="*", default=list(PAIRS))
    parser.add_argument(
        "--default-backends",
        nargs="*",
        default=["torch", "auto"],
        help="inference backends for the default model's forward pass",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="tiny setting (patch 32, 1 repeat) for the test suite")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.patch, args.repeats = 32, 1
    if args.child:
        kind, name = args.child
        result = (
            measure_default_model(name, max(args.repeats, 3), args.device)
            if kind == "default"
            else measure(kind, name, args.patch, args.repeats, args.device)
        )
        print(json.dumps(result))
        return
    made = provenance(__file__)

    def child(kind: str, name: str) -> dict:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            kind,
            name,
            "--patch",
            str(args.patch),
            "--repeats",
            str(args.repeats),
            "--device",
            args.device,
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, encoding="utf-8").stdout
        return json.loads(out.strip().splitlines()[-1])

    rows = [child("default", backend) for backend in args.default_backends]
    for name in args.models:
        rows += [child(kind, name) for kind in (("volseg", "monai") if PAIRS[name][1] else ("volseg",))]
    peak = matmul_gflops(torch.device(args.device))
    by_key = {(r["kind"], r["model"]): r for r in rows}
    for r in rows:
        r["share_of_matmul_peak"] = r["gflops_per_s"] / peak
        monai = by_key.get(("monai", r["model"]))
        if r["kind"] == "volseg" and monai:
            r["train_step_vs_monai"] = r["train_step_s"] / monai["train_step_s"]
            r["train_time_per_gflop_vs_monai"] = (r["train_step_s"] / r["gflop"]) / (
                monai["train_step_s"] / monai["gflop"]
            )
    report = {
        "device": args.device,
        "patch": args.patch,
        "matmul_gflops_per_s": peak,
        "rows": rows,
    }
    lines = [
        f"fp32 matmul: {peak:.0f} GFLOP/s (best of 3 rounds of 4096^2 matmuls); device {args.device}",
        "",
        "Default model forward pass (as `volseg infer` runs it, one window):",
        "",
        "| backend | patch | GFLOP | forward s | GFLOP/s | % of matmul |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["kind"] == "default":
            lines.append(
                f"| {r['counterpart']} | {'x'.join(map(str, r['patch']))} | {r['gflop']:.1f} | "
                f"{r['forward_s']:.3f} | {r['gflops_per_s']:.1f} | {100 * r['share_of_matmul_peak']:.0f}% |"
            )
    head = [
        "model",
        "net",
        "params",
        "GFLOP",
        "forward s",
        "GFLOP/s",
        "% matmul",
        "train step s",
        "peak MB",
        "step vs MONAI",
        "per-GFLOP vs MONAI",
    ]
    lines += [
        "",
        f"Zoo vs MONAI, eager torch fp32, patch {args.patch}^3, batch 1:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        if r["kind"] == "default":
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    "volseg" if r["kind"] == "volseg" else r["counterpart"],
                    f"{r['parameters']:,}",
                    f"{r['gflop']:.1f}",
                    f"{r['forward_s']:.3f}",
                    f"{r['gflops_per_s']:.1f}",
                    f"{100 * r['share_of_matmul_peak']:.0f}%",
                    f"{r['train_step_s']:.3f}",
                    f"{r['peak_memory_mb']:.0f}",
                    f"{r['train_step_vs_monai']:.2f}x" if "train_step_vs_monai" in r else "",
                    f"{r['train_time_per_gflop_vs_monai']:.2f}x" if "train_time_per_gflop_vs_monai" in r else "",
                ]
            )
            + " |"
        )
    print(write(args.out, "models", report, lines, made))


if __name__ == "__main__":
    main()
