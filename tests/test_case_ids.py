"""One rule for which case a file stands for, shared by discovery, infer's inputs, evaluate and the report."""

import pytest

from volseg.data.case_ids import file_stem, image_case_id, label_case_id


@pytest.mark.parametrize(
    ("name", "case"),
    [
        ("la_003_0000.nii.gz", "la_003"),
        ("la_003_0001.nii.gz", "la_003"),
        ("ct.nii", "ct"),
        ("ct.mha", "ct"),
        ("ct_seg.nii.gz", "ct_seg"),
        ("notes.txt", "notes.txt"),
    ],
)
def test_image_case_id(name, case):
    assert image_case_id(f"/data/{name}") == case


@pytest.mark.parametrize(("name", "case"), [("ct_seg.nii.gz", "ct"), ("ct.nii.gz", "ct"), ("la_003.nii", "la_003")])
def test_label_case_id(name, case):
    assert label_case_id(name) == case


def test_hidden_and_foreign_files_are_not_images():
    assert file_stem(".ct.nii.gz") is None and file_stem("ct.txt") is None and file_stem("ct.nii.gz") == "ct"
