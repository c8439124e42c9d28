"""The bad-input corpus (tests/bad_inputs.py) through `volseg check`, `volseg infer` and `volseg train`.

What each command must do with each item:

- Every unreadable or unusable scan (truncated, not an image, empty, 4D, 2D, NaN/Inf voxels, sheared axes,
  10 m or zero spacing, a 4096^3 header, a DICOM folder with two series or a missing slice) gets ONE line,
  ``"<path>: <problem>"``. `check` prints it and exits 1; `infer` marks that case failed with that line,
  writes no file for it, finishes every good case and exits 1. (`infer` reads a DICOM folder as an archive
  of series, so its DICOM faults are tested in tests/test_archive.py.)
- NaN/Inf voxels: `check` reports them; `infer` (and `train`, `plan`) refuse the scan, since no label map
  computed from them can be trusted (volseg.data.io.read_channels refuses them).
- The all-zero scan is legal: `check` accepts it silently and `infer` segments it (a blank scan is not an
  error; whatever it predicts lies on the scan's grid).
- Image/label mismatch and missing files: `check` names the file; `infer` ignores labels and fails only the
  case whose image is missing; `train` must refuse before training, naming the file, and leave no checkpoint.
- A manifest with a duplicate or unsafe case id (``../../x``) is not what its author meant: every command
  refuses the whole manifest with one line per bad row (exit 2 for infer/train), writing nothing. Case ids
  that reach the batch runner some other way still never write outside the output folder.
"""

import csv
import tracemalloc
from pathlib import Path

import nibabel as nib
import pytest
from typer.testing import CliRunner

from volseg.cli import app
from volseg.data.io import ImageReadError, read_channels, read_image
from volseg.inference.batch import BatchOptions, run_batch
from volseg.inference.inputs import CaseInput
from volseg.inference.outputs import RunOutputs
from volseg.inference.run_record import RUN_CSV
from volseg.inference.zoo_segmenter import ZooSegmenter

from .bad_inputs import HUGE_SHAPE, IMAGE_WRITERS, SHAPE, write_corpus
from .helpers import tiny_run

runner = CliRunner()

