"""``volseg infer`` as a library call: :func:`segment` (what :func:`volseg.segment` is), in two steps the command
line shows progress between, :func:`prepare` (check the request, open the model once, find the cases) and
:func:`run` (segment them). Every flag of ``volseg infer`` is a field of :class:`SegmentOptions`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from volseg.errors import VolsegError
from volseg.inference.batch import OUTPUT_FORMATS, BatchOptions, CaseResult
from volseg.inference.cohort import CohortSummary, run_cohort
from volseg.inference.open_model import InferenceOptions, open_segmenter


@dataclass(frozen=True)
class SegmentOptions(InferenceOptions):
    """How to segment, as ``volseg infer``'s flags say it (see its ``--help``): the engine's options
    (:class:`~volseg.inference.open_model.InferenceOptions`, its fields and defaults) and the run's."""

    output_formats: tuple[str, ...] = ("nifti",)
    qc: bool = False
    qc_attention: bool = False
    save_probabilities: bool = False
    resume: bool = False
    overwrite: bool = False
    split: str | None = None
    case_timeout: float | None = None
    num_parts: int = 1
    part_id: int = 0
    series_rules: Path | None = None
    report: bool = False
    roi: str | None = None
    locator: Path | None = None
    strict: bool = False
    rtstruct_min_area: float | None = None

    @property
    def engine(self) -> InferenceOptions:
        return InferenceOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(InferenceOptions)})

    @property
    def batch(self) -> BatchOptions:
        return BatchOptions(
            resume=self.resume,
            overwrite=self.overwrite,
            save_probabilities=self.save_probabilities,
            qc=self.qc or self.qc_attention,
            qc_attention=self.qc_attention,
            case_timeout=self.case_timeout,
            output_formats=self.output_formats,
            strict=self.strict,
            rtstruct_min_area=self.rtstruct_min_area,
        )

    def check(self) -> None:
        """Refuse, in one line, flags that contradict each other."""
        if self.resume and self.overwrite:
            raise VolsegError("--resume and --overwrite contradict each other; pass one")
        if not self.output_formats or set(self.output_formats) - set(OUTPUT_FORMATS):
            raise VolsegError(
                f"--output-format: expected some of {','.join(OUTPUT_FORMATS)}, got {','.join(self.output_formats)!r}"
            )
        if self.roi and (self.save_probabilities or self.qc_attention):
            raise VolsegError(
                "--roi writes the chosen label only: --save-probabilities and --qc-attention do not apply"
            )


@dataclass
class Prepared:
    """A request checked, its model open and its cases found: what :func:`run` segments."""

    segmenter: object  # a CaseSegmenter
    cases: list
    rules: object  # the series rules that picked the DICOM series
    ctx: object  # the torchrun context (one process: disabled)
    options: SegmentOptions


def prepare(inputs: Sequence[str | Path], model: str | Path | None, options: SegmentOptions) -> Prepared:
    """Check the scans named in ``inputs`` from their headers before anything else (a bad one is a usage error),
    then the flags; open ``model`` once (None: the default built-in model); find the cases."""
    from volseg.dicom.series_rules import default_rules, load_rules
    from volseg.inference.inputs import check_named_files, collect_inputs, select_part
    from volseg.inference.zoo_segmenter import ZooSegmenter
    from volseg.runtime import distributed
    from volseg.runtime.predict import attention_network

    check_named_files(inputs)
    options.check()
    rules = load_rules(options.series_rules) if options.series_rules else None
    ctx = distributed.setup(options.device)
    device = distributed.device_for(ctx, options.device)
    segmenter = open_segmenter(model, options.engine, device, options.roi, options.locator)
    if (
        not isinstance(segmenter, ZooSegmenter)
        and not options.roi
        and (options.save_probabilities or options.qc_attention)
    ):
        raise VolsegError(
            f"--save-probabilities and --qc-attention work with volseg models only, not with {segmenter.info.summary}"
        )
    rules = rules or default_rules(segmenter.info.modality)
    cases = select_part(collect_inputs(inputs, options.split, rules), options.num_parts, options.part_id)
    if not cases:
        raise VolsegError("no input cases found")
    if options.qc_attention:
        attention_network(segmenter.model)  # fail now, not once per case
    return Prepared(segmenter, cases, rules, ctx, options)


def run(
    prepared: Prepared, output: Path | None = None, on_case: Callable[[CaseResult], None] | None = None
) -> CohortSummary:
    """Segment the prepared cases into ``output`` (one scan and no ``output``: ``./CASE_seg.nii.gz``)."""
    options = prepared.options
    return run_cohort(
        prepared.cases, prepared.segmenter, options.batch, output, options.report, prepared.ctx, on_case=on_case
    )


def segment(
    inputs: str | Path | Sequence[str | Path],
    output: str | Path | None = None,
    model: str | Path | None = None,
    **options,
) -> CohortSummary:
    """Segment scans as ``volseg infer`` does: files, folders, DICOM archives or a manifest CSV, with ``model``
    (a built-in name, a run folder or checkpoint, an nnU-Net folder, ``totalsegmentator:TASK``; None: the default)
    and any flag of ``volseg infer`` as a keyword (``qc=True``, ``tta=True``, ``output_formats=("nifti",
    "dicom-seg")``). Returns the run's summary; ``summary.label_map()`` reads a single scan's label map."""
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(SegmentOptions)})
    if unknown:
        valid = ", ".join(f.name for f in dataclasses.fields(SegmentOptions))
        raise VolsegError(f"volseg.segment: unknown option(s) {', '.join(unknown)}; valid: {valid}")
    prepared = prepare(paths, model, SegmentOptions(**options))
    return run(prepared, Path(output) if output is not None else None)
