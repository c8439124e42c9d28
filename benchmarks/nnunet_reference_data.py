"""``benchmarks/nnunet_reference.py``'s synthetic data: small CT-like and MR-like volumes on rotated,
flipped and anisotropic grids, and the two nnU-Net datasets (labels, regions) made of them."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np


def rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine(direction: np.ndarray, spacing, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = direction @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def grid(shape) -> list[np.ndarray]:
    """Voxel centres in [-0.5, 0.5] per axis (the synthetic anatomy lives in this normalised frame)."""
    return np.meshgrid(*[(np.arange(n) + 0.5) / n - 0.5 for n in shape], indexing="ij")


def ellipsoid(coords, centre, radii) -> np.ndarray:
    return sum(((c - m) / r) ** 2 for c, m, r in zip(coords, centre, radii)) <= 1.0


def save(path: Path, data: np.ndarray, aff: np.ndarray) -> None:
    img = nib.Nifti1Image(data, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))


def ct_case(rng, shape, zero_border: bool):
    """CT-like: air around a body (no zero anywhere), liver and spleen blobs, an unlabelled spine."""
    x, y, z = grid(shape)
    body = ((x / 0.42) ** 2 + (y / 0.36) ** 2) <= 1.0
    j = lambda s: rng.uniform(-s, s)  # noqa: E731
    liver = ellipsoid((x, y, z), (-0.13 + j(0.03), 0.03 + j(0.03), j(0.05)), (0.24 + j(0.02), 0.20 + j(0.02), 0.45))
    spleen = ellipsoid((x, y, z), (0.23 + j(0.02), -0.06 + j(0.03), 0.05 + j(0.05)), (0.11, 0.11 + j(0.01), 0.3))
    spine = ((x / 0.06) ** 2 + ((y + 0.26) / 0.06) ** 2) <= 1.0
    hu = np.full(shape, -1000.0)
    hu[body] = 40.0
    hu[spine & body] = 450.0
    hu[liver & body] = 70.0
    hu[spleen & body] = 115.0
    hu += rng.normal(0.0, 12.0, shape) + 8.0 * x  # noise and a mild gradient
    label = np.zeros(shape, np.uint8)
    label[liver & body] = 1
    label[spleen & body & ~liver] = 2
    image = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    image[image == 0] = 1  # no exact zero, so cropping to non-zero can only come from a padded border
    if zero_border:  # a scanner's padded field of view: the crop to non-zero has to remove it
        b0, b1, b2 = int(rng.integers(2, 5)), int(rng.integers(3, 6)), 1
        pad = np.ones(shape, bool)
        pad[b0 : shape[0] - b0 - 1, b1 : shape[1] - b1, b2:] = False
        image[pad] = 0
        label[pad] = 0
    return image, label


def mr_case(rng, shape):
    """MR-like, skull-stripped: exact zero outside a head, a tumour whose core sits inside its whole extent."""
    x, y, z = grid(shape)
    j = lambda s: rng.uniform(-s, s)  # noqa: E731
    head = ellipsoid((x, y, z), (0, 0, 0), (0.40, 0.43, 0.36))
    ventricles = ellipsoid((x, y, z), (0, 0.02, 0.03), (0.07, 0.12, 0.06))
    centre = (j(0.1), j(0.1), j(0.06))
    radii = (0.21 + j(0.03), 0.22 + j(0.03), 0.19 + j(0.03))
    whole = ellipsoid((x, y, z), centre, radii) & head
    core = ellipsoid((x, y, z), centre, tuple(r * 0.6 for r in radii)) & head
    mr = 300.0 * (1.0 + 0.15 * x - 0.1 * z)  # bias field
    mr[ventricles] = 110.0
    mr[whole] = 440.0
    mr[core] = 590.0
    mr = mr + rng.normal(0.0, 18.0, shape)
    image = np.where(head, np.maximum(mr, 1.0), 0.0).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[whole] = 1
    label[core] = 2
    return image, label


FLIP_XY = np.diag([-1.0, -1.0, 1.0])  # LPS-style directions, common in NIfTI converted from DICOM


def ct_dataset(folder: Path, rng) -> dict:
    cases = []
    directions = [
        np.eye(3),
        FLIP_XY,
        rotation(2, 12) @ np.diag([-1.0, 1.0, 1.0]),
        np.eye(3),
        FLIP_XY,
        rotation(0, 8),
        np.diag([1.0, -1.0, 1.0]),
        FLIP_XY,
    ]
    for i in range(8):
        shape = (48 + int(rng.integers(-2, 3)), 56 + int(rng.integers(-2, 3)), 20 + int(rng.integers(-2, 3)))
        inplane = rng.uniform(0.74, 0.86)
        spacing = (inplane, inplane if i != 5 else inplane * 1.05, rng.uniform(2.8, 3.2))
        cases.append(
            dict(
                case=f"tinyct_{i:03d}",
                split="train",
                shape=shape,
                spacing=spacing,
                direction=directions[i],
                zero_border=i in (3, 6),
            )
        )
    # test cases: one like training; one rotated and flipped at another spacing (still anisotropic beyond 3, and
    # larger); one with a zero border whose own spacing is below nnU-Net's anisotropy threshold (2:1) while the
    # target spacing is beyond it (separate z decided by the target)
    cases += [
        dict(
            case="tinyct_ts000",
            split="test",
            shape=(48, 56, 20),
            spacing=(0.8, 0.8, 3.0),
            direction=np.eye(3),
            zero_border=False,
        ),
        dict(
            case="tinyct_ts001",
            split="test",
            shape=(60, 64, 24),
            spacing=(0.65, 0.7, 2.5),
            direction=rotation(2, 25) @ rotation(0, 10) @ np.diag([-1.0, 1.0, 1.0]),
            zero_border=False,
        ),
        dict(
            case="tinyct_ts002",
            split="test",
            shape=(40, 46, 30),
            spacing=(1.0, 1.0, 2.0),
            direction=FLIP_XY,
            zero_border=True,
        ),
    ]
    for c in cases:
        origin = [-c["shape"][k] * c["spacing"][k] / 2 + rng.uniform(-20, 20) for k in range(3)]
        c["affine"] = affine(c["direction"], c["spacing"], origin)
    return write_dataset(
        folder,
        cases,
        {
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, "liver": 1, "spleen": 2},
            "file_ending": ".nii.gz",
            "name": "TinyCT",
            "description": "volseg's synthetic CT reference (benchmarks/nnunet_reference.py)",
        },
        rng,
        "ct",
    )


def regions_dataset(folder: Path, rng) -> dict:
    cases = []
    directions = [np.eye(3), FLIP_XY, rotation(1, 15), np.diag([1.0, -1.0, 1.0]), rotation(2, -20) @ FLIP_XY, np.eye(3)]
    for i in range(6):
        shape = tuple(40 + int(rng.integers(-2, 3)) for _ in range(3))
        spacing = tuple(rng.uniform(0.9, 1.15) for _ in range(3))
        cases.append(
            dict(
                case=f"tinyreg_{i:03d}",
                split="train",
                shape=shape,
                spacing=spacing,
                direction=directions[i],
                permute=None,
            )
        )
    # test cases: one like training; one stored with permuted axes (a sagittal acquisition of the same frame, at
    # another spacing); one rotated and flipped, larger
    cases += [
        dict(
            case="tinyreg_ts000",
            split="test",
            shape=(40, 40, 40),
            spacing=(1.0, 1.0, 1.0),
            direction=np.eye(3),
            permute=None,
        ),
        dict(
            case="tinyreg_ts001",
            split="test",
            shape=(44, 34, 40),
            spacing=(0.9, 1.3, 1.0),
            direction=np.eye(3),
            permute=(1, 2, 0),
        ),
        dict(
            case="tinyreg_ts002",
            split="test",
            shape=(46, 42, 38),
            spacing=(1.0, 1.0, 1.0),
            direction=rotation(1, 20) @ np.diag([1.0, -1.0, 1.0]),
            permute=None,
        ),
    ]
    for c in cases:
        origin = [-c["shape"][k] * c["spacing"][k] / 2 + rng.uniform(-10, 10) for k in range(3)]
        c["affine"] = affine(c["direction"], c["spacing"], origin)
    return write_dataset(
        folder,
        cases,
        {
            "channel_names": {"0": "T2"},
            "labels": {"background": 0, "whole": [1, 2], "core": 2},
            "regions_class_order": [1, 2],
            "file_ending": ".nii.gz",
            "name": "TinyRegions",
            "description": "volseg's synthetic region-based reference (benchmarks/nnunet_reference.py)",
        },
        rng,
        "mr",
    )


def write_dataset(folder: Path, cases: list, dataset: dict, rng, kind: str) -> dict:
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    described = []
    for c in cases:
        if kind == "ct":
            image, label = ct_case(rng, c["shape"], c["zero_border"])
        else:
            image, label = mr_case(rng, c["shape"])
        aff = c["affine"]
        if c.get("permute"):  # same content and world geometry, the array's axes stored in another order
            p = c["permute"]
            image, label = image.transpose(p), label.transpose(p)
            aff = aff[:, [*p, 3]]
        images, labels = ("imagesTr", "labelsTr") if c["split"] == "train" else ("imagesTs", "labelsTs")
        save(folder / images / f"{c['case']}_0000.nii.gz", image, aff)
        save(folder / labels / f"{c['case']}.nii.gz", label, aff)
        described.append(
            {
                "case": c["case"],
                "split": c["split"],
                "shape": list(image.shape),
                "spacing": [float(s) for s in np.linalg.norm(aff[:3, :3], axis=0)],
                "affine": np.round(aff, 6).tolist(),
                "zero_border": bool(c.get("zero_border", False)),
                "labels_present": sorted(int(v) for v in np.unique(label)),
            }
        )
    dataset["numTraining"] = sum(c["split"] == "train" for c in cases)
    (folder / "cases.json").write_text(json.dumps(described, indent=1), encoding="utf-8")
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1), encoding="utf-8")  # last: marks it done
    return dataset
