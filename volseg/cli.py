"""The ``volseg`` command line: parse, build, call one library function, report."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="volseg",
    help="3D volumetric segmentation of CT and MRI with a dimension-generic U-Net model zoo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from volseg import __version__

        console.print(f"volseg {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        console.print(ctx.get_help())
        raise typer.Exit()


@app.command()
def models(
    forward: bool = typer.Option(
        False, "--forward", help="Also run one 3D forward pass of every model on a small odd-sized volume."
    ),
) -> None:
    """List the model zoo: name, description, parameters at the default 3D settings."""
    import torch

    from volseg.models import build_model, count_parameters, default_features, get_spec, list_models

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
                raise typer.Exit(code=_fail(f"{name}: bad forward output {tuple(y.shape)}"))
            row.append(f"ok {time.perf_counter() - start:.2f}s")
        table.add_row(*row)
    console.print(table)


def _fail(message: str) -> int:
    console.print(f"[red]error:[/red] {message}")
    return 1


def main() -> None:
    app()


if __name__ == "__main__":
    main()
