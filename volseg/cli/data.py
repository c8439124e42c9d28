"""Commands that make and check data: ``manifest``, ``check``, ``plan``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from volseg.cli.app import (
    app,
    console,
    user_errors,
)
from volseg.errors import VolsegError


@app.command()
def manifest(
    src: Path = typer.Argument(
        ...,
        help="MSD/nnU-Net dataset folder, a folder with images/ and labels/, or a DICOM archive of CT series and their RTSTRUCTs.",
    ),
    output: Path = typer.Option(Path("data_manifest.csv"), "-o", "--output", help="CSV to write."),
    val_fraction: float = typer.Option(0.2, help="Share of labeled cases for validation."),
    test_fraction: float = typer.Option(0.1, help="Share of labeled cases held out for testing."),
    seed: int = typer.Option(0, help="Split seed: the same seed gives the same split."),
    structures: Optional[str] = typer.Option(
        None,
        "--structures",
        help="DICOM archive: labels from RTSTRUCT names, 'NAME=REGEX;NAME=REGEX' (case-insensitive full match; values 1..N in this order), e.g. 'liver=Liver|LIVER|Liver_.*;spleen=Spleen' [default: TG-263 names of common organs].",
    ),
) -> None:
    """Build data_manifest.csv (case_id,image,label,split) from a dataset folder, or from a DICOM archive whose
    RTSTRUCTs label its CT series (one label map per case in OUTPUT-stem_labels/; a case with a problem is left
    out with one line per problem, recorded for `volseg check`, and the exit code is 1)."""
    from collections import Counter

    from volseg.data.discover import (
        assign_splits,
        discover_cases,
        is_dataset_folder,
        label_names_from_dataset_json,
    )
    from volseg.data.manifest import write_declared_labels, write_manifest

    if structures is not None or (src.is_dir() and not is_dataset_folder(src)):
        _rtstruct_manifest(src, output, structures, val_fraction, test_fraction, seed)
        return
    with user_errors():
        cases = assign_splits(discover_cases(src), val_fraction, test_fraction, seed)
        write_manifest(cases, output)
        labels = label_names_from_dataset_json(src)
        declared = write_declared_labels(output, labels, str(src / "dataset.json")) if labels else None
    counts = Counter(c.split for c in cases)
    console.print(
        f"wrote {output}: {len(cases)} cases ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})"
        + (f"; declared labels {labels} in {declared}" if declared else "")
    )


def _rtstruct_manifest(
    src: Path, output: Path, structures: Optional[str], val_fraction: float, test_fraction: float, seed: int
) -> None:
    from collections import Counter

    from volseg.data.discover import assign_splits
    from volseg.data.manifest import write_declared_labels, write_manifest
    from volseg.dicom.rtstruct_manifest import (
        build_rtstruct_manifest,
        manifest_cases,
        write_record,
    )

    with user_errors():
        result = build_rtstruct_manifest(src, output, structures)
        cases = assign_splits(manifest_cases(result), val_fraction, test_fraction, seed)
        write_manifest(cases, output)
        declared = write_declared_labels(output, result.labels, f"RTSTRUCT names in {src}")
        record = write_record(result, output, src, structures)
    for case in result.cases:
        found = ", ".join(f"{name}={structure.name}" for name, (_, structure) in case.matched.items())
        missing = [n for n in result.labels.values() if n not in case.matched]
        typer.echo(f"{case.case_id}: {found}" + (f"; not drawn: {', '.join(missing)}" if missing else ""))
    for line in result.problems:
        typer.echo(line)
    counts = Counter(c.split for c in cases)
    splits = f" ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})" if counts else ""
    console.print(
        f"wrote {output}: {len(cases)} cases{splits}, "
        f"labels in {output.parent / (output.stem + '_labels')}; {len(result.skipped)} case(s) and "
        f"{len(result.problems) - sum(len(c.problems) for c in result.skipped)} RTSTRUCT(s) left out; "
        f"{len(result.unpaired)} series without RTSTRUCT; label names in {declared}; record {record}",
        highlight=False,
    )
    if result.problems:
        raise typer.Exit(code=1)


@app.command()
def check(
    manifest_path: Path = typer.Argument(
        Path("data_manifest.csv"),
        metavar="MANIFEST_OR_ARCHIVE",
        help="Manifest CSV, or a folder of DICOM files (an archive, any layout).",
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Config whose data.labels lists valid label values."
    ),
    series_rules: Optional[Path] = typer.Option(
        None, "--series-rules", help="Archive: YAML rules to apply (see `volseg infer`)."
    ),
    modality: Optional[str] = typer.Option(
        None, "--modality", help="Archive: apply the default rules of this modality (CT or MR)."
    ),
) -> None:
    """Load every case and report every problem, one line each. Exit 0 when clean, 1 otherwise.

    On an archive: one line per series found (headers only, no pixel data): its case id, modality, plane,
    slices, and "ok", the geometry fault that would fail it, or why the rules would not select it."""
    from volseg.config import load_config
    from volseg.data.check import check_manifest
    from volseg.data.transforms import resampling_limits

    if manifest_path.is_dir():
        _check_archive(manifest_path, series_rules, modality)
        return
    with user_errors():
        cfg = load_config(config)  # without -c: the defaults, so their 1 mm resampling is checked too
        label_values = {0, *cfg.data.labels} if config else None
        problems = check_manifest(manifest_path, label_values, **resampling_limits(cfg))
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {manifest_path}", err=True)
        raise typer.Exit(code=1)
    console.print(f"{manifest_path}: all cases readable and consistent")


def _check_archive(root: Path, series_rules: Optional[Path], modality: Optional[str]) -> None:
    from volseg.data.check import check_archive
    from volseg.dicom.series_rules import default_rules, load_rules

    with user_errors():
        rules = load_rules(series_rules) if series_rules else default_rules(modality.upper()) if modality else None
        result = check_archive(root, rules)
    for line in result.lines:
        typer.echo(line)
    typer.echo(result.summary, err=bool(result.found))
    raise typer.Exit(code=1 if result.faults or not result.found else 0)


@app.command()
def plan(
    manifest_path: Path = typer.Argument(Path("data_manifest.csv"), metavar="MANIFEST", help="Manifest CSV."),
    output: Path = typer.Option(..., "-o", "--output", help="Config YAML to write, e.g. configs/NAME.yaml."),
    modality: str = typer.Option("auto", help="CT, MR, or auto (CT when the images reach below -500)."),
    memory_gb: float = typer.Option(4.0, help="Training memory budget per device (GB) for patch and batch size."),
    base: Optional[Path] = typer.Option(None, "--config", "-c", help="Start from this config instead of the defaults."),
    label_names: Optional[str] = typer.Option(
        None, "--labels", help="Names, e.g. '1=anterior,2=posterior' [default: dataset.json's or label_N]."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Config override key=value before planning, e.g. data.label_remap={7: 1}."
    ),
) -> None:
    """Fingerprint the labeled cases and write a config planned from them (plus NAME.fingerprint.json)."""
    from volseg.training.planning import plan_manifest

    with user_errors():
        names = _parse_label_names(label_names) if label_names else None
        cfg = plan_manifest(manifest_path, output, base, overrides, memory_gb, modality, names)
    s, p = cfg.sampling, cfg.preprocess
    console.print(
        f"wrote {output}: {cfg.data.modality}, spacing {p.spacing}, normalization {p.normalization}, "
        f"3D patch {s.patch_size_3d} x{s.batch_size_3d}, 2D axis {s.slice_axis} patch {s.patch_size_2d} "
        f"x{s.batch_size_2d}, labels {cfg.data.labels}"
    )


def _parse_label_names(text: str) -> dict[int, str]:
    names = {}
    for item in text.split(","):
        value, sep, name = item.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise VolsegError(f"--labels {text!r}: expected VALUE=NAME pairs, e.g. 1=anterior,2=posterior")
        names[int(value)] = name.strip()
    return names
