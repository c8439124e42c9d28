"""The separable inverse resample gives MONAI's grid_sample result (axis-aligned grids) and hands every
other case to MONAI."""

import numpy as np
import torch
from monai import transforms as mt
from monai.data import MetaTensor

from volseg.data.resample import SeparableResample, axis_aligned_resample


def _pair(affine: np.ndarray, image: torch.Tensor, pixdim):
    """The same forward resampling by MONAI's SpatialResample and by ours, for inverting both."""
    out = []
    for cls in (mt.SpatialResample, SeparableResample):
        spacing = mt.Spacing(pixdim=pixdim, mode="bilinear", padding_mode="border", dtype=np.float32)
        spacing.sp_resample = cls(mode="bilinear", padding_mode="border", align_corners=False, dtype=np.float32)
        out.append((spacing, spacing(MetaTensor(image.clone(), affine=torch.as_tensor(affine)))))
    return out


def test_inverse_matches_monai_on_anisotropic_axis_aligned_grids():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((3, 37, 29, 11)).astype(np.float32))
    affine = np.diag([0.7, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-12.3, 40.1, 7.7]
    (monai_tf, monai_fwd), (ours_tf, ours_fwd) = _pair(affine, image, (3.0, 2.0, 1.5))
    assert torch.equal(monai_fwd.as_tensor(), ours_fwd.as_tensor())  # the forward pass is MONAI's own
    prediction = torch.from_numpy(rng.random(monai_fwd.shape).astype(np.float32))
    expected = monai_tf.inverse(
        MetaTensor(prediction, meta=monai_fwd.meta, applied_operations=monai_fwd.applied_operations)
    )
    ours = ours_tf.inverse(MetaTensor(prediction, meta=ours_fwd.meta, applied_operations=ours_fwd.applied_operations))
    assert ours.shape == expected.shape == image.shape
    assert torch.allclose(ours.affine.double(), expected.affine.double())
    assert float((ours.as_tensor() - expected.as_tensor()).abs().max()) < 1e-4


def test_an_oblique_scan_is_still_axis_aligned_to_its_own_resampled_grid():
    """Spacing keeps the scan's directions, so even a rotated scan takes the separable path (the two grids
    differ by scale per voxel axis); only grids rotated against each other are left to MONAI."""
    angle = np.deg2rad(20)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    assert axis_aligned_resample(torch.zeros(1, 4, 4, 4), np.eye(4), rotation, (4, 4, 4)) is None
    image = torch.rand(2, 16, 14, 9)
    (monai_tf, monai_fwd), (ours_tf, ours_fwd) = _pair(rotation @ np.diag([1.0, 1.0, 2.0, 1.0]), image, (1.5, 1.5, 1.5))
    prediction = torch.rand(monai_fwd.shape)
    expected = monai_tf.inverse(
        MetaTensor(prediction, meta=monai_fwd.meta, applied_operations=monai_fwd.applied_operations)
    )
    ours = ours_tf.inverse(MetaTensor(prediction, meta=ours_fwd.meta, applied_operations=ours_fwd.applied_operations))
    assert torch.allclose(ours.affine.double(), expected.affine.double())
    assert float((ours.as_tensor() - expected.as_tensor()).abs().max()) < 1e-4
