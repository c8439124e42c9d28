"""Left and right from the body's midline (data.split_at_midline): on a real CT the merged kidneys split
back into exactly the reference's right and left kidney, whatever the array's orientation."""

import numpy as np
import pytest

from volseg.config import ConfigError, load_config
from volseg.data import io
from volseg.data.transforms import BODY_HU
from volseg.runtime.postprocess import split_at_midline

from .helpers import REPO

CT = REPO / "data" / "abdomen_ct"


def is_body(image):
    return image > BODY_HU


@pytest.fixture(scope="module")
def ct():
    image = io.read_image(CT / "ct.nii.gz")
    labels = io.read_label(CT / "ct_labels.nii.gz")[0].numpy().astype(np.int64)
    return image[0].numpy(), labels, np.asarray(image.meta["original_affine"], float)


def test_merged_kidneys_split_back_into_the_reference_sides(ct):
    image, labels, affine = ct
    assert {3, 4} <= set(np.unique(labels))  # kidney_right 3, kidney_left 4
    merged = np.where(labels == 4, 3, labels)
    assert np.array_equal(split_at_midline(merged, image, affine, {3: 4}, is_body), labels)


def test_the_split_follows_the_patient_not_the_array(ct):
    """The same scan stored mirrored along x (the affine says so): the same voxels are right and left."""
    image, labels, affine = ct
    flipped_affine = affine.copy()
    flipped_affine[:, 0] = -affine[:, 0]
    flipped_affine[:3, 3] = affine[:3, :3] @ [image.shape[0] - 1, 0, 0] + affine[:3, 3]
    merged = np.where(labels == 4, 3, labels)[::-1]
    split = split_at_midline(merged, image[::-1], flipped_affine, {3: 4}, is_body)
    assert np.array_equal(split, labels[::-1])


def test_nothing_to_split_leaves_the_labels_alone(ct):
    image, labels, affine = ct
    no_kidney = np.where(labels >= 3, 0, labels)
    assert np.array_equal(split_at_midline(no_kidney, image, affine, {3: 4}, is_body), no_kidney)


def test_a_split_into_an_unknown_label_is_refused():
    with pytest.raises(ConfigError, match="split_at_midline"):
        load_config(REPO / "configs" / "abdomen_ct.yaml", ["data.split_at_midline={3: 9}"])
