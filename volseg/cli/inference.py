"""Commands that run models on scans: ``infer``, ``pacs``, ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from volseg.cli.app import (
    DEFAULTS,
    Backend,
    Device,
    KeepLargest,
    Overlap,
    Precision,
    Tta,
    app,
    console,
    err_console,
    user_errors,
    warn_about,
)
from volseg.errors import VolsegError
from volseg.inference.open_model import InferenceOptions

RtstructMinArea = typer.Option(
    None,
    "--rtstruct-min-area",
    min=0.0,
    help="mm²: islands (and holes) smaller than this on a slice stay out of the RTSTRUCT only (the label map and SEG "
    "keep them; the run record counts them); 0 keeps all [default: 5].",
)


@app.command()
def infer(
    inputs: list[Path] = typer.Argument(
        ..., help="NIfTI/NRRD/MHA files, folders of them, DICOM series folders, or a manifest CSV."
    ),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output folder [one input: ./CASE_seg.nii.gz]."),
    model: Optional[Path] = typer.Option(
        None,
        "--model",
        "-m",
        help="Run folder, checkpoint, or built-in model name (see `volseg models`) [default: hippocampus-mri].",
    ),
    device: Device = DEFAULTS.device,
    backend: Backend = DEFAULTS.backend,
    precision: Precision = DEFAULTS.precision,
    overlap: Overlap = DEFAULTS.overlap,
    tta: Tta = DEFAULTS.tta,
    keep_largest: KeepLargest = DEFAULTS.keep_largest,
    save_probabilities: bool = typer.Option(
        False, "--save-probabilities", help="Also write CASE_probabilities.npz (float16)."
    ),
    qc: bool = typer.Option(False, "--qc", help="Write CASE_qc.png: three views with the labels overlaid."),
    qc_attention: bool = typer.Option(
        False, "--qc-attention", help="With --qc: add the attention map (attunet, r2attunet)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Skip cases whose output already exists."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    split: Optional[str] = typer.Option(None, "--split", help="With a manifest: only cases of this split."),
    case_timeout: Optional[float] = typer.Option(
        None, "--case-timeout", help="Fail a case whose reading/preprocessing takes longer (s)."
    ),
    num_parts: int = typer.Option(1, "--num-parts", help="Split the cohort into this many independent jobs..."),
    part_id: int = typer.Option(0, "--part-id", help="...and run this one (0-based)."),
    output_format: str = typer.Option(
        "nifti",
        "--output-format",
        help="Comma-separated: nifti, dicom-seg, rtstruct, sr (the last three for DICOM inputs; rtstruct: "
        "CASE_rtstruct.dcm; sr: CASE_sr.dcm, a DICOM SR of each structure's volume and intensities referencing the "
        "SEG, which it writes too).",
    ),
    series_rules: Optional[Path] = typer.Option(
        None,
        "--series-rules",
        help="YAML rules picking the DICOM series to segment [default: the model's modality, ORIGINAL/PRIMARY, no localizers, >= 10 slices, axial for CT, one per study].",
    ),
    report: bool = typer.Option(
        False, "--report", help="Also write OUTPUT/report/index.html, the review page (see `volseg report`)."
    ),
    roi: Optional[str] = typer.Option(
        None,
        "--roi",
        help="Segment one label only, on the box a coarse locator model finds for it (label name, e.g. kidney_left); the run record notes the box.",
    ),
    locator: Optional[Path] = typer.Option(
        None, "--locator", help="With --roi: the locator model [default: locator.pt beside the model]."
    ),
    folds: Optional[str] = typer.Option(
        None,
        "--folds",
        help="nnU-Net model folder: the folds to ensemble, e.g. 0,1 or all [default: every fold present].",
    ),
    checkpoint: str = typer.Option(
        "final", "--checkpoint", help="nnU-Net model folder: final (checkpoint_final.pth) or best."
    ),
    rtstruct_min_area: Optional[float] = RtstructMinArea,
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Refuse a scan unlike the model's training scans (CT given to an MRI model, a field of view 20x "
        "theirs) instead of warning.",
    ),
) -> None:
    """Segment scans; every label map lands on its scan's own grid. Exit 0 all ok, 1 any failed or was refused
    (or no series selected), 2 usage (a bad scan named here, or one --strict refuses), 3 none failed but some
    partial (an output could not be made: see the note).

    --model takes a volseg run folder, checkpoint or built-in name, or a trained nnU-Net v2 model folder
    (TRAINER__PLANS__CONFIGURATION, its folds ensembled as nnU-Net's predictor does).

    A folder of DICOM files is an archive of any layout: every series is found from its headers and
    segmented or rejected by the series rules, with the reason in the run record. Case ids of DICOM
    series are ``dcm-`` plus a hash of their UIDs (no folder names, no patient data).

    Under torchrun the cases are shared out across ranks (one device each); every rank writes
    volseg_run.rankK.csv and rank 0 merges them into volseg_run.csv.
    """
    from volseg.cli.progress import CaseProgress
    from volseg.inference.segment import SegmentOptions, prepare, run

    options = SegmentOptions(
        device=device,
        backend=backend,
        precision=precision,
        overlap=overlap,
        tta=tta,
        keep_largest=keep_largest,
        folds=_listed(folds),
        checkpoint=checkpoint,
        output_formats=_listed(output_format) or (),
        qc=qc,
        qc_attention=qc_attention,
        save_probabilities=save_probabilities,
        resume=resume,
        overwrite=overwrite,
        split=split,
        case_timeout=case_timeout,
        num_parts=num_parts,
        part_id=part_id,
        series_rules=series_rules,
        report=report,
        roi=roi,
        locator=locator,
        strict=strict,
        rtstruct_min_area=rtstruct_min_area,
    )
    with user_errors():
        prepared = prepare(inputs, model, options)
    _announce(prepared, model)
    with CaseProgress(len(prepared.cases), console, visible=prepared.ctx.is_main) as progress:
        summary = run(prepared, output, on_case=progress.update)
    _report(summary, prepared)
    raise typer.Exit(code=summary.exit_code)


def _announce(prepared, model) -> None:
    """Before the first case: the model's caution, the SEG an SR needs, and the model line (rank 0 only)."""
    warn_about(model)
    from volseg.inference.batch import with_references

    formats = prepared.options.output_formats
    if with_references(formats) != tuple(formats):
        console.print("[yellow]note:[/yellow] the SR references its segments in the SEG: CASE_seg.dcm is written too")
    if prepared.ctx.is_main:
        info, segmenter = prepared.segmenter.info, prepared.segmenter
        engine = f"{segmenter.device}, backend {segmenter.backend} {segmenter.precision}"
        console.print(f"model: {info.source} ({info.summary}, labels {dict(info.labels)}) on {engine}", highlight=False)


def _listed(text: str | None) -> tuple[str, ...] | None:
    """``"0,1"`` -> ``("0", "1")``; None stays None."""
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text else None


def _report(run, prepared) -> None:
    """What a user reads after a run: the failed, refused and partial cases, then the label map of one scan or
    the batch's counts; a single refused scan is a usage error (exit 2)."""
    from volseg.dicom.series_rules import why_none_selected
    from volseg.inference.outputs import RunOutputs

    main, options = prepared.ctx.is_main, prepared.options
    if run.single and run.results[0].status == "refused":  # the one scan named here: a usage error
        err_console.print(f"[red]error:[/red] {run.results[0].error}", highlight=False)
        raise typer.Exit(code=2)
    for r in run.results:
        if r.status in ("failed", "refused", "partial"):
            colour = "yellow" if r.status == "partial" else "red"
            console.print(f"[{colour}]{r.status}[/{colour}] {r.case_id}: {r.error or r.note}", highlight=False)
    if run.single and not run.failed:
        typer.echo(run.results[0].output)
        if options.qc or options.qc_attention:
            typer.echo(RunOutputs(run.out_dir).qc(run.results[0].case_id))
    elif not run.single and main:
        rejected = f", {run.rejected} series not selected ({prepared.rules.source})" if run.rejected else ""
        partial = (
            f", {run.partial} partial (an output could not be made: the record's note says why)" if run.partial else ""
        )
        console.print(f"{run.done} of {run.done + run.failed} cases done{partial}{rejected}; record: {run.record}")
    if main and run.done + run.failed == 0:
        console.print(why_none_selected(run.rejections), style="red", markup=False, highlight=False)
    if run.review_page and main:
        console.print(f"review page: {run.review_page}")


@app.command()
def pacs(
    url: str = typer.Argument(..., help="DICOMweb root of the PACS, e.g. http://pacs:8042/dicom-web."),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="Run folder, checkpoint, or built-in model name [default: hippocampus-mri]."
    ),
    output: Path = typer.Option(
        Path("volseg_pacs_out"), "-o", "--output", help="Folder for the run record (volseg_pacs.csv)."
    ),
    modality: Optional[str] = typer.Option(
        None, "--modality", help="Studies and series of this modality [default: the model's]."
    ),
    study_date: Optional[str] = typer.Option(
        None, "--study-date", help="YYYYMMDD-YYYYMMDD (inclusive) or one YYYYMMDD."
    ),
    accession: list[str] = typer.Option([], "--accession", help="An accession number (repeatable)."),
    accessions_file: Optional[Path] = typer.Option(
        None, "--accessions-file", help="A file of accession numbers, one per line."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Segment at most this many series in this run."),
    series_rules: Optional[Path] = typer.Option(None, "--series-rules", help="YAML series rules (see `volseg infer`)."),
    auth_file: Optional[Path] = typer.Option(
        None,
        "--auth-file",
        help="YAML with user/password or token [default: VOLSEG_PACS_USER/VOLSEG_PACS_PASSWORD or VOLSEG_PACS_TOKEN].",
    ),
    save_nifti: bool = typer.Option(False, "--save-nifti", help="Also keep each label map as OUT/CASE_seg.nii.gz."),
    rtstruct: bool = typer.Option(
        False, "--rtstruct", help="Also store an RTSTRUCT of the labels beside each SEG (for planning systems)."
    ),
    sr: bool = typer.Option(
        False, "--sr", help="Also store a DICOM SR of each structure's volume and intensities beside each SEG."
    ),
    rtstruct_min_area: Optional[float] = RtstructMinArea,
    device: Device = DEFAULTS.device,
    backend: Backend = DEFAULTS.backend,
    precision: Precision = DEFAULTS.precision,
) -> None:
    """Segment the selected series of a PACS and store each DICOM SEG back into its study (DICOMweb), with its
    RTSTRUCT (--rtstruct) and measurement report (--sr) beside it.

    Resumable: a series whose study already holds its volseg SEG is skipped, so a killed run started
    again finishes the rest and stores no SEG twice. Exit 0 all done, 1 any series failed, 2 when the
    PACS cannot be used (unreachable, credentials refused) or a usage error."""
    from volseg.dicom.pacs import (
        PacsQuery,
        PacsRun,
        accession_numbers,
        check_reachable,
        connect,
        credentials,
        study_dates,
    )
    from volseg.dicom.series_rules import default_rules, load_rules
    from volseg.inference.open_model import open_segmenter

    with user_errors():
        dates, accessions = study_dates(study_date), accession_numbers(accession, accessions_file)
        rules = load_rules(series_rules) if series_rules else None
        client = connect(url, credentials(auth_file))
        check_reachable(client, url)  # before the model loads: a wrong URL or password fails at once
        segmenter = open_segmenter(model, InferenceOptions(device, backend, precision))
        warn_about(model)
        rules = rules or default_rules(segmenter.info.modality)
        query = PacsQuery(modality or segmenter.info.modality, dates, accessions, limit)
        console.print(
            f"model: {segmenter.info.source} ({segmenter.info.summary}, {segmenter.info.modality}, labels "
            f"{dict(segmenter.info.labels)}); PACS {url}; {rules.source}",
            highlight=False,
        )
        run = PacsRun(client, segmenter, rules, output, query, save_nifti, _show_row, rtstruct, sr, rtstruct_min_area)
        rows = run.run()
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "rejected", "skipped", "deferred")}
    found = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    console.print(f"{len(rows)} series found: {found}; record: {output / 'volseg_pacs.csv'}")
    raise typer.Exit(code=1 if counts["failed"] else 0)


