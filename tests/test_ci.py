"""CI cannot skip the real parts: under CI=true a test that needs Orthanc, Chromium, dciodvfy, npm/NiiVue or
OpenVINO fails naming the tool (tests/conftest.py); elsewhere it skips with the reason shown. And .ci/run runs
the README's own commands, printing the slowest tests."""

import os
import subprocess
import sys

import pytest

from .conftest import REPO, ci_tool_named

# a test that needs each tool, found missing through a PATH that holds nothing: by missing_tool() (Orthanc)
# and by the hook on a plain pytest.skip (Chromium)
NEEDS = {
    "Orthanc": "tests/test_pacs.py::test_wrong_credentials_are_refused_without_echoing_them",
    "Chromium": "tests/test_report.py::test_without_webgl2_the_page_falls_back_to_pictures",
}


@pytest.mark.parametrize(
    "reason, tool",
    [
        ("Orthanc missing: Orthanc not installed (Debian package orthanc; ...)", "Orthanc"),
        ("Orthanc's DICOMweb plugin not installed (/usr/share/orthanc/plugins/libOrthancDicomWeb.so)", "Orthanc"),
        ("Debian's chromium is not installed (setup.sh installs it as root with apt)", "Chromium"),
        ("NiiVue is not installed (setup.sh runs `python -m volseg.report.viewer`, which needs npm)", "NiiVue"),
        ("dciodvfy missing: not installed (Debian package dicom3tools)", "dciodvfy"),
        ("could not import 'openvino': No module named 'openvino'", "OpenVINO"),
        ("could not import 'nncf': No module named 'nncf'", "nncf"),
        ("could not import 'onnxruntime': No module named 'onnxruntime'", None),  # optional: it may skip
        ("/work/shared/data/ircadb_3d not available", None),  # data a user's clone lacks: it may skip
    ],
)
def test_skip_reasons_that_name_a_ci_tool(reason, tool):
    assert ci_tool_named(reason) == tool


def _pytest_without_tools(tmp_path, test: str, ci: str) -> subprocess.CompletedProcess:
    bare = tmp_path / "bin"  # a PATH without Orthanc, Chromium, dciodvfy (nor anything else)
    bare.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": str(bare), "CI": ci}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=REPO,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=300,
    )


@pytest.mark.parametrize(
    "tool, reason", [("Orthanc", "Orthanc not installed"), ("Chromium", "Debian's chromium is not installed")]
)
def test_a_missing_tool_fails_under_ci_and_skips_with_its_reason_elsewhere(tmp_path, tool, reason):
    ci = _pytest_without_tools(tmp_path, NEEDS[tool], "true")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert f"CI=true requires {tool}" in ci.stdout and reason in ci.stdout
    local = _pytest_without_tools(tmp_path, NEEDS[tool], "")
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 skipped" in local.stdout and "SKIPPED [1] " in local.stdout and reason in local.stdout


def test_ci_runs_the_readme_commands_and_prints_the_slowest_tests():
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    setup_and_test = readme[4].split("#")[0].strip()
    run = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert run[-1] == setup_and_test == "./setup.sh && .venv/bin/python -m pytest -q --durations=15"