# Case id -> what its one-line error must say. Every corpus item that is not a legal scan is listed here.
EXPECTED = {
    "truncated": "truncated or corrupt gzip archive",
    "not_an_image": "not a NIfTI/NRRD/MHA image or DICOM series",
    "empty": "file is empty",
    "four_d": "4D image (shape (20, 24, 16, 2)), expected 3D",
    "two_d": "2D image (shape (20, 24)), expected 3D",
    "nan_inf": "3 NaN and 2 Inf voxel(s)",
    "sheared": "non-orthonormal direction: voxel axes 0 and 1 are 60.02 degrees apart",
    "extreme_spacing": "voxel spacing (1e+04, 1e+04, 1e+04) mm is outside the plausible range",
    "zero_spacing": "zero voxel spacing (1, 0, 1) mm (singular affine)",
    "huge_header": "header claims shape (4096, 4096, 4096) (256.0 GiB as float32), larger than the limit",
    "dicom_two_series": "folder holds 2 DICOM series",
    "dicom_missing_slice": "missing slice(s) or uneven slice spacing: median step 2 mm, but 4 mm",
}
LEGAL = ("good_a", "good_b", "good_c", "all_zero")
# DICOM folders are manifest rows for `check`; `infer` treats a folder as an archive (tests/test_archive.py)
FILES = sorted(k for k in EXPECTED if not k.startswith("dicom_"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("run"))


def _rows(path: Path) -> dict[str, dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return {row["case_id"]: row for row in csv.DictReader(f)}


def _lines_about(text: str, path: Path) -> list[str]:
    return [line for line in text.splitlines() if str(path) in line]


def test_every_corpus_item_has_an_expected_error(corpus):
    assert set(EXPECTED) == set(corpus.bad) == {*IMAGE_WRITERS, "dicom_two_series", "dicom_missing_slice"}


@pytest.mark.parametrize("case_id", sorted(EXPECTED))
def test_model_input_reader_error_is_one_line_naming_file_and_problem(corpus, case_id):
    """read_channels (what train, plan and infer read through) refuses every bad item."""
    with pytest.raises(ImageReadError) as caught:
        read_channels([corpus.bad[case_id]])
    assert str(caught.value) == f"{corpus.bad[case_id]}: {caught.value.problem}"
    assert "\n" not in str(caught.value) and EXPECTED[case_id] in caught.value.problem


def test_huge_header_is_refused_before_allocating(corpus):
    path = corpus.bad["huge_header"]
    assert path.stat().st_size < 1024 and HUGE_SHAPE == (4096,) * 3
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match="larger than the limit"):
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB allocated while refusing a header"


BOMB = "resampling (64, 64, 64) voxels of (500, 500, 500) mm to (1, 1, 1) mm would make (32000, 32000, 32000)"


def test_a_resampling_bomb_is_refused_from_its_header(corpus):
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match="more than the limit") as caught:
            read_image(corpus.bomb, resample_to=(1.0, 1.0, 1.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value).startswith(f"{corpus.bomb}: {BOMB}") and "\n" not in str(caught.value)
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB allocated while refusing a header"


def test_a_resampling_bomb_is_refused_by_check_train_and_infer(corpus, run_dir, tmp_path):
    checked = runner.invoke(app, ["check", str(corpus.manifests["bomb"])])
    assert (
        checked.exit_code == 1
        and [f"{corpus.bomb}: {BOMB}" in line for line in checked.stdout.splitlines()].count(True) == 1
    )
    trained = runner.invoke(
        app, ["train", "--manifest", str(corpus.manifests["bomb"]), "--output", str(tmp_path / "run"), *TRAIN_FLAGS]
    )
    assert trained.exit_code == 2 and BOMB in trained.output and not list((tmp_path / "run").glob("*.pt"))
    out = tmp_path / "out"
    inferred = runner.invoke(
        app, ["infer", str(corpus.bomb), str(corpus.good["good_a"][0]), "-o", str(out), "--model", str(run_dir)]
    )
    assert inferred.exit_code == 1
    rows = _rows(out / RUN_CSV)
    assert rows["bomb"]["status"] == "failed" and BOMB in rows["bomb"]["error"] and rows["good_a"]["status"] == "ok"


# ------------------------------------------------------------------------------------------------ check


@pytest.fixture(scope="module")
def checked(corpus):
    return runner.invoke(app, ["check", str(corpus.manifests["scans"])])


@pytest.mark.parametrize("case_id", sorted(EXPECTED))
def test_check_reports_each_bad_scan_in_one_line(corpus, checked, case_id):
    path = corpus.bad[case_id]
    [line] = _lines_about(checked.stdout, path)
    assert line.startswith(f"{path}: ") and EXPECTED[case_id] in line


def test_check_exits_1_and_accepts_good_and_all_zero_scans(corpus, checked):
    assert checked.exit_code == 1
    assert f"{len(EXPECTED)} problem(s)" in checked.stderr
    assert len(checked.stdout.splitlines()) == len(EXPECTED)
    for path in [corpus.all_zero, *(image for image, _ in corpus.good.values())]:
        assert not _lines_about(checked.stdout, path)


@pytest.mark.parametrize(
    "manifest, expected",
    [
        (
            "missing",
            ["scans/absent.nii.gz: no such file or folder", "labels/absent_seg.nii.gz: no such file or folder"],
        ),
        ("mismatch", ["labels/mismatch_seg.nii.gz: label grid differs from image mismatch.nii.gz: shape (20, 24, 15)"]),
        ("nan", ["scans/nan_inf.nii.gz: 3 NaN and 2 Inf voxel(s)"]),
        ("duplicate", ["duplicate.csv:5: duplicate case_id 'good_a'"]),
        ("traversal", ["traversal.csv:5: case_id '../../x' is not a safe file name"]),
    ],
)
def test_check_names_each_manifest_problem(corpus, manifest, expected):
    result = runner.invoke(app, ["check", str(corpus.manifests[manifest])])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected)
    for line, text in zip(lines, expected):
        assert line.startswith(str(corpus.root)) and text in line, (line, text)


# ------------------------------------------------------------------------------------------------ infer


@pytest.fixture(scope="module")
def inferred(corpus, run_dir, tmp_path_factory):
    """One batch over every scan file."""
    out = tmp_path_factory.mktemp("infer") / "out"
    result = runner.invoke(app, ["infer", str(corpus.scans), "--model", str(run_dir), "-o", str(out)])
    return result, out


@pytest.mark.parametrize("case_id", FILES)
def test_infer_fails_each_bad_case_alone_with_one_line(corpus, inferred, case_id):
    result, out = inferred
    path = corpus.bad[case_id]
    row = _rows(out / "volseg_run.csv")[case_id]
    assert row["status"] == "failed" and row["output"] == ""
    assert row["error"].startswith(f"{path}: ") and EXPECTED[case_id] in row["error"], row["error"]
    assert "\n" not in row["error"]
    assert f"failed {case_id}: {row['error']}" in result.output.splitlines()
    assert not list(out.glob(f"{case_id}*")) and not list(out.glob(f".{case_id}*"))


