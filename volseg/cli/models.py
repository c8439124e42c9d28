"""Commands about the models themselves: ``models`` (the zoo and the built-in trained models) and ``export``
(ONNX, or an int8 twin with its measured agreement)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from volseg.cli.app import app, console, fail, model_path, user_errors
from volseg.errors import VolsegError


@app.command()
def models(
    forward: bool = typer.Option(
        False, "--forward", help="Also run one 3D forward pass of every model on a small odd-sized volume."
    ),
) -> None:
    """List the model zoo (name, description, parameters at the default 3D settings) and the built-in trained models."""
    import torch

    from volseg.models import (
        build_model,
        count_parameters,
        default_features,
        get_spec,
        list_models,
    )

    table = Table(title="volseg model zoo (3D defaults: 1 input channel, 2 classes, instance norm)")
    for column in ("model", "description", "features (3D)", "parameters"):
        table.add_column(column)
    if forward:
        table.add_column("forward 1x1x35x51x35")
    for name in list_models():
        model = build_model(name, spatial_dims=3, in_channels=1, out_channels=2)
        row = [name, get_spec(name).description, str(default_features(name, 3)), f"{count_parameters(model):,}"]
        if forward:
            model.eval()
            x = torch.randn(1, 1, 35, 51, 35)
            start = time.perf_counter()
            with torch.inference_mode():
                y = model(x)
            if tuple(y.shape) != (1, 2, 35, 51, 35) or not torch.isfinite(y).all():
                raise typer.Exit(code=fail(f"{name}: bad forward output {tuple(y.shape)}"))
            row.append(f"ok {time.perf_counter() - start:.2f}s")
        table.add_row(*row)
    console.print(table)
    _print_builtin_models()


def _print_builtin_models() -> None:
    """One line per built-in model (names, labels and paths must never be wrapped)."""
    from volseg.pretrained import BUILTIN, DEFAULT, model_file
    from volseg.runtime.checkpoint import load_checkpoint
    from volseg.runtime.quantize import MIN_AGREEMENT, agrees, beside_checkpoint

    console.print("built-in trained models (volseg infer --model NAME):")
    for name, what in BUILTIN.items():
        path = model_file(name)
        title = name + (" (default)" if name == DEFAULT else "")
        if not path.is_file():
            console.print(f"  {title}: not installed ({path})", highlight=False)
            continue
        config = load_checkpoint(path)["config"]
        labels = ", ".join(f"{v} {n}" for v, n in config["data"]["labels"].items())
        int8 = beside_checkpoint(path)
        twin = (
            (
                "; int8 twin ("
                + ("used on CPU" if agrees(int8.record) else f"fp32 kept: agreement below {MIN_AGREEMENT}")
                + ")"
            )
            if int8
            else ""
        )
        console.print(
            f"  {title}: {what}; {config['model']['name']} {config['model']['dims']}D; labels {labels}; "
            f"{path} ({path.stat().st_size / 1e6:.1f} MB){twin}",
            highlight=False,
        )


@app.command()
def export(
    model: Path = typer.Argument(..., help="Run folder, checkpoint or built-in model name."),
    output: Optional[Path] = typer.Option(
        None,
        "-o",
        "--output",
        help="fp32: the ONNX file to write. int8: the model folder [default: the checkpoint's folder].",
    ),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32 (ONNX, dynamic sizes) or int8 (OpenVINO IR, NNCF post-training quantization)."
    ),
    calibration: Optional[Path] = typer.Option(
        None,
        "--calibration",
        help="int8: manifest (its train split) or folder of images to calibrate on [default: the model's training manifest].",
    ),
    check: Optional[Path] = typer.Option(
        None,
        "--check",
        help="int8: manifest whose cases measure int8 against fp32 [default: the calibration manifest].",
    ),
    check_split: str = typer.Option("val", "--check-split", help="int8: the split of --check to measure on."),
) -> None:
    """Export a trained model: fp32 ONNX (for ONNX Runtime, OpenVINO, TensorRT, ...) or an int8 OpenVINO
    model with its measured agreement (int8.json), which `volseg infer --precision auto` then uses on CPU.
    An nnU-Net model folder gets an int8 twin in volseg's cache (the nnU-Net folder is never written to)."""
    from volseg.inference.int8_check import export_int8_and_measure
    from volseg.runtime.checkpoint import load_model
    from volseg.runtime.quantize import MIN_AGREEMENT, agrees

    with user_errors():
        if precision == "fp32":
            from volseg.runtime.onnx_export import export_onnx

            if output is None:
                raise VolsegError("--output FILE.onnx is needed for an fp32 export")
            network, cfg, checkpoint = load_model(model_path(model))
            export_onnx(network, cfg, output)
            console.print(f"wrote {output} ({cfg.model.name} {cfg.model.dims}D from {checkpoint})")
            return
        if precision != "int8":
            raise VolsegError(f"--precision must be fp32 or int8, got {precision!r}")
        done = export_int8_and_measure(model, output, calibration, check, check_split)
    console.print(
        f"wrote {done.written} (int8, calibrated on {done.record['calibration']['windows']} windows of "
        f"{done.calibration})",
        highlight=False,
    )
    agreement = done.record.get("agreement")
    if not agreement:
        console.print(
            f"[yellow]agreement not measured[/yellow] (no {check_split!r} cases: give --check MANIFEST "
            "--check-split SPLIT); --precision auto will keep fp32 for this model"
        )
        return
    for name, worst in agreement["dice_vs_fp32_min"].items():
        ref = agreement["dice_vs_reference"]
        against = (
            f"; vs reference {ref['fp32'][name]:.4f} fp32, {ref['int8'][name]:.4f} int8"
            if ref["fp32"].get(name) is not None
            else ""
        )
        console.print(
            f"  {name}: int8 vs fp32 Dice mean {agreement['dice_vs_fp32_mean'][name]:.4f}, worst {worst:.4f}{against}"
        )
    verdict = (
        "--precision auto uses it on CPU"
        if agrees(done.record)
        else f"below {MIN_AGREEMENT}: --precision auto keeps fp32 (--precision int8 forces it)"
    )
    console.print(f"{agreement['cases']} cases; recorded in {done.record_path}: {verdict}", highlight=False)