def _show_row(row: dict) -> None:
    """One line per series of a PACS run, as it ends."""
    colour = {"ok": "green", "failed": "red"}.get(row["status"], "dim")
    detail = f" SEG {row['seg_uid']}" if row["status"] == "ok" else f": {row['reason']}" if row["reason"] else ""
    console.print(
        f"[{colour}]{row['status']}[/{colour}] {row['case_id'] or row['series_uid']}{detail}", highlight=False
    )


@app.command()
def demo(
    task: str = typer.Option(
        "mri",
        "--task",
        help="mri: hippocampus-mri on the 10 bundled MSD test cases; ct: abdomen-ct on the bundled CTs.",
    ),
    output: Path = typer.Option(
        Path("demo_out"), "-o", "--output", help="Folder for label maps, QC pictures and the report."
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="Run folder, checkpoint or built-in name [default: the task's built-in model]."
    ),
    device: Device = DEFAULTS.device,
    backend: Backend = DEFAULTS.backend,
    precision: Precision = DEFAULTS.precision,
) -> None:
    """Segment a task's bundled cases with its built-in model, score them, and write a report. The model
    runs the path `volseg infer` takes with the same options."""
    from volseg.cli.progress import CaseProgress
    from volseg.inference.demo import (
        TASKS,
        demo_cases,
        run_demo,
        task_manifest,
    )
    from volseg.inference.open_model import open_segmenter

    with user_errors():
        if task not in TASKS:
            raise VolsegError(f"--task must be one of {list(TASKS)}, got {task!r}")
        spec = TASKS[task]
        manifest = task_manifest(spec)
        segmenter = open_segmenter(model or spec.model, InferenceOptions(device, backend, precision))
        warn_about(model or spec.model)
        console.print(
            f"model: {segmenter.info.source} ({segmenter.info.summary}) on {segmenter.device}, backend "
            f"{segmenter.backend} {segmenter.precision}; cases: {'/'.join(spec.splits)} split of {manifest}",
            highlight=False,
        )
        with CaseProgress(len(demo_cases(manifest, spec.splits)), console) as progress:
            result = run_demo(segmenter, output, manifest, on_case=progress.update, splits=spec.splits)
    _print_demo(result, list(segmenter.info.labels.values()), spec.splits)
    raise typer.Exit(code=1 if result.failed else 0)


def _print_demo(result, labels: list[str], splits) -> None:
    """The demo's Dice per case, its failures and the mean Dice per split."""
    from volseg.inference.demo import case_table, split_means

    table = Table(title="Dice per case ('-': not in the reference; split train: seen in training)")
    for column in ("case", "split", *labels, "mean"):
        table.add_column(column)
    for case, split, cells, mean in case_table(result.rows, labels):
        table.add_row(case, split, *cells, mean)
    console.print(table)
    for failure in result.failed:
        console.print(f"[red]failed[/red] {failure}", highlight=False)
    for split, cases, mean, means in split_means(result.rows, labels, splits):
        per_label = ", ".join(f"{label} {m:.4f}" for label, m in means.items())
        console.print(f"mean Dice over {cases} {split} case(s): {mean:.4f} ({per_label})")
    console.print(f"report: {result.report}; review page: {result.review_page}")
