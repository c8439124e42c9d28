"""The review page (`volseg report`): built from a real batch of the bundled hippocampus test cases with their
references, one failed case and two planted outliers; checked in Python, then opened in a real headless
Chromium (Debian's, driven by Playwright) from file://."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from volseg.cli import app
from volseg.report import viewer

from .helpers import REPO

runner = CliRunner()
EMPTY, HUGE = "hippocampus_125", "hippocampus_097"  # planted: an empty prediction, a 5x anterior volume
COLOURS = {1: (255, 127, 14), 2: (44, 160, 44)}  # anterior, posterior: the QC pictures' tab10


def page_data(index: Path) -> dict:
    """The report data the page renders its table from (inlined as `window.REPORT = {...};`)."""
    text = index.read_text(encoding="utf-8")
    return json.loads(re.search(r"window\.REPORT = (\{.*?\});</script>", text, re.S).group(1).replace("<\\/", "</"))


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """volseg infer on the 10 bundled test cases plus a corrupt file, then two predictions replaced."""
    root = tmp_path_factory.mktemp("report")
    broken = root / "inputs" / "broken_case.nii.gz"
    broken.parent.mkdir()
    broken.write_bytes(b"\x1f\x8b not really gzip")
    out = root / "out"
    result = runner.invoke(
        app,
        [
            "infer",
            str(REPO / "data_manifest.csv"),
            str(broken.parent),  # a folder: its bad scan fails alone (a bad scan named itself is a usage error)
            "--split",
            "test",
            "--backend",
            "torch",
            "-o",
            str(out),
            "--qc",
        ],
    )
    assert result.exit_code == 1, result.output  # the corrupt case fails, the batch goes on
    empty = nib.load(out / f"{EMPTY}_seg.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(empty.shape, np.uint8), empty.affine, empty.header), out / f"{EMPTY}_seg.nii.gz")
    huge = nib.load(out / f"{HUGE}_seg.nii.gz")
    labels = np.asarray(huge.dataobj).astype(np.uint8)
    anterior = labels == 1
    grown = anterior
    while grown.sum() < 5 * anterior.sum():
        grown = ndimage.binary_dilation(grown) & ((labels == 0) | grown)
    labels[grown] = 1
    nib.save(nib.Nifti1Image(labels, huge.affine, huge.header), out / f"{HUGE}_seg.nii.gz")
    return out


@pytest.fixture(scope="module")
def report(batch) -> Path:
    result = runner.invoke(app, ["report", str(batch), "--reference", str(REPO / "data_manifest.csv")])
    assert result.exit_code == 0, result.output
    return batch / "report" / "index.html"


def test_every_case_has_a_row_and_the_planted_outliers_are_flagged(batch, report):
    data = page_data(report)
    cases = {c["id"]: c for c in data["cases"]}
    with (batch / "volseg_run.csv").open(encoding="utf-8") as f:
        assert set(cases) == {r["case_id"] for r in csv.DictReader(f)}  # 10 segmented + the failed one
    assert len(cases) == 11
    assert [n["name"] for n in data["labels"]] == ["anterior", "posterior"]

    failed = cases["broken_case"]
    assert failed["status"] == "failed" and [f["kind"] for f in failed["flags"]] == ["failed"]
    assert "<input>" in failed["error"] and str(batch.parent) not in report.read_text(encoding="utf-8")
    assert {f["kind"] for f in cases[EMPTY]["flags"]} == {"empty"} and len(cases[EMPTY]["flags"]) == 2
    huge_flags = [f for f in cases[HUGE]["flags"] if f["kind"] == "volume"]
    assert [f["label"] for f in huge_flags] == [1], cases[HUGE]["flags"]
    low, high = data["ranges"]["1"]
    assert cases[HUGE]["volumes"]["1"] > high
    others = [c for c in cases.values() if c["id"] not in (EMPTY, HUGE, "broken_case")]
    assert all(f["kind"] not in ("volume", "empty", "failed") for c in others for f in c["flags"])


def test_volumes_and_metrics_agree_with_the_label_maps_and_volseg_evaluate(batch, report, tmp_path):
    data = page_data(report)
    cases = {c["id"]: c for c in data["cases"]}
    image = nib.load(batch / f"{HUGE}_seg.nii.gz")
    voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000
    assert cases[HUGE]["volumes"]["1"] == pytest.approx((np.asarray(image.dataobj) == 1).sum() * voxel_ml, abs=1e-3)
    metrics = tmp_path / "metrics.csv"
    result = runner.invoke(
        app, ["evaluate", "--pred", str(batch), "--manifest", str(REPO / "data_manifest.csv"), "-o", str(metrics)]
    )
    assert result.exit_code == 0, result.output
    with metrics.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert all(float(row["volume_ref_ml"]) > 0 for row in rows)  # every case's reference holds both labels
    for row in rows:
        assert cases[row["case_id"]]["dice"][row["value"]] == pytest.approx(float(row["dice"]), abs=1e-4)
    assert cases[EMPTY]["dice"] == {"1": 0.0, "2": 0.0}
    assert data["evaluation"]["anterior"]["dice"]["n"] == 10
    assert len(list((report.parent / "cases").glob("*.js"))) == 10  # one viewer file per segmented case
    assert (report.parent / "thumbs" / f"{HUGE}.png").is_file()


def test_the_page_holds_no_address_and_stays_small(report):
    files = [report, *report.parent.rglob("*.js")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, path
    assert report.stat().st_size < 5e6


def test_a_report_without_the_viewer_file_says_so(batch, monkeypatch, tmp_path):
    from volseg.report.build import build_report

    copy = tmp_path / "out"
    shutil.copytree(batch, copy, ignore=shutil.ignore_patterns("report"))
    monkeypatch.setattr(viewer, "cache_dir", lambda: tmp_path / "nowhere")
    index = build_report(copy)
    data = page_data(index)
    assert data["viewer"] is False and index.stat().st_size < 200_000  # the 2.3 MB viewer is not inlined
    assert data["evaluation"] is None  # no reference given and no metrics.csv beside the run


def test_missing_run_record_is_one_clear_error(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'volseg_run.csv'}: no run record")


# -------------------------------------------------------------------------------------- a real browser


def launch_chromium(playwright, *extra: str):
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            *extra,
        ],
    )


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or ""


@pytest.fixture(scope="module")
def playwright():
    if not CHROMIUM:
        pytest.skip(
            "Debian's chromium is not installed (setup.sh installs it as root with apt; "
            "elsewhere: apt-get install chromium)"
        )
    if viewer.viewer_path() is None:
        pytest.skip("NiiVue is not installed (setup.sh runs `python -m volseg.report.viewer`, which needs npm)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright missing: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright):
    browser = launch_chromium(playwright)
    yield browser
    browser.close()


def open_page(browser, index: Path):
    context = browser.new_context(viewport={"width": 1500, "height": 900}, accept_downloads=True)
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(index.as_uri())
    page.wait_for_function("document.body.dataset.table === 'ready'")
    return context, page, requests


def test_chromium_renders_the_viewer_with_the_label_colours(browser, report):
    context, page, requests = open_page(browser, report)
    page.wait_for_function("['ready', 'unavailable', 'error'].includes(document.body.dataset.viewer)", timeout=60_000)
    assert page.get_attribute("body", "data-viewer") == "ready", page.inner_text("#viewer-status")
    assert page.locator("#cases tbody tr").count() == 11
    assert page.locator("#evaluation").is_visible()  # the evaluation summary: worst cases first
    assert page.locator("#worst tbody tr").first.get_attribute("data-id") == EMPTY
    assert page.locator("#distributions svg").count() == 2  # one Dice distribution per label
    page.fill("#opacity", "1")
    page.dispatch_event("#opacity", "input")
    page.wait_for_timeout(300)
    shot = report.parent.parent / "review_page.png"
    page.screenshot(path=str(shot))
    from PIL import Image

    box = page.locator("#viewer-box").bounding_box()
    pixels = np.asarray(Image.open(shot).convert("RGB"))[
        int(box["y"]) : int(box["y"] + box["height"]), int(box["x"]) : int(box["x"] + box["width"])
    ].astype(int)
    assert pixels.std() > 20, "the viewer canvas is blank"
    for value, colour in COLOURS.items():
        near = (np.abs(pixels - np.array(colour)).max(axis=2) <= 12).sum()
        assert near > 50, f"label {value}'s colour {colour} is not on the canvas ({near} pixels)"
    assert all(url.startswith("file://") for url in requests), [u for u in requests if not u.startswith("file://")]
    context.close()


def test_keyboard_review_persists_and_exports(browser, report):
    context, page, _ = open_page(browser, report)
    first = page.locator("#cases tbody tr").nth(0).get_attribute("data-id")
    page.keyboard.press("a")  # ok, then on to the next case
    second = page.locator("#cases tbody tr.current").get_attribute("data-id")
    assert second != first
    page.keyboard.press("f")
    page.keyboard.type("boundary leaks")
    page.keyboard.press("Enter")  # flag with the note, then on
    page.reload()
    page.wait_for_function("document.body.dataset.table === 'ready'")
    page.keyboard.press("u")  # the first unreviewed case: neither of the two reviewed ones
    assert page.locator("#cases tbody tr.current").get_attribute("data-id") not in (first, second)
    with page.expect_download() as download:
        page.keyboard.press("e")
    rows = {
        r["case_id"]: r for r in csv.DictReader(Path(download.value.path()).read_text(encoding="utf-8").splitlines())
    }
    assert len(rows) == 11
    assert rows[first]["verdict"] == "ok" and rows[second]["verdict"] == "flag"
    assert rows[second]["note"] == "boundary leaks"
    assert rows["broken_case"]["status"] == "failed"
    context.close()


def test_without_webgl2_the_page_falls_back_to_pictures(playwright, report):
    """Recent Chromium on Linux no longer falls back to software WebGL by itself (niivue #1379)."""
    browser = launch_chromium(playwright, "--disable-webgl", "--disable-3d-apis")
    page = browser.new_page()
    page.goto(report.as_uri())
    page.wait_for_function("document.body.dataset.viewer === 'unavailable'", timeout=30_000)
    assert "WebGL2 is not available" in page.inner_text("#viewer-status")
    assert page.locator("#pictures img").count() >= 1
    browser.close()
