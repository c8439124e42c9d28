"""Commands that read results: ``evaluate`` and ``report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from volseg.cli.app import (
    app,
    console,
    user_errors,
)
from volseg.errors import VolsegError


@app.command()
def evaluate(
    pred: Path = typer.Option(
        ...,
        "--pred",
        help="Folder of predicted label maps (<case_id>_seg.nii.gz as volseg writes them, or <case_id>.nii.gz).",
    ),
    manifest_path: Optional[Path] = typer.Option(None, "--manifest", help="Reference labels from this manifest..."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="...or from a folder matched by file name."),
    split: Optional[str] = typer.Option(
        "test", "--split", help="With --manifest: the split to evaluate ('all' for every case)."
    ),
    output: Path = typer.Option(
        Path("metrics.csv"), "-o", "--output", help="Per-case CSV; the summary JSON goes beside it."
    ),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config whose data.labels names the labels."),
) -> None:
    """Dice, HD95 and mean surface distance (mm, from the voxel spacing) and volumes per case and label."""
    from volseg.config import load_config
    from volseg.evaluation.evaluate import evaluate as run_evaluation
    from volseg.evaluation.evaluate import (
        pairs_from_folder,
        pairs_from_manifest,
        summarize,
        write_results,
    )

    with user_errors():
        if (manifest_path is None) == (ref is None):
            raise VolsegError("pass exactly one of --manifest or --ref")
        pairs = (
            pairs_from_manifest(pred, manifest_path, None if split == "all" else split)
            if manifest_path
            else pairs_from_folder(pred, ref)
        )
        if not pairs:
            raise VolsegError(f"no prediction/reference pairs found for {pred}")
        labels = load_config(config).data.labels if config else None
        rows, errors = run_evaluation(pairs, labels)
        summary = summarize(rows)
        json_path = write_results(rows, summary, output)
    table = Table(title=f"{len({r['case_id'] for r in rows})} cases")
    for column in ("label", "Dice mean ± std", "Dice median", "HD95 mm (median)", "MSD mm (median)"):
        table.add_column(column)
    for label, m in summary.items():
        table.add_row(
            label,
            f"{m['dice']['mean']:.4f} ± {m['dice']['std']:.4f}",
            f"{m['dice']['median']:.4f}",
            f"{m['hd95']['median']:.2f}",
            f"{m['msd']['median']:.2f}",
        )
    console.print(table)
    for error in errors:
        console.print(f"[red]error[/red] {error}", highlight=False)
    console.print(f"wrote {output} and {json_path}")
    raise typer.Exit(code=1 if errors else 0)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A batch output folder (holding volseg_run.csv)."),
    reference: Optional[Path] = typer.Option(
        None,
        "--reference",
        help="Reference labels: a manifest CSV or a folder (<case_id>[_seg].nii.gz); adds Dice/HD95 and the reference in the viewer.",
    ),
    evaluation: Optional[Path] = typer.Option(
        None,
        "--evaluation",
        help="A `volseg evaluate` CSV, used instead of scoring --reference again [default: RUN_DIR/metrics.csv when present and no --reference].",
    ),
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        "-c",
        help="Config whose data.labels and data.label_colors name and colour the labels [default: names from statistics.csv].",
    ),
) -> None:
    """Write RUN_DIR/report/index.html: a review page that opens offline with a double click.

    A sortable, filterable table (status, seconds, mL per label, flags: failed, empty label, volume
    outside the batch's median +- 3 MAD, touching the border; Dice/HD95 with references), a thumbnail per
    case, a NiiVue viewer (multiplanar + 3D, label overlay) and keyboard review (j/k next/previous, a ok,
    f flag with a note, u next unreviewed, e export CSV), kept in the browser between openings.
    """
    from volseg.config import load_config
    from volseg.report.build import build_report

    with user_errors():
        cfg = load_config(config) if config else None
        page = build_report(
            run_dir,
            labels=cfg.data.labels if cfg else None,
            colors=cfg.data.label_colors if cfg else None,
            reference=reference,
            evaluation=evaluation,
        )
    console.print(f"review page: {page}")
