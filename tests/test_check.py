"""volseg.data.check: one call reports every problem of every case, one line each, and nothing for good cases."""

import csv

import nibabel as nib
import numpy as np

from volseg.data.check import Problem, check_case, check_manifest
from volseg.data.manifest import Case

from .conftest import shared_path

SHAPE = (8, 7, 6)
AFFINE = np.array([[-1.0, 0, 0, 10.0], [0, -1.0, 0, 20.0], [0, 0, 2.0, -5.0], [0, 0, 0, 1]])
LABELS = {0, 1, 2}


def _nifti(path, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _image(path, affine=AFFINE, shape=SHAPE):
    return _nifti(path, np.random.default_rng(0).normal(size=shape).astype(np.float32), affine)


def _label(path, affine=AFFINE, shape=SHAPE, value=2):
    data = np.zeros(shape, np.uint8)
    data[2:4, 2:4, 2:4] = value
    return _nifti(path, data, affine)


def _manifest(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", "image", "label", "split"])
        writer.writerows(rows)
    return path


def test_problem_is_one_line():
    assert str(Problem("a/b.nii.gz", "file is empty")) == "a/b.nii.gz: file is empty"


def test_one_call_reports_every_bad_file_and_nothing_for_good_cases(tmp_path):
    good = {
        "good": (_image(tmp_path / "good.nii.gz"), _label(tmp_path / "good_seg.nii.gz")),
        "unlabeled": (_image(tmp_path / "unlabeled.nii.gz"), None),
    }
    nearly = AFFINE.copy()  # float32 round-off and 2e-4 rotation: still the same grid
    nearly[:3, :3] = np.array([[1, -2e-4, 0], [2e-4, 1, 0], [0, 0, 1]]) @ AFFINE[:3, :3]
    nearly[:3, 3] += 3e-4
    good["nearly"] = (_image(tmp_path / "nearly.nii.gz"), _label(tmp_path / "nearly_seg.nii.gz", nearly))

    blob = _image(tmp_path / "big.nii.gz", shape=(30, 30, 30)).read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "text.nii.gz").write_text("this is not a volume\n", encoding="utf-8")
    nan = np.zeros(SHAPE, np.float32)
    nan[0, 0, :3] = np.nan
    nan[1, 1, 1] = np.inf
    _nifti(tmp_path / "nan.nii.gz", nan)
    shifted = AFFINE.copy()
    shifted[2, 3] += 4.0
    flair = _image(tmp_path / "flair.nii.gz", shifted)
    half = np.zeros(SHAPE, np.float32)
    half[1, 1, 1] = 0.5

    rows = [[case_id, image.name, label.name if label else "", "train"] for case_id, (image, label) in good.items()]
    rows += [
        ["truncated", "truncated.nii.gz", _label(tmp_path / "s1.nii.gz").name, "train"],
        ["text", "text.nii.gz", "", "train"],
        ["shape", _image(tmp_path / "i3.nii.gz").name, _label(tmp_path / "small.nii.gz", shape=(8, 7, 5)).name, "val"],
        ["value", _image(tmp_path / "i4.nii.gz").name, _label(tmp_path / "five.nii.gz", value=5).name, "val"],
        ["nan", "nan.nii.gz", _label(tmp_path / "s5.nii.gz").name, "test"],
        ["missing", "absent.nii.gz", _label(tmp_path / "s6.nii.gz").name, "test"],
        ["channels", f"{_image(tmp_path / 't1.nii.gz').name};{flair.name}", "", "train"],
        ["moved", _image(tmp_path / "i8.nii.gz").name, _label(tmp_path / "moved.nii.gz", shifted).name, "train"],
        ["half", _image(tmp_path / "i9.nii.gz").name, _nifti(tmp_path / "half.nii.gz", half).name, "train"],
    ]
    manifest = _manifest(tmp_path / "manifest.csv", rows)

    problems = check_manifest(manifest, LABELS)

    by_file = {}
    for problem in problems:
        assert "\n" not in str(problem)
        by_file.setdefault(problem.path.rsplit("/", 1)[-1], []).append(problem.message)
    assert sorted(by_file) == sorted(
        [
            "truncated.nii.gz",
            "text.nii.gz",
            "small.nii.gz",
            "five.nii.gz",
            "nan.nii.gz",
            "absent.nii.gz",
            "flair.nii.gz",
            "moved.nii.gz",
            "half.nii.gz",
        ]
    )
    assert all(len(messages) == 1 for messages in by_file.values()), by_file
    expected = {
        "truncated.nii.gz": "truncated or corrupt gzip archive",
        "text.nii.gz": "not a NIfTI/NRRD/MHA image or DICOM series",
        "small.nii.gz": "label grid differs from image i3.nii.gz: shape (8, 7, 5) vs (8, 7, 6)",
        "five.nii.gz": "unknown label value(s) [5]; expected a subset of [0, 1, 2]",
        "nan.nii.gz": "3 NaN and 1 Inf voxel(s)",
        "absent.nii.gz": "no such file or folder",
        "flair.nii.gz": "channel grid differs from t1.nii.gz: origin",
        "moved.nii.gz": "label grid differs from image i8.nii.gz: origin",
        "half.nii.gz": "1 non-integral or non-finite voxel(s)",
    }
    for name, text in expected.items():
        assert text in by_file[name][0], (name, by_file[name])


def test_without_label_values_any_integer_label_is_fine(tmp_path):
    case = Case("c", (_image(tmp_path / "i.nii.gz"),), _label(tmp_path / "l.nii.gz", value=7), "train")
    assert check_case(case) == []
    assert [p.message for p in check_case(case, {0, 1})] == ["unknown label value(s) [7]; expected a subset of [0, 1]"]


def test_bad_rows_become_problems_and_every_good_row_is_still_checked(tmp_path):
    _image(tmp_path / "d.nii.gz")
    manifest = _manifest(
        tmp_path / "m.csv",
        [
            ["a", "a.nii.gz", "", "train"],
            ["a", "b.nii.gz", "", "val"],
            ["c", "c.nii.gz", "", "holdout"],
            ["d", "d.nii.gz", "", "test"],
        ],
    )
    problems = check_manifest(manifest)
    assert [p.path for p in problems] == [f"{manifest}:3", f"{manifest}:4", str(tmp_path / "a.nii.gz")]
    assert "duplicate case_id 'a'" in problems[0].message and "split 'holdout'" in problems[1].message
    assert problems[2].message == "no such file or folder"  # case a was checked; d was checked and is clean
    missing = check_manifest(tmp_path / "none.csv")
    assert [str(p) for p in missing] == [f"{tmp_path / 'none.csv'}: manifest not found"]


def test_real_hippocampus_cases_are_clean(tmp_path):
    root = shared_path("data", "msd_task04_hippocampus")
    names = ["hippocampus_001.nii.gz", "hippocampus_003.nii.gz", "hippocampus_243.nii.gz"]  # 003/243: float32 labels
    names += sorted(p.name for p in (root / "imagesTr").iterdir())[3:6]
    rows = [[n.split(".")[0], root / "imagesTr" / n, root / "labelsTr" / n, "train"] for n in names]
    assert check_manifest(_manifest(tmp_path / "m.csv", rows), LABELS) == []
    # a real image paired with another case's label: the shapes differ
    swapped = _manifest(tmp_path / "swapped.csv", [["x", rows[0][1], rows[1][2], "train"]])
    [problem] = check_manifest(swapped, LABELS)
    assert problem.path == str(rows[1][2]) and "label grid differs from image" in problem.message
