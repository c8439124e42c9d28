"""docs/python-api.md's example runs as written (its output folders moved into a temporary directory), and
volseg.segment refuses what volseg infer refuses, in the same one line."""

from __future__ import annotations

import re

import pytest

import volseg
from volseg.errors import VolsegError

from .helpers import REPO


def test_the_documented_example_runs(tmp_path, monkeypatch, capsys):
    page = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n(.*?)```", page, re.S)
    example = example.replace('"out"', repr(str(tmp_path / "out"))).replace('"runs/quick"', repr(str(tmp_path / "q")))
    monkeypatch.chdir(REPO)
    exec(compile(example, "docs/python-api.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"ok {tmp_path / 'out' / 'hippocampus_001_seg.nii.gz'}"
    assert printed[1].startswith("(") and printed[1].endswith("[0, 1, 2]")  # both hippocampus labels found
    assert printed[2].startswith("1 ")
    assert (tmp_path / "out" / "hippocampus_001_qc.png").is_file() and (tmp_path / "q" / "best.pt").is_file()


def test_segment_refuses_a_missing_scan_and_an_unknown_option(tmp_path):
    with pytest.raises(VolsegError, match=r"nope\.nii\.gz: no such file or folder"):
        volseg.segment(tmp_path / "nope.nii.gz")
    scan = REPO / "data" / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    with pytest.raises(VolsegError, match="unknown option"):
        volseg.segment(scan, tmp_path, quality_control=True)
