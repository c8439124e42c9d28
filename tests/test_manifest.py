import json

import nibabel as nib
import numpy as np
import pytest

from volseg.data.discover import (
    assign_splits,
    discover_cases,
    label_names_from_dataset_json,
)
from volseg.data.manifest import ManifestError, read_manifest, write_manifest

from .conftest import REPO, shared_path


def _nifti(path, shape=(4, 5, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), path)


def test_nnunet_channels_and_test_images(tmp_path):
    for case in ("a", "b"):
        for ch in ("0000", "0001"):
            _nifti(tmp_path / "imagesTr" / f"{case}_{ch}.nii.gz")
        _nifti(tmp_path / "labelsTr" / f"{case}.nii.gz")
    _nifti(tmp_path / "imagesTs" / "c_0000.nii.gz")
    cases = {c.case_id: c for c in discover_cases(tmp_path)}
    assert sorted(cases) == ["a", "b", "c"]
    assert [p.name for p in cases["a"].images] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    assert cases["c"].label is None and cases["c"].split == "test"


def test_msd_dataset_json(tmp_path):
    _nifti(tmp_path / "imagesTr" / "x_1.nii.gz")
    _nifti(tmp_path / "labelsTr" / "x_1.nii.gz")
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
                "training": [{"image": "./imagesTr/x_1.nii.gz", "label": "./labelsTr/x_1.nii.gz"}],
            }
        ),
        encoding="utf-8",
    )
    (case,) = discover_cases(tmp_path)
    assert case.case_id == "x_1" and case.label.name == "x_1.nii.gz"
    assert label_names_from_dataset_json(tmp_path) == {1: "Anterior", 2: "Posterior"}


def test_splits_are_deterministic_and_sized(tmp_path):
    for i in range(20):
        _nifti(tmp_path / "images" / f"case{i:02d}.nii.gz")
        _nifti(tmp_path / "labels" / f"case{i:02d}.nii.gz")
    cases = discover_cases(tmp_path)
    first = assign_splits(cases, 0.2, 0.1, seed=3)
    assert first == assign_splits(cases, 0.2, 0.1, seed=3)
    assert first != assign_splits(cases, 0.2, 0.1, seed=4)
    splits = [c.split for c in first]
    assert splits.count("val") == 4 and splits.count("test") == 2 and splits.count("train") == 14


def test_manifest_round_trip_relative_paths(tmp_path):
    for i in range(3):
        _nifti(tmp_path / "data" / "images" / f"c{i}.nii.gz")
        _nifti(tmp_path / "data" / "labels" / f"c{i}.nii.gz")
    cases = assign_splits(discover_cases(tmp_path / "data"), 0.0, 0.0, 0)
    write_manifest(cases, tmp_path / "m.csv")
    text = (tmp_path / "m.csv").read_text(encoding="utf-8")
    assert "data/images/c0.nii.gz" in text and str(tmp_path) not in text
    assert read_manifest(tmp_path / "m.csv") == cases


def test_bad_manifest_rows_are_all_reported(tmp_path):
    (tmp_path / "m.csv").write_text(
        "case_id,image,label,split\n"
        "ok,a.nii.gz,,train\n"
        "ok,b.nii.gz,,train\n"
        "../../x,c.nii.gz,,train\n"
        "d,d.nii.gz,,holdout\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path / "m.csv")
    message = str(err.value)
    assert "m.csv:3: duplicate case_id 'ok'" in message
    assert "m.csv:4: case_id '../../x' is not a safe file name" in message
    assert "m.csv:5: split 'holdout'" in message


def test_embedded_default_manifest():
    cases = read_manifest(REPO / "data_manifest.csv")
    splits = [c.split for c in cases]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (24, 6, 10)
    assert all(c.image.is_file() and c.label.is_file() for c in cases)


def test_msd_hippocampus_folder():
    cases = discover_cases(shared_path("data", "msd_task04_hippocampus"))
    assert len(cases) == 230 and all(c.label is not None for c in cases)
