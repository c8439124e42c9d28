"""The ``volseg`` command line: parse, build, call one library function, report."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

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


@app.command()
def manifest(
    src: Path = typer.Argument(..., help="MSD/nnU-Net dataset folder, or a folder with images/ and labels/."),
    output: Path = typer.Option(Path("data_manifest.csv"), "-o", "--output", help="CSV to write."),
    val_fraction: float = typer.Option(0.2, help="Share of labeled cases for validation."),
    test_fraction: float = typer.Option(0.1, help="Share of labeled cases held out for testing."),
    seed: int = typer.Option(0, help="Split seed: the same seed gives the same split."),
) -> None:
    """Build data_manifest.csv (case_id,image,label,split) from a dataset folder."""
    from collections import Counter

    from volseg.data.discover import assign_splits, discover_cases
    from volseg.data.manifest import write_manifest

    with _user_errors():
        cases = assign_splits(discover_cases(src), val_fraction, test_fraction, seed)
        write_manifest(cases, output)
    counts = Counter(c.split for c in cases)
    console.print(f"wrote {output}: {len(cases)} cases ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})")


@app.command()
def check(
    manifest_path: Path = typer.Argument(Path("data_manifest.csv"), metavar="MANIFEST", help="Manifest CSV."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config whose data.labels lists valid label values."),
) -> None:
    """Load every case and report every problem, one line each. Exit 0 when clean, 1 otherwise."""
    from volseg.config import load_config
    from volseg.data.check import check_manifest

    with _user_errors():
        label_values = {0, *load_config(config).data.labels} if config else None
        problems = check_manifest(manifest_path, label_values)
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {manifest_path}", err=True)
        raise typer.Exit(code=1)
    console.print(f"{manifest_path}: all cases readable and consistent")


@app.command()
def plan(
    manifest_path: Path = typer.Argument(Path("data_manifest.csv"), metavar="MANIFEST", help="Manifest CSV."),
    output: Path = typer.Option(..., "-o", "--output", help="Config YAML to write, e.g. configs/NAME.yaml."),
    modality: str = typer.Option("auto", help="CT, MR, or auto (CT when the images reach below -500)."),
    memory_gb: float = typer.Option(4.0, help="Training memory budget per device (GB) for patch and batch size."),
    base: Optional[Path] = typer.Option(None, "--config", "-c", help="Start from this config instead of the defaults."),
) -> None:
    """Fingerprint the labeled cases and write a config planned from them (plus NAME.fingerprint.json)."""
    from volseg.config import load_config, save_config
    from volseg.data.discover import label_names_from_dataset_json
    from volseg.data.manifest import read_manifest
    from volseg.data.plan import fingerprint, plan as make_plan

    with _user_errors():
        cases = read_manifest(manifest_path)
        fp = fingerprint(cases)
        names = label_names_from_dataset_json(cases[0].image.parent.parent)
        cfg = make_plan(fp, load_config(base), memory_budget_gb=memory_gb, modality=modality, label_names=names)
        cfg.data.manifest = str(manifest_path)
        output.parent.mkdir(parents=True, exist_ok=True)
        save_config(cfg, output)
        fp.save(output.with_suffix(".fingerprint.json"))
    s, p = cfg.sampling, cfg.preprocess
    console.print(
        f"wrote {output}: {cfg.data.modality}, spacing {p.spacing}, normalization {p.normalization}, "
        f"3D patch {s.patch_size_3d} x{s.batch_size_3d}, 2D axis {s.slice_axis} patch {s.patch_size_2d} "
        f"x{s.batch_size_2d}, labels {cfg.data.labels}"
    )


@contextmanager
def _user_errors():
    """Turn expected user-facing errors into one red line and exit code 2, not a traceback."""
    from volseg.config import ConfigError
    from volseg.data.manifest import ManifestError

    try:
        yield
    except (ConfigError, ManifestError, ValueError, FileNotFoundError) as e:
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def _fail(message: str) -> int:
    console.print(f"[red]error:[/red] {message}")
    return 1


def main() -> None:
    app()


if __name__ == "__main__":
    main()
