"""volseg's SEG and RTSTRUCT in OHIF, the viewer radiologists open in a browser: OHIF 3.13's prebuilt app (npm
``@ohif/app``, fetched by setup.sh) served by nginx with a real Orthanc's DICOMweb on the same origin
(``pipelines/ohif_orthanc.py``, the recipe docs/inference.md gives), opened in headless Chromium.

The study: the TCIA Philips planning CT (../shared) with its clinical lungs and stomach read by volseg's RTSTRUCT
reader and written back by volseg's SEG and RTSTRUCT writers (a clone without ../shared: a synthetic CT series
with two block labels). For each object the viewer opens the study, the object is double-clicked in the study
browser and confirmed, and the screenshot must show it: the viewport's coloured pixels (OHIF draws the CT in
grey) are counted before and after. ``VOLSEG_DOCS_SCREENSHOTS=1`` copies the Philips run's screenshots into
docs/.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from volseg.data.io import read_series
from volseg.dicom.archive import discover_series
from volseg.dicom.rtstruct_read import read_structures
from volseg.dicom.rtstruct_write import write_rtstruct
from volseg.dicom.seg import write_seg

from . import orthanc
from .bad_inputs import dicom_series
from .conftest import SHARED, missing_tool
from .helpers import REPO, free_port
from .test_report import CHROMIUM, launch_chromium

TCIA = SHARED / "data" / "tcia_pancreatic_ct_cbct_seg_cb001"
VIEWPORT = (slice(170, 800), slice(300, 1330))  # rows, columns of the 1400x900 page: the image, below any prompt
LUNGS = {1: "LUNG_L", 2: "LUNG_R", 3: "Stomach_duo_planCT"}
LUNG_CODES = {
    "LUNG_L": {"type": "SCT:39607008:Lung", "modifier": "SCT:7771000:Left"},
    "LUNG_R": {"type": "SCT:39607008:Lung", "modifier": "SCT:24028007:Right"},
    "Stomach_duo_planCT": {"type": "SCT:69695003:Stomach"},
}


def ohif_recipe():
    spec = importlib.util.spec_from_file_location("ohif_orthanc", REPO / "pipelines" / "ohif_orthanc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def coloured_pixels(path: Path) -> int:
    """Pixels of the viewport whose colour is not a grey (the CT is drawn in grey, overlays in colour)."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)[VIEWPORT]
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


def study_objects(folder: Path) -> tuple[list[Path], str]:
    """The CT's files plus volseg's SEG and RTSTRUCT of it, and which CT it is."""
    if (TCIA / "planning_ct").is_dir():
        (series,) = discover_series([TCIA / "planning_ct"])[0]
        names = {name: value for value, name in LUNGS.items()}
        labels = read_structures(TCIA / "rtstruct_planning_ct" / "1-1.dcm", [series], names, image=read_series(series))
        labels, label_names, codes, what = labels[0].numpy().astype(np.uint8), LUNGS, LUNG_CODES, "philips"
    else:
        ct = dicom_series(
            folder / "ct",
            series_uid="1.2.826.0.1.3680043.2.1125.9.2.1",
            slices=12,
            size=(64, 64),
            tags={"0020|000d": "1.2.826.0.1.3680043.2.1125.9.1.1"},
        )
        (series,) = discover_series([ct])[0]
        labels = np.zeros((64, 64, 12), np.uint8)
        labels[8:30, 10:40, :] = 1
        labels[36:56, 20:50, :] = 2
        label_names, codes, what = {1: "liver", 2: "spleen"}, None, "synthetic"
    write_seg(labels, series.files, label_names, "ohif-check", folder / "seg.dcm", codes)
    write_rtstruct(labels, series.files, label_names, "ohif-check", folder / "rtstruct.dcm")
    return [*series.files, folder / "seg.dcm", folder / "rtstruct.dcm"], what


@pytest.fixture
def ohif_site(empty_pacs, tmp_path):
    """OHIF + the test Orthanc on one origin (nginx on a free loopback port), the study uploaded."""
    recipe = ohif_recipe()
    if shutil.which("nginx") is None:
        missing_tool("nginx", "not installed (Debian package nginx-light; setup.sh installs it as root)")
    if recipe.dist_path() is None:
        missing_tool("OHIF", "not fetched (setup.sh runs `python pipelines/ohif_orthanc.py fetch`, which needs npm)")
    files, what = study_objects(tmp_path)
    empty_pacs.upload(files)
    port = free_port()
    conf = recipe.write_site(tmp_path / "site", port, empty_pacs.rest, (orthanc.USER, orthanc.PASSWORD))
    nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(conf.parent)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{url}/dicom-web/studies", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        (study,) = requests.get(f"{url}/dicom-web/studies", timeout=30).json()
        yield url, study["0020000D"]["Value"][0], what
    finally:
        nginx.terminate()
        nginx.wait(10)


def open_and_load(browser, url: str, study_uid: str, kind: str, shots: Path) -> tuple[int, int]:
    """Open the study, double-click the ``kind`` series and confirm; coloured pixels before and after. OHIF's
    warnings about the object (a notification such as "RecommendedDisplayCIELabValue not found") fail it."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"{url}/viewer?StudyInstanceUIDs={study_uid}")
        page.get_by_text(kind, exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(3000)  # the first image drawn
        for prompt in ("Skip all", "Confirm and hide"):  # OHIF's onboarding tour and its notice
            if page.get_by_text(prompt).count():
                page.get_by_text(prompt).first.click()
        page.wait_for_timeout(1000)
        page.screenshot(path=shots / f"{kind}_before.png")
        page.get_by_text(kind, exact=True).first.dblclick()
        page.get_by_role("button", name="Yes").click(timeout=60_000)  # "Do you want to open this Segmentation?"
        after = shots / f"{kind}.png"
        for _ in range(60):  # until the overlay is drawn and stays
            page.wait_for_timeout(1000)
            page.screenshot(path=after)
            if coloured_pixels(after) > 300:
                page.wait_for_timeout(2000)
                page.screenshot(path=after)
                break
        warned = page.get_by_text(f"DICOM {kind} import").count() or page.get_by_text("not found for").count()
        assert not warned, page.inner_text("body")[-500:]
        return coloured_pixels(shots / f"{kind}_before.png"), coloured_pixels(after)
    finally:
        page.close()


def test_ohif_shows_volsegs_seg_and_rtstruct_over_the_ct(ohif_site, tmp_path):
    from playwright.sync_api import sync_playwright

    if not CHROMIUM:
        missing_tool("Chromium", "not installed (Debian package chromium; setup.sh installs it as root)")
    url, study_uid, what = ohif_site
    counts = {}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for kind in ("SEG", "RTSTRUCT"):
                counts[kind] = open_and_load(browser, url, study_uid, kind, tmp_path)
        finally:
            browser.close()
    print(f"{what}: coloured viewport pixels before/after loading {counts}")
    for kind, (before, after) in counts.items():
        assert before < 50, (kind, before)  # the CT alone: grey
        assert after > max(300, 20 * before), (kind, after)  # the structures drawn over it
    if what == "philips" and os.environ.get("VOLSEG_DOCS_SCREENSHOTS"):
        for kind in counts:
            shutil.copy(tmp_path / f"{kind}.png", REPO / "docs" / f"ohif_{kind.lower()}.png")
