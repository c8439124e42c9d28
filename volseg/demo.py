"""``volseg demo``: the default model on the bundled test cases, scored against their labels, with a report."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from volseg.data.manifest import read_manifest
from volseg.evaluate import Pair, evaluate, summarize, write_results
from volseg.infer import RUN_CSV, BatchOptions, CaseInput, Segmenter, run_batch

REPO = Path(__file__).resolve().parents[1]


def bundled_manifest() -> Path:
    """The embedded default manifest: ./data_manifest.csv, else the one beside the package (a clone)."""
    for candidate in (Path.cwd() / "data_manifest.csv", REPO / "data_manifest.csv"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("data_manifest.csv not found in the current folder or the volseg checkout")


@dataclass
class DemoResult:
    rows: list[dict]
    summary: dict
    report: Path
    failed: list[str]


def run_demo(segmenter: Segmenter, out_dir: Path, manifest: Path | None = None, on_case=None) -> DemoResult:
    """Segment the manifest's test cases with QC pictures, evaluate them and write ``report.md``."""
    manifest = manifest or bundled_manifest()
    cases = [c for c in read_manifest(manifest) if c.split == "test" and c.label is not None]
    if not cases:
        raise ValueError(f"{manifest}: no labeled test cases to demonstrate on")
    results = run_batch([CaseInput(c.case_id, c.images) for c in cases], out_dir, segmenter,
                        BatchOptions(overwrite=True, qc=True), on_case=on_case, run_csv=out_dir / RUN_CSV)
    done = {r.case_id for r in results if r.status == "ok"}
    pairs = [Pair(c.case_id, out_dir / f"{c.case_id}.nii.gz", c.label) for c in cases if c.case_id in done]
    rows, errors = evaluate(pairs, segmenter.cfg.data.labels)
    summary = summarize(rows)
    write_results(rows, summary, out_dir / "metrics.csv")
    failed = [f"{r.case_id}: {r.error}" for r in results if r.status == "failed"] + errors
    report = _write_report(out_dir, segmenter, rows, summary, failed)
    return DemoResult(rows, summary, report, failed)


def _write_report(out_dir: Path, segmenter: Segmenter, rows: list[dict], summary: dict, failed: list[str]) -> Path:
    labels = list(summary)
    cases = list(dict.fromkeys(r["case_id"] for r in rows))
    dice = {(r["case_id"], r["label"]): r["dice"] for r in rows}
    lines = [
        "# volseg demo",
        "",
        f"Model: `{segmenter.checkpoint}` ({segmenter.cfg.model.name}, {segmenter.cfg.model.dims}D), "
        f"device {segmenter.device}. Labels: {', '.join(labels)}.",
        "",
        "| case | " + " | ".join(f"Dice {l}" for l in labels) + " | mean |",
        "|---|" + "---|" * (len(labels) + 1),
    ]
    for case in cases:
        values = [dice[(case, l)] for l in labels]
        lines.append(f"| {case} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {sum(values) / len(values):.4f} |")
    means = [summary[l]["dice"]["mean"] for l in labels]
    lines += [f"| **mean** | " + " | ".join(f"**{m:.4f}**" for m in means) + f" | **{sum(means) / len(means):.4f}** |", ""]
    if failed:
        lines += ["## Failed", "", *[f"- {f}" for f in failed], ""]
    lines += ["## Quality control", ""]
    lines += [f"### {case}\n\n![{case}]({case}_qc.png)\n" for case in cases]
    path = out_dir / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path
