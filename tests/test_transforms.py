"""Preprocessing round trips to the source grid; 2D/3D sampling with foreground oversampling."""

import nibabel as nib
import numpy as np
import pytest
import torch

from volseg.config import load_config
from volseg.data import io
from volseg.data.dataset import case_dict, training_dataset
from volseg.data.manifest import read_manifest
from volseg.data.transforms import load_and_preprocess, to_source_grid

from .helpers import REPO


def _rotation(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _affine(kind):
    if kind == "RAS":
        return np.diag([1.0, 1.0, 1.0, 1.0])
    if kind == "LPS":
        return np.diag([-1.0, -1.0, 1.0, 1.0])
    affine = np.eye(4)  # oblique: 20 degree rotation, anisotropic spacing, shifted origin
    affine[:3, :3] = _rotation(20) @ np.diag([0.8, 1.2, 2.5])
    affine[:3, 3] = [10, -20, 5]
    return affine


def _write_case(tmp_path, kind):
    label = np.zeros((20, 24, 12), np.uint8)
    label[5:12, 6:15, 3:8] = 1
    label[12:16, 6:10, 3:8] = 2
    image = np.random.default_rng(0).normal(size=label.shape).astype(np.float32) + label
    nib.save(nib.Nifti1Image(image, _affine(kind)), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(label, _affine(kind)), tmp_path / "lab.nii.gz")
    return label


@pytest.mark.parametrize("kind", ["RAS", "LPS", "oblique"])
@pytest.mark.parametrize("spacing", [None, [1.0, 1.0, 1.0]])
def test_preprocess_then_invert_lands_on_the_source_grid(tmp_path, kind, spacing):
    label = _write_case(tmp_path, kind)
    cfg = load_config(None, [f"preprocess.spacing={spacing if spacing else 'null'}"])
    chain = load_and_preprocess(cfg)
    data = chain({"image": [str(tmp_path / "img.nii.gz")], "label": str(tmp_path / "lab.nii.gz")})
    if kind == "LPS" or (kind == "oblique" and spacing):
        assert not np.allclose(data["image"].affine.numpy(), _affine(kind))  # really reoriented/resampled
    back = to_source_grid(data["label"], data["image"], chain, nearest=True)
    assert tuple(back.shape[1:]) == label.shape
    assert np.allclose(back.affine.numpy(), _affine(kind), atol=1e-5)
    written = io.write_label(back[0].numpy().round().astype(np.uint8), data["image"], tmp_path / "out.nii.gz")
    reread = nib.load(written)
    assert reread.shape == label.shape and np.allclose(reread.affine, _affine(kind), atol=1e-5)
    if spacing is None or kind != "oblique":  # no resampling needed: the label survives unchanged
        assert np.array_equal(np.asarray(reread.dataobj), label)


def test_probabilities_go_back_with_linear_interpolation(tmp_path):
    _write_case(tmp_path, "oblique")
    chain = load_and_preprocess(load_config(None, []))
    data = chain({"image": [str(tmp_path / "img.nii.gz")], "label": str(tmp_path / "lab.nii.gz")})
    probs = torch.stack([(data["label"][0] == k).float() for k in range(3)])
    back = to_source_grid(probs, data["image"], chain)
    assert back.shape == (3, 20, 24, 12)
    assert torch.allclose(back.sum(0), torch.ones(20, 24, 12), atol=1e-4)


def test_ct_normalization_clips_and_zscores(tmp_path):
    image = np.linspace(-1000, 1000, 8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "ct.nii.gz")
    cfg = load_config(
        None,
        [
            "preprocess.normalization=ct",
            "preprocess.ct_clip=[-100, 200]",
            "preprocess.ct_mean=50",
            "preprocess.ct_std=25",
        ],
    )
    out = load_and_preprocess(cfg)({"image": [str(tmp_path / "ct.nii.gz")]})["image"]
    assert out.min().item() == pytest.approx(-6.0) and out.max().item() == pytest.approx(6.0)


@pytest.fixture(scope="module")
def bundled_cases():
    return [c for c in read_manifest(REPO / "data_manifest.csv") if c.split == "train"][:4]


def test_3d_patches_oversample_foreground(bundled_cases):
    cfg = load_config(
        None,
        ["sampling.patch_size_3d=[16, 16, 16]", "sampling.samples_per_volume=25", "sampling.foreground_fraction=0.33"],
    )
    dataset = training_dataset(bundled_cases, cfg, spatial_dims=3)
    samples = [s for i in range(len(dataset)) for s in dataset[i]]
    assert all(s["image"].shape == (1, 16, 16, 16) and s["label"].shape == (1, 16, 16, 16) for s in samples)
    with_foreground = np.mean([bool((s["label"] > 0).any()) for s in samples])
    assert with_foreground >= 1 / 3


def test_2d_slices_with_neighbour_channels(bundled_cases):
    cfg = load_config(
        None,
        [
            "sampling.patch_size_2d=[32, 40]",
            "sampling.context_slices=1",
            "sampling.slices_per_volume=6",
            "sampling.slice_axis=1",
        ],
    )
    samples = training_dataset(bundled_cases[:2], cfg, spatial_dims=2)[0]
    assert len(samples) == 6
    for s in samples:
        assert s["image"].shape == (3, 32, 40)  # 1 channel x (2k+1) slices
        assert s["label"].shape == (1, 32, 40)


def test_case_dict_keeps_channels_and_optional_label(bundled_cases):
    d = case_dict(bundled_cases[0])
    assert isinstance(d["image"], list) and d["label"].endswith(".nii.gz")


def test_flip_axes_leave_the_left_right_axis_alone():
    """augment.flip [1, 2] mirrors y and z but never x: left and right organs keep their side."""
    import torch

    from volseg.data.transforms import training_samples

    image = torch.arange(16 * 16 * 16, dtype=torch.float32).reshape(1, 16, 16, 16)
    allowed = {(): image, (2,): image.flip(2), (3,): image.flip(3), (2, 3): image.flip(2, 3)}
    cfg = load_config(
        None,
        [
            "sampling.patch_size_3d=[16, 16, 16]",
            "sampling.samples_per_volume=1",
            "augment.flip=[1, 2]",
            "augment.rotate_scale=false",
            "augment.intensity=false",
            "augment.gamma=false",
        ],
    )
    chain = training_samples(cfg, spatial_dims=3)
    seen = set()
    for seed in range(16):
        chain.set_random_state(seed)
        (sample,) = chain({"image": image.clone(), "label": torch.ones_like(image)})
        (flip,) = [f for f, expected in allowed.items() if torch.equal(sample["image"], expected)]
        seen.add(flip)
    assert len(seen) == 4  # every mirror of y and z occurs, and none of x


@pytest.mark.parametrize(
    "override,message",
    [
        ("augment.flip=[0, 3]", r"augment.flip: axes must lie in \[0, 1, 2\]"),
        ("augment.spatial_prob=1.5", r"augment.spatial_prob must be in \[0, 1\]"),
    ],
)
def test_bad_augmentation_settings_are_named(override, message):
    from volseg.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def _windows(shape, roi, overlap):
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    shape = tuple(max(s, r) for s, r in zip(shape, roi))  # sliding_window_inference pads up to one window
    interval = _get_scan_interval(shape, roi, len(shape), (overlap,) * len(shape))
    return {tuple((s.start, s.stop) for s in w) for w in dense_patch_slices(shape, roi, interval)}


@pytest.mark.parametrize("overlap", [0.25, 0.5, 0.625])
def test_body_crop_runs_exactly_the_windows_that_touch_the_body(overlap):
    """The crop's own sliding-window grid (MONAI's) must be the uncropped grid's windows over the box."""
    from volseg.data.transforms import window_aligned_box

    rng = np.random.default_rng(0)
    roi = (24, 16, 40)
    for _ in range(200):
        shape = tuple(int(rng.integers(10, 90)) for _ in range(3))
        lo = [int(rng.integers(0, s)) for s in shape]
        hi = [int(rng.integers(a + 1, s + 1)) for a, s in zip(lo, shape)]
        start, end = window_aligned_box(lo, hi, shape, roi, overlap)
        cropped = {
            tuple((a + s, b + s) for (a, b), s in zip(w, start))
            for w in _windows(tuple(e - s for s, e in zip(start, end)), roi, overlap)
        }
        touching = {
            w
            for w in _windows(shape, roi, overlap)
            if all(a < high and b > low for (a, b), low, high in zip(w, lo, hi))
        }
        padded = [d for d, s in enumerate(shape) if s <= roi[d]]  # MONAI pads these to one window
        strip = lambda ws: {tuple(x for d, x in enumerate(w) if d not in padded) for w in ws}  # noqa: E731
        assert strip(cropped) == strip(touching), (shape, lo, hi)