def test_infer_finishes_good_and_all_zero_cases_and_nothing_else(corpus, inferred):
    """Exit 1 (some failed); every legal case written on its own grid; no temporary or partial file left."""
    result, out = inferred
    assert result.exit_code == 1, result.output
    rows = _rows(out / "volseg_run.csv")
    assert len(rows) == len(FILES) + len(LEGAL)
    for case_id in LEGAL:
        assert rows[case_id]["status"] == "ok", rows[case_id]
        source, output = nib.load(corpus.scans / f"{case_id}.nii.gz"), nib.load(out / f"{case_id}_seg.nii.gz")
        assert output.shape == SHAPE and (output.affine == source.affine).all()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{c}_seg.nii.gz" for c in LEGAL] + ["volseg_run.csv", "statistics.csv", "statistics.json"]
    )
    assert f"{len(LEGAL)} of {len(rows)} cases done" in result.output
    assert "Traceback" not in result.output


def test_infer_manifest_with_missing_image_goes_on(corpus, run_dir, tmp_path):
    result = runner.invoke(
        app, ["infer", str(corpus.manifests["missing"]), "--model", str(run_dir), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 1, result.output
    rows = _rows(tmp_path / "out" / "volseg_run.csv")
    assert rows["no_image"]["status"] == "failed"
    assert rows["no_image"]["error"] == f"{corpus.scans / 'absent.nii.gz'}: no such file or folder"
    assert all(rows[c]["status"] == "ok" for c in ("good_a", "good_b", "good_c", "no_label"))
    assert not (tmp_path / "out" / "no_image_seg.nii.gz").exists()


@pytest.mark.parametrize(
    "manifest, problem",
    [
        ("duplicate", "duplicate case_id 'good_a'"),
        ("traversal", "case_id '../../x' is not a safe file name"),
    ],
)
def test_infer_refuses_a_manifest_with_bad_case_ids_before_writing(corpus, run_dir, tmp_path, manifest, problem):
    out = tmp_path / "a" / "b" / "out"  # '../../x' from here would still land inside tmp_path
    result = runner.invoke(app, ["infer", str(corpus.manifests[manifest]), "--model", str(run_dir), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {corpus.manifests[manifest]}:5: {problem}"
    assert not out.exists() and not list(tmp_path.rglob("*.nii.gz"))


def test_hostile_case_ids_never_write_outside_the_output_folder(corpus, run_dir, tmp_path):
    """Ids that bypass the manifest check (library callers, a folder given as 'x/..') fail alone."""
    out = tmp_path / "a" / "b" / "out"
    good = corpus.good["good_a"][0]
    hostile = ["../../x", "..", str(tmp_path / "abs_x"), "sub/x", ".hidden"]
    cases = [CaseInput(case_id, (good,)) for case_id in hostile] + [CaseInput("good_a", (good,))]
    results = run_batch(cases, RunOutputs(out), ZooSegmenter(run_dir, "cpu"), BatchOptions())
    results = {r.case_id: r for r in results}
    for case_id in hostile:
        assert results[case_id].status == "failed" and "not a safe file name" in results[case_id].error
    assert results["good_a"].status == "ok"
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == [
        "a/b/out/good_a_seg.nii.gz",
        "a/b/out/statistics.csv",
        "a/b/out/statistics.json",
        "a/b/out/volseg_run.csv",
    ]


# ------------------------------------------------------------------------------------------------ train


TRAIN_FLAGS = [
    "--device",
    "cpu",
    "--epochs",
    "1",
    "--set",
    "train.iterations_per_epoch=1",
    "--set",
    "train.threads=1",
    "--set",
    "model.features=[4, 8, 16]",
    "--set",
    "sampling.patch_size_3d=[16, 16, 16]",
    "--set",
    "sampling.batch_size_3d=2",
    "--set",
    "data.cache=none",
]


@pytest.mark.parametrize(
    "manifest, line",
    [
        ("mismatch", "labels/mismatch_seg.nii.gz: label grid differs from image mismatch.nii.gz"),
        ("nan", "scans/nan_inf.nii.gz: 3 NaN and 2 Inf voxel(s)"),
        ("missing", "labels/absent_seg.nii.gz: no such file or folder"),
        ("duplicate", "duplicate.csv:5: duplicate case_id 'good_a'"),
        ("traversal", "traversal.csv:5: case_id '../../x' is not a safe file name"),
    ],
)
def test_train_refuses_bad_data_before_training(corpus, tmp_path, manifest, line):
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "--manifest", str(corpus.manifests[manifest]), "--output", str(run), *TRAIN_FLAGS]
    )
    assert result.exit_code == 2, result.output
    assert any(
        text.startswith(("error: " + str(corpus.root), str(corpus.root))) and line in text
        for text in result.output.splitlines()
    ), result.output
    assert not list(run.glob("*.pt")), "no checkpoint may exist for a refused run"
