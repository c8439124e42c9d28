"""A cohort run, as ``volseg infer`` does it after parsing: the batch, the per-rank records merged under
torchrun, the counts every rank agrees on, and the review page. A library user running this under torchrun
gets the merged run record too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from volseg.errors import VolsegError
from volseg.inference import label_statistics as statistics
from volseg.inference.batch import BatchOptions, CaseResult, run_batch
from volseg.inference.inputs import CaseInput, select_part
from volseg.inference.outputs import RUN_CSV, RunOutputs
from volseg.inference.run_record import merge_run_csvs
from volseg.runtime import distributed


@dataclass
class CohortSummary:
    results: list[CaseResult]  # this rank's cases
    out_dir: Path
    single: bool  # one scan written as ./CASE_seg.nii.gz, no run record
    done: int = 0  # over every rank; partial cases count as done
    failed: int = 0  # refused (--strict) cases count as failed
    rejected: int = 0
    partial: int = 0
    review_page: Path | None = None
    rejections: list[str] = field(default_factory=list)  # why series were not selected (this rank)

    @property
    def record(self) -> Path:
        return self.out_dir / RUN_CSV

    def label_map(self, case_id: str | None = None):
        """The label map written for ``case_id`` (None: the run's one case), read as a nibabel image."""
        import nibabel as nib

        done = [r for r in self.results if r.status in ("ok", "partial") and (case_id is None or r.case_id == case_id)]
        if len(done) != 1:
            raise VolsegError(f"{len(done)} segmented case(s) match {case_id or 'the run'}; name one case id")
        nifti = [p for p in done[0].output.split(";") if p.endswith((".nii.gz", ".nii"))]
        if not nifti:
            raise VolsegError(f"{done[0].case_id}: no NIfTI label map was written (output formats)")
        return nib.load(nifti[0])

    @property
    def exit_code(self) -> int:
        """0 all ok, 1 any failed or nothing selected, 3 none failed but some partial."""
        return 1 if self.failed or self.done + self.failed == 0 else 3 if self.partial else 0


def run_cohort(
    cases: list[CaseInput],
    segmenter,
    options: BatchOptions,
    output: Path | None = None,
    report: bool = False,
    ctx: distributed.Context | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
) -> CohortSummary:
    """Segment ``cases`` into ``output`` (default ./volseg_out; one scan and no ``output``: ./CASE_seg.nii.gz).
    Under torchrun (``ctx.enabled``) each rank takes its share and rank 0 merges the records."""
    ctx = ctx or distributed.Context()
    single = output is None and len(cases) == 1 and not cases[0].rejected and not ctx.enabled and not report
    out_dir = Path.cwd() if single else (output or Path("volseg_out"))
    outputs = RunOutputs(out_dir, keep_record=not single, rank=ctx.rank if ctx.enabled else None)
    if ctx.enabled:
        cases = select_part(cases, ctx.world_size, ctx.rank)
    results = run_batch(cases, outputs, segmenter, options, on_case=on_case)
    counts = [sum(r.status in s for r in results) for s in (("failed", "refused"), ("rejected",), ("partial",))]
    counts = [len(results) - counts[0] - counts[1], *counts]
    if ctx.enabled:
        gathered = distributed.gather(ctx, tuple(counts))
        counts = [sum(c[k] for c in gathered) for k in range(4)]
        if ctx.is_main:
            parts, merged = outputs.ranks(ctx.world_size), outputs.merged
            merge_run_csvs([p.run_record for p in parts], merged.run_record)
            statistics.merge([p.statistics_csv for p in parts], merged.statistics_csv, merged.statistics_json)
        distributed.barrier(ctx)
        distributed.teardown(ctx)
    summary = CohortSummary(
        results, out_dir, single, *counts, rejections=[r.error for r in results if r.status == "rejected"]
    )
    if report and ctx.is_main and summary.done + summary.failed:
        from volseg.report.build import build_report

        summary.review_page = build_report(out_dir, labels=segmenter.info.labels, colors=segmenter.info.label_colors)
    return summary
