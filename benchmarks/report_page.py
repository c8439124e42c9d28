"""The review page at batch scale: build time, page size and time to the table in headless Chromium.

Writes a synthetic batch (default 200 cases: 64x64x40 MR-like volumes with two labelled blobs of random
size, a few planted outliers and failures) and its run record with volseg's own writer, builds
``report/index.html`` with :func:`volseg.report.build_report`, then opens it from file:// in Debian's
chromium (Playwright, SwiftShader WebGL) ``--repeats`` times and reports, per opening, the time from
navigation to the rendered table (the page's own ``performance.now()`` when the table is in the DOM)
the first frame after it (what the reader sees; NiiVue is compiled only after that frame), and to the
viewer showing the first case.

    python benchmarks/report_page.py [--cases 200] [--repeats 3] [--out benchmarks/results]

Goals (issue 17): table shown in under 2 s; index.html under 5 MB without the per-case files.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402

TABLE_GOAL_S = 2.0
PAGE_GOAL_MB = 5.0


def write_batch(out: Path, cases: int, seed: int = 0) -> None:
    """``cases`` segmented scans (every 50th failed, every 40th with a 5x label) and their run record."""
    from volseg.inference.batch import CaseResult
    from volseg.inference.run_record import RUN_CSV, RunRecord

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    record = RunRecord(out / RUN_CSV, keep=False)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in (64, 64, 40)), indexing="ij"), axis=-1)
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    for i in range(cases):
        case_id = f"case_{i:04d}"
        image_path, label_path = out / "inputs" / f"{case_id}.nii.gz", out / f"{case_id}.nii.gz"
        if i % 50 == 49:
            record.add(CaseResult(case_id, str(image_path), "", "failed", 0.1, f"{image_path}: file is empty"))
            continue
        image = rng.normal(100, 20, (64, 64, 40)).astype(np.float32)
        labels = np.zeros((64, 64, 40), np.uint8)
        for value, centre in ((1, (24, 32, 20)), (2, (42, 32, 20))):
            radius = rng.uniform(5, 7) * (1.7 if value == 1 and i % 40 == 39 else 1.0)
            inside = np.linalg.norm((grid - np.array(centre)) * [1, 1, 1.5], axis=-1) < radius
            labels[inside], image[inside] = value, image[inside] + 80 * value
        image_path.parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(image, affine), image_path)
        nib.save(nib.Nifti1Image(labels, affine), label_path)
        record.add(CaseResult(case_id, str(image_path), str(label_path), "ok", float(rng.uniform(0.5, 2))))


def open_page(index: Path, repeats: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is needed (setup.sh installs it as root with apt)")
    openings = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            started = time.perf_counter()
            page.goto(index.as_uri(), wait_until="commit")
            page.wait_for_function("document.body && document.body.dataset.table === 'ready'")
            table_wall = time.perf_counter() - started
            page.wait_for_function("window.volsegTablePaintedMs !== undefined")
            painted_ms = page.evaluate("window.volsegTablePaintedMs")
            page.wait_for_function(
                "['ready', 'unavailable', 'error'].includes(document.body.dataset.viewer)", timeout=120_000
            )
            viewer_wall = time.perf_counter() - started
            openings.append(
                {
                    "table_ms_in_page": round(page.evaluate("window.volsegTableMs"), 1),
                    "table_painted_ms": round(painted_ms, 1),
                    "table_wall_s": round(table_wall, 3),
                    "viewer_wall_s": round(viewer_wall, 3),
                    "viewer": page.get_attribute("body", "data-viewer"),
                    "rows": page.locator("#cases tbody tr").count(),
                }
            )
            page.close()
        browser.close()
    return openings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    from volseg.report.build import build_report
    from volseg.report.viewer import viewer_path

    made = provenance(__file__)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "batch"
        write_batch(run, args.cases)
        started = time.perf_counter()
        index = build_report(run)
        build_s = time.perf_counter() - started
        case_bytes = sum(p.stat().st_size for p in (index.parent / "cases").glob("*.js"))
        thumb_bytes = sum(p.stat().st_size for p in (index.parent / "thumbs").glob("*.png"))
        openings = open_page(index, args.repeats)
        page_mb = index.stat().st_size / 1e6
    table_s = statistics.median(o["table_painted_ms"] for o in openings) / 1000
    result = {
        "cases": args.cases,
        "build_s": round(build_s, 2),
        "index_html_mb": round(page_mb, 3),
        "case_files_mb": round(case_bytes / 1e6, 2),
        "thumbnails_mb": round(thumb_bytes / 1e6, 2),
        "viewer_inlined": viewer_path() is not None,
        "openings": openings,
        "table_s_median": round(table_s, 3),
        "goals": {"table under 2 s": table_s < TABLE_GOAL_S, "index.html under 5 MB": page_mb < PAGE_GOAL_MB},
    }
    lines = [
        "# Review page at batch scale",
        "",
        f"`{made['command']}`: {args.cases} synthetic cases (64x64x40, two labels), opened "
        f"{args.repeats} times from file:// in headless Debian chromium (SwiftShader WebGL).",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| table shown (first frame after it, page's performance.now(), median) | {table_s:.3f} s | < {TABLE_GOAL_S} s |",
        f"| index.html | {page_mb:.2f} MB (viewer inlined: {result['viewer_inlined']}) | < {PAGE_GOAL_MB} MB |",
        f"| per-case viewer files | {result['case_files_mb']} MB | |",
        f"| thumbnails | {result['thumbnails_mb']} MB | |",
        f"| build (volseg report) | {build_s:.1f} s | |",
        "",
        "| opening | table in DOM ms | table shown ms | table (wall) s | viewer ready (wall) s | rows |",
        "|---|---|---|---|---|---|",
        *[
            f"| {i + 1} | {o['table_ms_in_page']} | {o['table_painted_ms']} | {o['table_wall_s']} | {o['viewer_wall_s']} "
            f"({o['viewer']}) | {o['rows']} |"
            for i, o in enumerate(openings)
        ],
    ]
    print(write(args.out, "report_page", result, lines, made))


if __name__ == "__main__":
    main()
