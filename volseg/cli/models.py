"""Commands about the models themselves: ``models`` (the zoo and the built-in trained models) and ``export``
(ONNX, or an int8 twin with its measured agreement)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from volseg.cli.app import app, console, user_errors


@app.command()
def models(
    forward: bool = typer.Option(
        False, "--forward", help="Also run one 3D forward pass of every model on a small odd-sized volume."
    ),
) -> None:
    """List the model zoo (name, description, parameters at the default 3D settings) and the built-in trained models."""
    from volseg.models import build_model, count_parameters, default_features, get_spec, list_models
    from volseg.models.registry import forward_check
    from volseg.pretrained import describe_builtin

    table = Table(title="volseg model zoo (3D defaults: 1 input channel, 2 classes, instance norm)")
    for column in ("model", "description", "features (3D)", "parameters", *(["forward 1x1x35x51x35"] * forward)):
        table.add_column(column)
    with user_errors():
        for name in list_models():
            model = build_model(name, spatial_dims=3, in_channels=1, out_channels=2)
            row = [name, get_spec(name).description, str(default_features(name, 3)), f"{count_parameters(model):,}"]
            table.add_row(*row, *([f"ok {forward_check(name):.2f}s"] * forward))
    console.print(table)
    console.print("built-in trained models (volseg infer --model NAME):")
    for line in describe_builtin():  # one line each: names, labels and paths are never wrapped
        console.print(f"  {line}", highlight=False)


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
        "fp32",
        "--precision",
        help="fp32 (ONNX, dynamic sizes), int8 (OpenVINO IR, NNCF post-training quantization) or bf16 (no model: "
        "bf16's agreement with fp32 measured on --check and recorded, for --precision auto).",
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
    from volseg.inference.int8_check import export_model

    with user_errors():
        lines = export_model(model, precision, output, calibration, check, check_split)
    for line in lines:
        console.print(line, highlight=False, markup=False)
