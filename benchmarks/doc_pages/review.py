"""Renderers of docs/review.md: the review page's opening times and size."""

from __future__ import annotations

from doc_pages.sources import f2, result, source


def report_page() -> str:
    d = result("report_page")
    openings = d["openings"]
    viewer = [o["viewer_wall_s"] for o in openings]
    return (
        f"A {d['cases']}-case page (`benchmarks/results/report_page.md`): the table is"
        f" on screen {f2(d['table_s_median'])} s after navigation (median of {len(openings)} openings in headless"
        f" Chromium; {f2(openings[0]['table_painted_ms'] / 1000)} s on the first), the viewer shows the first case"
        f" after {min(viewer):.1f}-{max(viewer):.1f} s, and `index.html` weighs {f2(d['index_html_mb'])} MB"
        f" (goal: under 5 MB). Building it took {d['build_s']:.1f} s. " + source("report_page")
    )
