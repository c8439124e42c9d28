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
        help="Comma-separated: nifti, dicom-seg, rtstruct (the last two for DICOM inputs; rtstruct: CASE_rtstruct.dcm).",
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
    from volseg.dicom.series_rules import default_rules, load_rules, why_none_selected
    from volseg.inference.batch import OUTPUT_FORMATS, BatchOptions
    from volseg.inference.cohort import run_cohort
    from volseg.inference.inputs import check_named_files, collect_inputs, select_part
    from volseg.inference.open_model import open_segmenter
    from volseg.inference.outputs import RunOutputs
    from volseg.inference.zoo_segmenter import ZooSegmenter
    from volseg.runtime import distributed
    from volseg.runtime.predict import attention_network

    with user_errors():
        check_named_files(inputs)  # a bad scan named here is a usage error, found before the model opens
        if resume and overwrite:
            raise VolsegError("--resume and --overwrite contradict each other; pass one")
        formats = tuple(f.strip() for f in output_format.split(",") if f.strip())
        if not formats or set(formats) - set(OUTPUT_FORMATS):
            raise VolsegError(f"--output-format: expected some of {','.join(OUTPUT_FORMATS)}, got {output_format!r}")
        if roi and (save_probabilities or qc_attention):
            raise VolsegError(
                "--roi writes the chosen label only: --save-probabilities and --qc-attention do not apply"
            )
        rules = load_rules(series_rules) if series_rules else None
        ctx = distributed.setup(device)
        options = InferenceOptions(
            device,
            backend,
            precision,
            overlap,
            tta,
            keep_largest,
            tuple(f.strip() for f in folds.split(",")) if folds else None,
            checkpoint,
        )
        segmenter = open_segmenter(model, options, distributed.device_for(ctx, device), roi, locator)
        warn_about(model)
        if not isinstance(segmenter, ZooSegmenter) and not roi and (save_probabilities or qc_attention):
            raise VolsegError(
                "--save-probabilities and --qc-attention work with volseg models only, "
                f"not with {segmenter.info.summary}"
            )
        rules = rules or default_rules(segmenter.info.modality)
        cases = select_part(collect_inputs(inputs, split, rules), num_parts, part_id)
        if not cases:
            raise VolsegError("no input cases found")
        if qc_attention:
            attention_network(segmenter.model)  # fail now, not once per case
    if ctx.is_main:
        console.print(
            f"model: {segmenter.info.source} ({segmenter.info.summary}, labels "
            f"{dict(segmenter.info.labels)}) on {segmenter.device}, backend {segmenter.backend} "
            f"{segmenter.precision}",
            highlight=False,
        )
    batch = BatchOptions(
        resume=resume,
        overwrite=overwrite,
        save_probabilities=save_probabilities,
        qc=qc or qc_attention,
        qc_attention=qc_attention,
        case_timeout=case_timeout,
        output_formats=formats,
        strict=strict,
    )
    with CaseProgress(len(cases), console, visible=ctx.is_main) as progress:
        run = run_cohort(cases, segmenter, batch, output, report, ctx, on_case=progress.update)
    if run.single and run.results[0].status == "refused":  # the one scan named here: a usage error
        err_console.print(f"[red]error:[/red] {run.results[0].error}", highlight=False)
        raise typer.Exit(code=2)
    for r in run.results:
        if r.status in ("failed", "refused", "partial"):
            colour = "yellow" if r.status == "partial" else "red"
            console.print(f"[{colour}]{r.status}[/{colour}] {r.case_id}: {r.error or r.note}", highlight=False)
    if run.single and not run.failed:
        typer.echo(run.results[0].output)
        if qc or qc_attention:
            typer.echo(RunOutputs(run.out_dir).qc(run.results[0].case_id))
    elif not run.single and ctx.is_main:
        rejected = f", {run.rejected} series not selected ({rules.source})" if run.rejected else ""
        partial = (
            f", {run.partial} partial (an output could not be made: the record's note says why)" if run.partial else ""
        )
        console.print(f"{run.done} of {run.done + run.failed} cases done{partial}{rejected}; record: {run.record}")
    if ctx.is_main and run.done + run.failed == 0:
        console.print(why_none_selected(run.rejections), style="red", markup=False, highlight=False)
    if run.review_page and ctx.is_main:
        console.print(f"review page: {run.review_page}")
    raise typer.Exit(code=run.exit_code)


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
    device: Device = DEFAULTS.device,
    backend: Backend = DEFAULTS.backend,
    precision: Precision = DEFAULTS.precision,
) -> None:
    """Segment the selected series of a PACS and store each DICOM SEG back into its study (DICOMweb).

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

        def show(row: dict) -> None:
            colour = {"ok": "green", "failed": "red"}.get(row["status"], "dim")
            detail = (
                f" SEG {row['seg_uid']}" if row["status"] == "ok" else f": {row['reason']}" if row["reason"] else ""
            )
            console.print(
                f"[{colour}]{row['status']}[/{colour}] {row['case_id'] or row['series_uid']}{detail}", highlight=False
            )

        rows = PacsRun(client, segmenter, rules, output, query, save_nifti, on_row=show, rtstruct=rtstruct).run()
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "rejected", "skipped", "deferred")}
    console.print(
        f"{len(rows)} series found: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f"; record: {output / 'volseg_pacs.csv'}"
    )
    raise typer.Exit(code=1 if counts["failed"] else 0)


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
        case_table,
        demo_cases,
        run_demo,
        split_means,
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
    labels = list(segmenter.info.labels.values())
    table = Table(title="Dice per case ('-': not in the reference; split train: seen in training)")
    for column in ("case", "split", *labels, "mean"):
        table.add_column(column)
    for case, split, cells, mean in case_table(result.rows, labels):
        table.add_row(case, split, *cells, mean)
    console.print(table)
    for failure in result.failed:
        console.print(f"[red]failed[/red] {failure}", highlight=False)
    for split, cases, mean, means in split_means(result.rows, labels, spec.splits):
        console.print(
            f"mean Dice over {cases} {split} case(s): {mean:.4f} ("
            + ", ".join(f"{label} {m:.4f}" for label, m in means.items())
            + ")"
        )
    console.print(f"report: {result.report}; review page: {result.review_page}")
    raise typer.Exit(code=1 if result.failed else 0)
