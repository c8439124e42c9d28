"""The ``volseg`` command line: parse, build, call one library function, report."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from volseg.errors import VolsegError
from volseg.open_model import InferenceOptions

app = typer.Typer(
    name="volseg",
    help="3D volumetric segmentation of CT and MRI with a dimension-generic U-Net model zoo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)  # never break a path or a number across lines


_DEBUG = {"on": False}  # volseg --debug: tracebacks for volseg's own errors too
_DEFAULTS = InferenceOptions()
# The inference options infer, pacs and demo share, declared once (defaults: volseg.open_model.InferenceOptions)
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Backend = Annotated[str, typer.Option("--backend", help="auto, torch, onnxruntime or openvino (auto: fastest installed).")]
Precision = Annotated[str, typer.Option("--precision", help="auto, fp32 or int8 (OpenVINO; auto: int8 only for a model whose int8 agreement is recorded, see `volseg export`).")]
Overlap = Annotated[float, typer.Option("--overlap", min=0.0, max=0.95, help="Sliding-window overlap (3D models; nnU-Net's tile step is 1 - overlap).")]
Tta = Annotated[bool, typer.Option("--tta", help="Mirroring test-time augmentation along the axes the model was trained mirrored on (2^n passes).")]
KeepLargest = Annotated[bool, typer.Option("--keep-largest", help="Keep only the largest connected component per label.")]


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of volseg's own errors too (one line otherwise)."),
) -> None:
    _DEBUG["on"] = debug
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
    """List the model zoo (name, description, parameters at the default 3D settings) and the built-in trained models."""
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
    _print_builtin_models()


def _print_builtin_models() -> None:
    """One line per built-in model (names, labels and paths must never be wrapped)."""
    from volseg.checkpoint import load_checkpoint
    from volseg.pretrained import BUILTIN, DEFAULT, model_file
    from volseg.quantize import MIN_AGREEMENT, agrees, beside_checkpoint

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
        twin = ("; int8 twin (" + ("used on CPU" if agrees(int8.record) else "fp32 kept: agreement below "
                                   f"{MIN_AGREEMENT}") + ")") if int8 else ""
        console.print(f"  {title}: {what}; {config['model']['name']} {config['model']['dims']}D; labels {labels}; "
                      f"{path} ({path.stat().st_size / 1e6:.1f} MB){twin}", highlight=False)


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

    from volseg.data.discover import assign_splits, discover_cases, label_names_from_dataset_json
    from volseg.data.manifest import write_declared_labels, write_manifest

    with _user_errors():
        cases = assign_splits(discover_cases(src), val_fraction, test_fraction, seed)
        write_manifest(cases, output)
        labels = label_names_from_dataset_json(src)
        declared = write_declared_labels(output, labels, str(src / "dataset.json")) if labels else None
    counts = Counter(c.split for c in cases)
    console.print(f"wrote {output}: {len(cases)} cases ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})"
                  + (f"; declared labels {labels} in {declared}" if declared else ""))


@app.command()
def check(
    manifest_path: Path = typer.Argument(Path("data_manifest.csv"), metavar="MANIFEST_OR_ARCHIVE", help="Manifest CSV, or a folder of DICOM files (an archive, any layout)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config whose data.labels lists valid label values."),
    series_rules: Optional[Path] = typer.Option(None, "--series-rules", help="Archive: YAML rules to apply (see `volseg infer`)."),
    modality: Optional[str] = typer.Option(None, "--modality", help="Archive: apply the default rules of this modality (CT or MR)."),
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
    with _user_errors():
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
    from volseg.data.series_rules import default_rules, load_rules

    with _user_errors():
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
    label_names: Optional[str] = typer.Option(None, "--labels", help="Names, e.g. '1=anterior,2=posterior' [default: dataset.json's or label_N]."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value before planning, e.g. data.label_remap={7: 1}."),
) -> None:
    """Fingerprint the labeled cases and write a config planned from them (plus NAME.fingerprint.json)."""
    from volseg.config import load_config, save_config
    from volseg.data.discover import label_names_from_dataset_json
    from volseg.data.manifest import declared_labels, read_manifest
    from volseg.data.plan import fingerprint, plan as make_plan
    from volseg.models.registry import default_features

    with _user_errors():
        cases = read_manifest(manifest_path)
        base_cfg = load_config(base, overrides)
        fp = fingerprint(cases, label_remap=base_cfg.data.label_remap)
        names = (_parse_label_names(label_names) if label_names else declared_labels(manifest_path)
                 or label_names_from_dataset_json(cases[0].image.parent.parent))
        widths = {d: tuple(base_cfg.model.features) if base_cfg.model.features and base_cfg.model.dims == d
                  else default_features(base_cfg.model.name, d) for d in (2, 3)}
        cfg = make_plan(fp, base_cfg, widths, memory_budget_gb=memory_gb, modality=modality, label_names=names)
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


@app.command()
def infer(
    inputs: list[Path] = typer.Argument(..., help="NIfTI/NRRD/MHA files, folders of them, DICOM series folders, or a manifest CSV."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output folder [one input: ./CASE_seg.nii.gz]."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Run folder, checkpoint, or built-in model name (see `volseg models`) [default: hippocampus-mri]."),
    device: Device = _DEFAULTS.device,
    backend: Backend = _DEFAULTS.backend,
    precision: Precision = _DEFAULTS.precision,
    overlap: Overlap = _DEFAULTS.overlap,
    tta: Tta = _DEFAULTS.tta,
    keep_largest: KeepLargest = _DEFAULTS.keep_largest,
    save_probabilities: bool = typer.Option(False, "--save-probabilities", help="Also write CASE_probabilities.npz (float16)."),
    qc: bool = typer.Option(False, "--qc", help="Write CASE_qc.png: three views with the labels overlaid."),
    qc_attention: bool = typer.Option(False, "--qc-attention", help="With --qc: add the attention map (attunet, r2attunet)."),
    resume: bool = typer.Option(False, "--resume", help="Skip cases whose output already exists."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    split: Optional[str] = typer.Option(None, "--split", help="With a manifest: only cases of this split."),
    case_timeout: Optional[float] = typer.Option(None, "--case-timeout", help="Fail a case whose reading/preprocessing takes longer (s)."),
    num_parts: int = typer.Option(1, "--num-parts", help="Split the cohort into this many independent jobs..."),
    part_id: int = typer.Option(0, "--part-id", help="...and run this one (0-based)."),
    output_format: str = typer.Option("nifti", "--output-format", help="Comma-separated: nifti, dicom-seg, rtstruct (the last two for DICOM inputs; rtstruct: CASE_rtstruct.dcm)."),
    series_rules: Optional[Path] = typer.Option(None, "--series-rules", help="YAML rules picking the DICOM series to segment [default: the model's modality, ORIGINAL/PRIMARY, no localizers, >= 10 slices, axial for CT, one per study]."),
    report: bool = typer.Option(False, "--report", help="Also write OUTPUT/report/index.html, the review page (see `volseg report`)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="Segment one label only, on the box a coarse locator model finds for it (label name, e.g. kidney_left); the run record notes the box."),
    locator: Optional[Path] = typer.Option(None, "--locator", help="With --roi: the locator model [default: locator.pt beside the model]."),
    folds: Optional[str] = typer.Option(None, "--folds", help="nnU-Net model folder: the folds to ensemble, e.g. 0,1 or all [default: every fold present]."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="nnU-Net model folder: final (checkpoint_final.pth) or best."),
) -> None:
    """Segment scans; every label map lands on its scan's own grid. Exit 0 all ok, 1 any failed (or no
    series selected), 2 usage, 3 none failed but some partial (an output could not be made: see the note).

    --model takes a volseg run folder, checkpoint or built-in name, or a trained nnU-Net v2 model folder
    (TRAINER__PLANS__CONFIGURATION, its folds ensembled as nnU-Net's predictor does).

    A folder of DICOM files is an archive of any layout: every series is found from its headers and
    segmented or rejected by the series rules, with the reason in the run record. Case ids of DICOM
    series are ``dcm-`` plus a hash of their UIDs (no folder names, no patient data).

    Under torchrun the cases are shared out across ranks (one device each); every rank writes
    volseg_run.rankK.csv and rank 0 merges them into volseg_run.csv.
    """
    from volseg import distributed
    from volseg.cohort import run_cohort
    from volseg.data.series_rules import default_rules, load_rules, why_none_selected
    from volseg.infer import OUTPUT_FORMATS, BatchOptions, Segmenter
    from volseg.inputs import collect_inputs, select_part
    from volseg.open_model import open_segmenter
    from volseg.predict import attention_network
    from volseg.progress import CaseProgress

    with _user_errors():
        if resume and overwrite:
            raise VolsegError("--resume and --overwrite contradict each other; pass one")
        formats = tuple(f.strip() for f in output_format.split(",") if f.strip())
        if not formats or set(formats) - set(OUTPUT_FORMATS):
            raise VolsegError(f"--output-format: expected some of {','.join(OUTPUT_FORMATS)}, got {output_format!r}")
        if roi and (save_probabilities or qc_attention):
            raise VolsegError("--roi writes the chosen label only: --save-probabilities and --qc-attention do not apply")
        rules = load_rules(series_rules) if series_rules else None
        ctx = distributed.setup(device)
        options = InferenceOptions(device, backend, precision, overlap, tta, keep_largest,
                                   tuple(f.strip() for f in folds.split(",")) if folds else None, checkpoint)
        segmenter = open_segmenter(model, options, distributed.device_for(ctx, device), roi, locator)
        _warn_about(model)
        if not isinstance(segmenter, Segmenter) and not roi and (save_probabilities or qc_attention):
            raise VolsegError("--save-probabilities and --qc-attention work with volseg models only, "
                              f"not with {segmenter.info.summary}")
        rules = rules or default_rules(segmenter.info.modality)
        cases = select_part(collect_inputs(inputs, split, rules), num_parts, part_id)
        if not cases:
            raise VolsegError("no input cases found")
        if qc_attention:
            attention_network(segmenter.model)  # fail now, not once per case
    if ctx.is_main:
        console.print(f"model: {segmenter.info.source} ({segmenter.info.summary}, labels "
                      f"{dict(segmenter.info.labels)}) on {segmenter.device}, backend {segmenter.backend} "
                      f"{segmenter.precision}", highlight=False)
    batch = BatchOptions(resume=resume, overwrite=overwrite, save_probabilities=save_probabilities,
                         qc=qc or qc_attention, qc_attention=qc_attention, case_timeout=case_timeout,
                         output_formats=formats)
    with CaseProgress(len(cases), console, visible=ctx.is_main) as progress:
        run = run_cohort(cases, segmenter, batch, output, report, ctx, on_case=progress.update)
    for r in run.results:
        if r.status in ("failed", "partial"):
            colour = "red" if r.status == "failed" else "yellow"
            console.print(f"[{colour}]{r.status}[/{colour}] {r.case_id}: {r.error or r.note}", highlight=False)
    if run.single and not run.failed:
        typer.echo(run.results[0].output)
    elif not run.single and ctx.is_main:
        rejected = f", {run.rejected} series not selected ({rules.source})" if run.rejected else ""
        partial = f", {run.partial} partial (an output could not be made: the record's note says why)" if run.partial else ""
        console.print(f"{run.done} of {run.done + run.failed} cases done{partial}{rejected}; record: {run.record}")
    if ctx.is_main and run.done + run.failed == 0:
        console.print(why_none_selected(run.rejections), style="red", markup=False, highlight=False)
    if run.review_page and ctx.is_main:
        console.print(f"review page: {run.review_page}")
    raise typer.Exit(code=run.exit_code)


@app.command()
def pacs(
    url: str = typer.Argument(..., help="DICOMweb root of the PACS, e.g. http://pacs:8042/dicom-web."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Run folder, checkpoint, or built-in model name [default: hippocampus-mri]."),
    output: Path = typer.Option(Path("volseg_pacs_out"), "-o", "--output", help="Folder for the run record (volseg_pacs.csv)."),
    modality: Optional[str] = typer.Option(None, "--modality", help="Studies and series of this modality [default: the model's]."),
    study_date: Optional[str] = typer.Option(None, "--study-date", help="YYYYMMDD-YYYYMMDD (inclusive) or one YYYYMMDD."),
    accession: list[str] = typer.Option([], "--accession", help="An accession number (repeatable)."),
    accessions_file: Optional[Path] = typer.Option(None, "--accessions-file", help="A file of accession numbers, one per line."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Segment at most this many series in this run."),
    series_rules: Optional[Path] = typer.Option(None, "--series-rules", help="YAML series rules (see `volseg infer`)."),
    auth_file: Optional[Path] = typer.Option(None, "--auth-file", help="YAML with user/password or token [default: VOLSEG_PACS_USER/VOLSEG_PACS_PASSWORD or VOLSEG_PACS_TOKEN]."),
    save_nifti: bool = typer.Option(False, "--save-nifti", help="Also keep each label map as OUT/CASE.nii.gz."),
    device: Device = _DEFAULTS.device,
    backend: Backend = _DEFAULTS.backend,
    precision: Precision = _DEFAULTS.precision,
) -> None:
    """Segment the selected series of a PACS and store each DICOM SEG back into its study (DICOMweb).

    Resumable: a series whose study already holds its volseg SEG is skipped, so a killed run started
    again finishes the rest and stores no SEG twice. Exit 0 all done, 1 any series failed, 2 when the
    PACS cannot be used (unreachable, credentials refused) or a usage error."""
    from volseg.data.series_rules import default_rules, load_rules
    from volseg.open_model import open_segmenter
    from volseg.pacs import (PacsQuery, PacsRun, accession_numbers, check_reachable, connect, credentials,
                             study_dates)

    with _user_errors():
        dates, accessions = study_dates(study_date), accession_numbers(accession, accessions_file)
        rules = load_rules(series_rules) if series_rules else None
        client = connect(url, credentials(auth_file))
        check_reachable(client, url)  # before the model loads: a wrong URL or password fails at once
        segmenter = open_segmenter(model, InferenceOptions(device, backend, precision))
        _warn_about(model)
        rules = rules or default_rules(segmenter.info.modality)
        query = PacsQuery(modality or segmenter.info.modality, dates, accessions, limit)
        console.print(f"model: {segmenter.info.source} ({segmenter.info.summary}, {segmenter.info.modality}, labels "
                      f"{dict(segmenter.info.labels)}); PACS {url}; {rules.source}", highlight=False)

        def show(row: dict) -> None:
            colour = {"ok": "green", "failed": "red"}.get(row["status"], "dim")
            detail = f" SEG {row['seg_uid']}" if row["status"] == "ok" else f": {row['reason']}" if row["reason"] else ""
            console.print(f"[{colour}]{row['status']}[/{colour}] {row['case_id'] or row['series_uid']}{detail}",
                          highlight=False)

        rows = PacsRun(client, segmenter, rules, output, query, save_nifti, on_row=show).run()
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "rejected", "skipped", "deferred")}
    console.print(f"{len(rows)} series found: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                  + f"; record: {output / 'volseg_pacs.csv'}")
    raise typer.Exit(code=1 if counts["failed"] else 0)


@app.command()
def export(
    model: Path = typer.Argument(..., help="Run folder, checkpoint or built-in model name."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="fp32: the ONNX file to write. int8: the model folder [default: the checkpoint's folder]."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (ONNX, dynamic sizes) or int8 (OpenVINO IR, NNCF post-training quantization)."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="int8: manifest (its train split) or folder of images to calibrate on [default: the model's training manifest]."),
    check: Optional[Path] = typer.Option(None, "--check", help="int8: manifest whose cases measure int8 against fp32 [default: the calibration manifest]."),
    check_split: str = typer.Option("val", "--check-split", help="int8: the split of --check to measure on."),
) -> None:
    """Export a trained model: fp32 ONNX (for ONNX Runtime, OpenVINO, TensorRT, ...) or an int8 OpenVINO
    model with its measured agreement (int8.json), which `volseg infer --precision auto` then uses on CPU.
    An nnU-Net model folder gets an int8 twin in volseg's cache (the nnU-Net folder is never written to)."""
    from volseg.checkpoint import load_model
    from volseg.export import export_int8_and_measure
    from volseg.quantize import MIN_AGREEMENT, agrees

    with _user_errors():
        if precision == "fp32":
            from volseg.onnx_export import export_onnx

            if output is None:
                raise VolsegError("--output FILE.onnx is needed for an fp32 export")
            network, cfg, checkpoint = load_model(_model_path(model))
            export_onnx(network, cfg, output)
            console.print(f"wrote {output} ({cfg.model.name} {cfg.model.dims}D from {checkpoint})")
            return
        if precision != "int8":
            raise VolsegError(f"--precision must be fp32 or int8, got {precision!r}")
        done = export_int8_and_measure(model, output, calibration, check, check_split)
    console.print(f"wrote {done.written} (int8, calibrated on {done.record['calibration']['windows']} windows of "
                  f"{done.calibration})", highlight=False)
    agreement = done.record.get("agreement")
    if not agreement:
        console.print(f"[yellow]agreement not measured[/yellow] (no {check_split!r} cases: give --check MANIFEST "
                      "--check-split SPLIT); --precision auto will keep fp32 for this model")
        return
    for name, worst in agreement["dice_vs_fp32_min"].items():
        ref = agreement["dice_vs_reference"]
        against = (f"; vs reference {ref['fp32'][name]:.4f} fp32, {ref['int8'][name]:.4f} int8"
                   if ref["fp32"].get(name) is not None else "")
        console.print(f"  {name}: int8 vs fp32 Dice mean {agreement['dice_vs_fp32_mean'][name]:.4f}, "
                      f"worst {worst:.4f}{against}")
    verdict = ("--precision auto uses it on CPU" if agrees(done.record) else
               f"below {MIN_AGREEMENT}: --precision auto keeps fp32 (--precision int8 forces it)")
    console.print(f"{agreement['cases']} cases; recorded in {done.record_path}: {verdict}", highlight=False)


def _warn_about(model) -> None:
    """The one-line caution of a built-in model that is a demonstration only."""
    from volseg.pretrained import WARNINGS

    if str(model) in WARNINGS:
        console.print(f"[yellow]note:[/yellow] {WARNINGS[str(model)]}", highlight=False)


def _model_path(model: Optional[Path]) -> Path:
    from volseg.pretrained import resolve_model

    return resolve_model(model)


@app.command()
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Folder of predicted label maps (<case_id>.nii.gz)."),
    manifest_path: Optional[Path] = typer.Option(None, "--manifest", help="Reference labels from this manifest..."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="...or from a folder matched by file name."),
    split: Optional[str] = typer.Option("test", "--split", help="With --manifest: the split to evaluate ('all' for every case)."),
    output: Path = typer.Option(Path("metrics.csv"), "-o", "--output", help="Per-case CSV; the summary JSON goes beside it."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config whose data.labels names the labels."),
) -> None:
    """Dice, HD95 and mean surface distance (mm, from the voxel spacing) and volumes per case and label."""
    from volseg.config import load_config
    from volseg.evaluate import evaluate as run_evaluation, pairs_from_folder, pairs_from_manifest, summarize, write_results

    with _user_errors():
        if (manifest_path is None) == (ref is None):
            raise VolsegError("pass exactly one of --manifest or --ref")
        pairs = (pairs_from_manifest(pred, manifest_path, None if split == "all" else split) if manifest_path
                 else pairs_from_folder(pred, ref))
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
        table.add_row(label, f"{m['dice']['mean']:.4f} ± {m['dice']['std']:.4f}", f"{m['dice']['median']:.4f}",
                      f"{m['hd95']['median']:.2f}", f"{m['msd']['median']:.2f}")
    console.print(table)
    for error in errors:
        console.print(f"[red]error[/red] {error}", highlight=False)
    console.print(f"wrote {output} and {json_path}")
    raise typer.Exit(code=1 if errors else 0)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A batch output folder (holding volseg_run.csv)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Reference labels: a manifest CSV or a folder (<case_id>[_seg].nii.gz); adds Dice/HD95 and the reference in the viewer."),
    evaluation: Optional[Path] = typer.Option(None, "--evaluation", help="A `volseg evaluate` CSV, used instead of scoring --reference again [default: RUN_DIR/metrics.csv when present and no --reference]."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config whose data.labels and data.label_colors name and colour the labels [default: names from statistics.csv]."),
) -> None:
    """Write RUN_DIR/report/index.html: a review page that opens offline with a double click.

    A sortable, filterable table (status, seconds, mL per label, flags: failed, empty label, volume
    outside the batch's median +- 3 MAD, touching the border; Dice/HD95 with references), a thumbnail per
    case, a NiiVue viewer (multiplanar + 3D, label overlay) and keyboard review (j/k next/previous, a ok,
    f flag with a note, u next unreviewed, e export CSV), kept in the browser between openings.
    """
    from volseg.config import load_config
    from volseg.report import build_report

    with _user_errors():
        cfg = load_config(config) if config else None
        page = build_report(run_dir, labels=cfg.data.labels if cfg else None,
                            colors=cfg.data.label_colors if cfg else None, reference=reference, evaluation=evaluation)
    console.print(f"review page: {page}")


@app.command()
def demo(
    task: str = typer.Option("mri", "--task", help="mri: hippocampus-mri on the 10 bundled MSD test cases; ct: abdomen-ct on the bundled CTs."),
    output: Path = typer.Option(Path("demo_out"), "-o", "--output", help="Folder for label maps, QC pictures and the report."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Run folder, checkpoint or built-in name [default: the task's built-in model]."),
    device: Device = _DEFAULTS.device,
    backend: Backend = _DEFAULTS.backend,
    precision: Precision = _DEFAULTS.precision,
) -> None:
    """Segment a task's bundled cases with its built-in model, score them, and write a report. The model
    runs the path `volseg infer` takes with the same options."""
    from volseg.demo import TASKS, case_table, demo_cases, run_demo, split_means, task_manifest
    from volseg.open_model import open_segmenter
    from volseg.progress import CaseProgress

    with _user_errors():
        if task not in TASKS:
            raise VolsegError(f"--task must be one of {list(TASKS)}, got {task!r}")
        spec = TASKS[task]
        manifest = task_manifest(spec)
        segmenter = open_segmenter(model or spec.model, InferenceOptions(device, backend, precision))
        _warn_about(model or spec.model)
        console.print(f"model: {segmenter.info.source} ({segmenter.info.summary}) on {segmenter.device}, backend "
                      f"{segmenter.backend} {segmenter.precision}; cases: {'/'.join(spec.splits)} split of {manifest}",
                      highlight=False)
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
        console.print(f"mean Dice over {cases} {split} case(s): {mean:.4f} ("
                      + ", ".join(f"{label} {m:.4f}" for label, m in means.items()) + ")")
    console.print(f"report: {result.report}; review page: {result.review_page}")
    raise typer.Exit(code=1 if result.failed else 0)


def _parse_label_names(text: str) -> dict[int, str]:
    names = {}
    for item in text.split(","):
        value, sep, name = item.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise VolsegError(f"--labels {text!r}: expected VALUE=NAME pairs, e.g. 1=anterior,2=posterior")
        names[int(value)] = name.strip()
    return names


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config YAML (defaults fit the embedded data)."),
    manifest_path: Optional[Path] = typer.Option(None, "--manifest", help="Manifest CSV [default: data_manifest.csv]."),
    dims: Optional[int] = typer.Option(None, "--dims", help="2 (slices) or 3 (patches)."),
    model: Optional[str] = typer.Option(None, "--model", help="Zoo model name (see `volseg models`)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder [default: runs/MODEL_DIMSd]."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Number of epochs (also extends a resumed run)."),
    minutes: Optional[float] = typer.Option(
        None, "--minutes", help="Wall-clock training budget instead of --epochs: the epoch count is fixed after epoch 2."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last checkpoint (and its schedule)."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value, e.g. train.lr=0.01 (repeatable)."),
    nproc: int = typer.Option(1, "--nproc", help="Shortcut for `torchrun --nproc_per_node N -m volseg train ...` on this machine."),
) -> None:
    """Train a zoo model on the manifest's train split, validating on its val split.

    Multi-GPU / multi-node: `torchrun --nproc_per_node N [--nnodes M --rdzv-endpoint HOST:PORT] -m volseg train ...`.
    """
    from volseg.distributed import resolve_device
    from volseg.progress import TrainingProgress
    from volseg.train import train as run_training

    if nproc > 1:
        _relaunch_with_torchrun(nproc)
    is_main = int(os.environ.get("RANK", "0")) == 0
    with _user_errors():
        if minutes is not None and (epochs is not None or minutes <= 0):
            raise VolsegError("--minutes takes a budget > 0 and replaces --epochs; give one of them")
        cfg = _config_with_flags(config, overrides, manifest_path, dims, model, None, minutes)
        resolve_device(device)
        run_dir = output or Path("runs") / f"{cfg.model.name}_{cfg.model.dims}d"
        if is_main:
            console.print(f"training {cfg.model.name} {cfg.model.dims}D on {cfg.data.manifest} -> {run_dir}")
        with TrainingProgress(console, visible=is_main) as progress:
            history = run_training(cfg, run_dir, device=device, resume=resume, callbacks=progress, epochs=epochs)
    if history and is_main:
        best = max((r.val_mean for r in history if r.val_dice), default=float("nan"))
        console.print(f"done: {len(history)} epochs, last loss {history[-1].train_loss:.4f}, "
                      f"best validation Dice {best:.4f}; run folder {run_dir}")


def _relaunch_with_torchrun(nproc: int) -> None:
    """Replace this process with torchrun running the same command minus --nproc."""
    import sys

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                              f"--nproc_per_node={nproc}", "-m", "volseg", *args])


def _config_with_flags(config, overrides, manifest_path, dims, model, epochs=None, minutes=None):
    """The YAML config, then --set overrides, then the named flags (which win)."""
    from volseg.config import load_config
    from volseg.models import list_models

    flags = list(overrides)
    if dims is not None:
        if dims not in (2, 3):
            raise VolsegError(f"--dims must be 2 or 3, got {dims}")
        flags.append(f"model.dims={dims}")
    if model is not None:
        if model not in list_models():
            raise VolsegError(f"unknown model {model!r}; choose one of {list_models()}")
        flags.append(f"model.name={model}")
    if manifest_path is not None:
        flags.append(f"data.manifest={manifest_path}")
    if epochs is not None:
        flags.append(f"train.epochs={epochs}")
    if minutes is not None:
        flags.append(f"train.time_budget_minutes={minutes}")
    return load_config(config, flags)


@contextmanager
def _user_errors():
    """volseg's own errors (:class:`~volseg.errors.VolsegError`) and a missing file become one red line and
    exit code 2; with ``volseg --debug`` the traceback comes first. Any other exception is not the user's
    doing: it propagates with its traceback."""
    try:
        yield
    except (VolsegError, FileNotFoundError) as e:
        if _DEBUG["on"]:
            import traceback

            traceback.print_exception(e)
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def _fail(message: str) -> int:
    console.print(f"[red]error:[/red] {message}")
    return 1


def main() -> None:
    from volseg.textio import tolerate_unencodable_output

    tolerate_unencodable_output()
    app()


if __name__ == "__main__":
    main()
