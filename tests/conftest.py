"""Shared test set-up: determinism, ../shared data, and the tools CI must have.

Tools the tests run for real (setup.sh installs them where it can): Orthanc (the PACS tests), Chromium and
playwright (the review page and OHIF in a browser), dciodvfy (every SEG validated), NiiVue and OHIF fetched
with npm (the page's viewer, the PACS viewer), nginx (serving OHIF beside Orthanc), OpenVINO and NNCF (the int8
backend). Outside CI a test that lacks one skips and says which
(pytest's ``-ra`` prints the reason). Under ``CI=true`` the same skip fails the test, naming the tool, so a
CI run whose apt step failed is red instead of green with the real parts silently skipped. This is done
once, here, for every skip whose reason names such a tool (``pytest.skip``, ``importorskip``, a skipping
fixture); :func:`missing_tool` is the explicit way to write one.
"""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VOLSEG_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
# names as they appear in the skip reasons, matched case-insensitively
CI_TOOLS = ("Orthanc", "Chromium", "playwright", "dciodvfy", "NiiVue", "npm", "OpenVINO", "nncf", "nginx", "OHIF")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when that folder is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available: real data outside the repository (README: Tests and test data)")
    return path


def missing_tool(tool: str, why: str):
    """Skip a test that needs ``tool`` (one of :data:`CI_TOOLS`), saying why; under CI=true, fail it."""
    message = f"{tool} missing: {why}"
    if IN_CI:
        pytest.fail(f"CI=true requires {tool}: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pacs(tmp_path_factory):
    """The test PACS: one real Orthanc for the whole session (tests/orthanc.py), on a free loopback port."""
    from . import orthanc

    if why := orthanc.missing():
        missing_tool("Orthanc", why)
    server = orthanc.start(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture
def empty_pacs(pacs, monkeypatch):
    """The test PACS emptied, with its credentials in the environment as `volseg pacs` reads them."""
    from . import orthanc

    pacs.clear()
    monkeypatch.setenv("VOLSEG_PACS_USER", orthanc.USER)
    monkeypatch.setenv("VOLSEG_PACS_PASSWORD", orthanc.PASSWORD)
    return pacs


def ci_tool_named(reason: str) -> str | None:
    """The CI tool a skip reason names, if any."""
    return next((tool for tool in CI_TOOLS if tool.lower() in reason.lower()), None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true, a skip (in setup or in the test) whose reason names a CI tool becomes a failure."""
    outcome = yield
    report = outcome.get_result()
    if not IN_CI or not report.skipped or hasattr(report, "wasxfail") or call.excinfo is None:
        return
    reason = str(call.excinfo.value)
    if tool := ci_tool_named(reason):
        report.outcome = "failed"
        report.longrepr = f"CI=true requires {tool}, and it is missing here: {reason}"
