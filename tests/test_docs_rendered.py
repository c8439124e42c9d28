"""The manual is written from its results: every measured figure on the user pages (README.md, docs/*.md, the
model cards) sits in a `<!-- rendered:NAME -->` block that `benchmarks/render_docs.py` fills from the committed
results (benchmarks/results/*.json, docs/comparison.csv, volseg/pretrained/*). A page that differs from what the
script renders fails here, named, with the first line that differs.

Fast (json, csv and a torch-free read of the checkpoints' history; no model, no torch) and independent of
../shared.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import re

import pytest

from .helpers import REPO

_spec = importlib.util.spec_from_file_location("render_docs", REPO / "benchmarks" / "render_docs.py")
render_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_docs)  # puts benchmarks/ on sys.path, where its page renderers live
sources = importlib.import_module("doc_pages.sources")


def _first_difference(old: str, new: str) -> str:
    for number, (a, b) in enumerate(zip(old.splitlines(), new.splitlines(), strict=False), 1):
        if a != b:
            return f"line {number}:\n    committed: {a[:300]}\n    rendered:  {b[:300]}"
    return f"lengths differ ({len(old.splitlines())} vs {len(new.splitlines())} lines)"


def test_every_page_is_what_the_results_render():
    stale = [
        f"{path.relative_to(REPO)}: {_first_difference(old, new)}"
        for path, (old, new) in render_docs.render_all().items()
        if old != new
    ]
    assert not stale, (
        "pages differ from what benchmarks/render_docs.py renders from the committed results "
        "(run: python benchmarks/render_docs.py):\n" + "\n".join(stale)
    )


def test_the_pages_quoting_figures_are_rendered():
    """Each page that quotes measured figures holds its blocks, and every renderer is used somewhere."""
    rendered = render_docs.render_all()
    used = {match["name"] for old, _ in rendered.values() for match in render_docs.BLOCK.finditer(old)}
    assert set(render_docs.RENDERERS) == used, f"renderers without a block: {set(render_docs.RENDERERS) - used}"
    must = [
        "README.md",
        "docs/training.md",
        "docs/benchmarks.md",
        "docs/inference.md",
        "docs/abdomen-ct.md",
        "docs/nnunet.md",
        "docs/models.md",
        "volseg/pretrained/hippocampus-mri/MODEL_CARD.md",
        "volseg/pretrained/abdomen-ct/MODEL_CARD.md",
    ]
    have = {str(p.relative_to(REPO)) for p in rendered}
    assert not set(must) - have, f"pages without a rendered block: {sorted(set(must) - have)}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    assert "<!-- rendered:readme-results -->" in section, "the README's results table is rendered"


def test_markers_balance_and_names_are_known():
    for path in render_docs.pages():
        text = path.read_text(encoding="utf-8")
        opened = re.findall(r"<!-- rendered:([\w-]+) -->", text)
        closed = text.count("<!-- /rendered -->")
        blocks = [m["name"] for m in render_docs.BLOCK.finditer(text)]
        assert len(opened) == closed == len(blocks), f"{path.relative_to(REPO)}: unbalanced rendered markers"
        unknown = set(blocks) - set(render_docs.RENDERERS)
        assert not unknown, f"{path.relative_to(REPO)}: no renderer for {sorted(unknown)}"


def test_check_names_a_stale_page(tmp_path, monkeypatch, capsys):
    page = tmp_path / "page.md"
    page.write_text("Intro.\n\n<!-- rendered:ddp-throughput -->\nhand-typed 9.99 samples/s\n<!-- /rendered -->\n")
    monkeypatch.setattr(render_docs, "REPO", tmp_path)
    monkeypatch.setattr(render_docs, "pages", lambda: [page])
    assert render_docs.main(["--check"]) == 1
    assert "page.md" in capsys.readouterr().out
    assert "9.99" in page.read_text(), "--check changes nothing"
    assert render_docs.main([]) == 0
    assert "9.99" not in page.read_text() and render_docs.main(["--check"]) == 0


def test_machine_comes_from_provenance_when_a_result_has_it():
    old = {"machine": "x86_64, 3.11.7", "rows": []}
    new = {
        "rows": [],
        "provenance": {
            "command": "python benchmarks/x.py",
            "commit": "abc",
            "date": "2026-12-06T10:00:00Z",
            "machine": {"cpu": "AMD EPYC", "cores": 2, "python": "3.11.7"},
        },
    }
    assert sources.machine(old) == "x86_64, 3.11.7"
    assert sources.machine(new) == "AMD EPYC, 2 cores, Python 3.11.7"
    assert sources.date(new) == "2026-12-06" and sources.command(new) == "python benchmarks/x.py"
    assert sources.machine({"rows": []}) == ""


def test_checkpoints_are_read_as_data_only():
    """The history reader refuses any class beyond tensors and plain containers."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    with pytest.raises(pickle.UnpicklingError):
        sources._CheckpointUnpickler(io.BytesIO(pickle.dumps({"x": Evil()}))).load()
    record = sources.training_record(REPO / "volseg" / "pretrained" / "hippocampus-mri" / "model.pt")
    assert record["parameters"] > 0 and 0 < record["best_dice"] < 1
