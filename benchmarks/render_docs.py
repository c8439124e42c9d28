"""Render the measured figures of the user pages from the committed results.

    python benchmarks/render_docs.py           # rewrite the pages in place
    python benchmarks/render_docs.py --check   # exit 1 and name every page that differs from its rendering

The pages (README.md, docs/*.md, volseg/pretrained/*/MODEL_CARD.md) hold marked blocks (indented alike
inside a list item, and then rendered with that indentation):

    <!-- rendered:NAME -->
    ... whatever the renderer NAME wrote last time ...
    <!-- /rendered -->

Each block's text is replaced by what ``RENDERERS[NAME]`` makes of the committed sources, and nothing else on
the page is touched. The renderers live in ``benchmarks/doc_pages/``, one module per page (``readme``,
``training``, ``benchmarks``, ``inference``, ``nnunet``, ...), on what ``doc_pages/sources.py`` reads and formats. The sources: ``benchmarks/results/*.json``, ``docs/comparison.csv`` (written by
``pipelines/compare_models.py``), and the built-in models in ``volseg/pretrained/``: their ``int8.json`` and
the training history every volseg checkpoint carries (read here without torch, as data only). A figure that
has no such source does not belong in a rendered block, nor anywhere else on a user page.

A results file may carry a ``provenance`` entry (machine, command, commit, date): where it does, the line
naming the machine and command is taken from it, else from the file's own ``machine``/``cpu``/``command``
fields, else the line says the file does not record them.

Fast and import-light on purpose (json, csv, zipfile, pickle only): ``tests/test_docs_rendered.py`` renders
every page into memory on each test run.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ holds doc_pages, however this file is loaded

from doc_pages.abdomen_ct import abdomen_ct_backends, abdomen_ct_ircadb
from doc_pages.benchmarks import (
    batch_scale,
    benchmarks_summary,
    case_stages,
    models_forward,
    whole_volume,
    whole_volume_ircadb,
    whole_volume_window1,
)
from doc_pages.distributed import ddp_throughput
from doc_pages.gpu import gpu_carry, gpu_check
from doc_pages.inference import (
    archive_discovery,
    inference_settings,
    int8_keep_fp32,
    int8_table,
    roi_cascade,
    rtstruct_bounds,
)
from doc_pages.model_cards import card_abdomen, card_hippocampus
from doc_pages.models import comparison_summary
from doc_pages.nnunet import nnunet_engines, nnunet_int8_variants, nnunet_parity, nnunet_speed, totalseg_parity
from doc_pages.readme import readme_demo, readme_results
from doc_pages.review import report_page
from doc_pages.slicer import serve_latency
from doc_pages.sources import BLOCK, REPO, pages
from doc_pages.training import nnunet_budget, train_budget, training_default_model

RENDERERS: dict[str, Callable[[], str]] = {
    "readme-demo": readme_demo,
    "readme-results": readme_results,
    "training-default-model": training_default_model,
    "nnunet-budget": nnunet_budget,
    "train-budget": train_budget,
    "comparison-summary": comparison_summary,
    "benchmarks-summary": benchmarks_summary,
    "whole-volume": whole_volume,
    "whole-volume-window1": whole_volume_window1,
    "whole-volume-ircadb": whole_volume_ircadb,
    "models-forward": models_forward,
    "batch-scale": batch_scale,
    "report-page": report_page,
    "ddp-throughput": ddp_throughput,
    "int8-table": int8_table,
    "int8-keep-fp32": int8_keep_fp32,
    "inference-settings": inference_settings,
    "roi-cascade": roi_cascade,
    "archive-discovery": archive_discovery,
    "abdomen-ct-ircadb": abdomen_ct_ircadb,
    "abdomen-ct-backends": abdomen_ct_backends,
    "nnunet-parity": nnunet_parity,
    "totalseg-parity": totalseg_parity,
    "nnunet-speed": nnunet_speed,
    "nnunet-engines": nnunet_engines,
    "nnunet-int8-variants": nnunet_int8_variants,
    "card-hippocampus-mri": card_hippocampus,
    "card-abdomen-ct": card_abdomen,
    "serve-latency": serve_latency,
    "rtstruct-bounds": rtstruct_bounds,
    "case-stages": case_stages,
    "gpu-check": gpu_check,
    "gpu-carry": gpu_carry,
}


def render_text(text: str, where: str = "page") -> str:
    """The page with every rendered block filled anew."""

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise KeyError(f"{where}: no renderer named {name!r} (known: {', '.join(sorted(RENDERERS))})")
        indent = match["indent"]
        body = "\n".join((indent + line).rstrip() for line in RENDERERS[name]().rstrip("\n").split("\n"))
        return f"{indent}<!-- rendered:{name} -->\n{body}\n{indent}<!-- /rendered -->"

    return BLOCK.sub(fill, text)


def render_all() -> dict[Path, tuple[str, str]]:
    """{page: (committed text, rendered text)} for every page holding a rendered block."""
    out = {}
    for path in pages():
        text = path.read_text(encoding="utf-8")
        if "<!-- rendered:" in text:
            out[path] = (text, render_text(text, str(path.relative_to(REPO))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 naming pages that differ")
    args = parser.parse_args(argv)
    differ = []
    for path, (old, new) in render_all().items():
        if old != new:
            differ.append(str(path.relative_to(REPO)))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check:
        if differ:
            print("pages that differ from their rendering (run python benchmarks/render_docs.py):")
            print("\n".join(f"  {p}" for p in differ))
            return 1
        print("every rendered page is up to date")
        return 0
    print("\n".join(f"rewrote {p}" for p in differ) or "nothing to rewrite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
