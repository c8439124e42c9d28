"""``volseg demo``: a built-in model on its bundled cases, scored against their labels, with a report.

Tasks: ``mri`` (the default hippocampus model on the 10 bundled MSD test cases) and ``ct`` (the
abdomen-ct model on the bundled TotalSegmentator CTs: its training CT, marked as such, and a contrast
DICOM slab it never saw).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from volseg.data.manifest import read_manifest
from volseg.errors import VolsegError
from volseg.evaluation.evaluate import Pair, evaluate, summarize, write_results
from volseg.files.atomic import write_text_atomic
from volseg.inference.batch import BatchOptions, run_batch
from volseg.inference.inputs import CaseInput
from volseg.inference.outputs import RunOutputs
from volseg.inference.zoo_segmenter import ZooSegmenter
from volseg.report.build import build_report

REPO = Path(__file__).resolve().parents[2]


def bundled_manifest() -> Path:
    """The embedded default manifest: ./data_manifest.csv, else the one beside the package (a clone)."""
    for candidate in (Path.cwd() / "data_manifest.csv", REPO / "data_manifest.csv"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("data_manifest.csv not found in the current folder or the volseg checkout")


@dataclass(frozen=True)
class DemoTask:
    model: str  # built-in model name
    data: str  # bundled manifest, relative to the checkout ("" = data_manifest.csv)
    splits: tuple[str, ...]  # the manifest splits to segment and score


TASKS = {
    "mri": DemoTask("hippocampus-mri", "", ("test",)),
    "ct": DemoTask("abdomen-ct", "data/abdomen_ct/manifest.csv", ("train", "test")),
}


def task_manifest(task: DemoTask) -> Path:
    if not task.data:
        return bundled_manifest()
    path = REPO / task.data
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the bundled data of this demo is missing (run it from a volseg checkout)")
    return path


@dataclass
class DemoResult:
    rows: list[dict]
    summary: dict
    report: Path
    failed: list[str]
    review_page: Path


def demo_cases(manifest: Path, splits: tuple[str, ...] = ("test",)) -> list:
    cases = [c for c in read_manifest(manifest) if c.split in splits and c.label is not None]
    if not cases:
        raise VolsegError(f"{manifest}: no labeled cases of split {'/'.join(splits)} to demonstrate on")
    return cases


def run_demo(
    segmenter: ZooSegmenter,
    out_dir: Path,
    manifest: Path | None = None,
    on_case=None,
    splits: tuple[str, ...] = ("test",),
) -> DemoResult:
    """Segment the manifest's labeled cases of ``splits`` with QC pictures, evaluate them, write ``report.md``
    and the review page (``report/index.html``, the references beside the predictions)."""
    manifest = manifest or bundled_manifest()
    cases = demo_cases(manifest, splits)
    split_of = {c.case_id: c.split for c in cases}
    results = run_batch(
        [CaseInput(c.case_id, c.images) for c in cases],
        RunOutputs(out_dir),
        segmenter,
        BatchOptions(overwrite=True, qc=True),
        on_case=on_case,
    )
    done = {r.case_id for r in results if r.status == "ok"}
    pairs = [Pair(c.case_id, RunOutputs(out_dir).label_map(c.case_id), c.label) for c in cases if c.case_id in done]
    rows, errors = evaluate(pairs, segmenter.info.labels)
    summary = summarize([r for r in rows if has_reference(r)])
    write_results(rows, summary, out_dir / "metrics.csv")
    for row in rows:
        row["split"] = split_of[row["case_id"]]
    failed = [f"{r.case_id}: {r.error}" for r in results if r.status == "failed"] + errors
    report = _write_report(out_dir, segmenter, rows, summary, failed)
    page = build_report(
        out_dir,
        segmenter.info.labels,
        segmenter.info.label_colors,
        reference=manifest,
        evaluation=out_dir / "metrics.csv",
    )  # scored above: not again
    return DemoResult(rows, summary, report, failed, page)


def has_reference(row: dict) -> bool:
    """A label the reference holds (a slab with no kidney scores no kidney Dice)."""
    return row["volume_ref_ml"] > 0


def case_table(rows: list[dict], labels: list[str]) -> list[tuple[str, str, list[str], str]]:
    """(case, split, Dice per label or '-' where the reference lacks it, mean over the scored labels)."""
    table = []
    for case in dict.fromkeys(r["case_id"] for r in rows):
        mine = {r["label"]: r for r in rows if r["case_id"] == case}
        scored = [mine[label]["dice"] for label in labels if label in mine and has_reference(mine[label])]
        cells = [
            f"{mine[label]['dice']:.4f}" if label in mine and has_reference(mine[label]) else "-" for label in labels
        ]
        split = next(iter(mine.values()))["split"]
        table.append((case, split, cells, f"{sum(scored) / len(scored):.4f}" if scored else "-"))
    return table


def _write_report(out_dir: Path, segmenter: ZooSegmenter, rows: list[dict], summary: dict, failed: list[str]) -> Path:
    labels = list(dict.fromkeys(r["label"] for r in rows))
    cases = list(dict.fromkeys(r["case_id"] for r in rows))
    lines = [
        "# volseg demo",
        "",
        f"Model: `{segmenter.info.source}` ({segmenter.info.summary}), backend {segmenter.backend} {segmenter.precision}, "
        f"device {segmenter.device}. Labels: {', '.join(labels)}.",
        "",
        "Split `train` marks a case the model was trained on: its Dice shows the fit, not generalisation. "
        "`-`: the reference holds no such label.",
        "",
        "| case | split | " + " | ".join(f"Dice {label}" for label in labels) + " | mean |",
        "|---|---|" + "---|" * (len(labels) + 1),
    ]
    for case, split, cells, mean in case_table(rows, labels):
        lines.append(f"| {case} | {split} | " + " | ".join(cells) + f" | {mean} |")
    if failed:
        lines += ["## Failed", "", *[f"- {f}" for f in failed], ""]
    lines += ["## Quality control", ""]
    lines += [f"### {case}\n\n![{case}]({case}_qc.png)\n" for case in cases]
    path = out_dir / "report.md"
    return write_text_atomic(path, "\n".join(lines))


def split_means(rows: list[dict], labels: list[str], splits) -> list[tuple[str, int, float, dict[str, float]]]:
    """Per split: (split, cases, mean Dice over labels, mean Dice per label), scoring a label only where the
    reference has it."""
    out = []
    for split in splits:
        scored = [r for r in rows if r["split"] == split and r["volume_ref_ml"] > 0]
        per_label = {label: [r["dice"] for r in scored if r["label"] == label] for label in labels}
        means = {label: sum(v) / len(v) for label, v in per_label.items() if v}
        if means:
            out.append((split, len({r["case_id"] for r in scored}), sum(means.values()) / len(means), means))
    return out
