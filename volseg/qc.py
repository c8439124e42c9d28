"""Quality-control pictures: axial, coronal and sagittal slices through the structure, label overlaid.

Views follow the radiological convention (the patient's right on the viewer's left) and keep the voxels'
true proportions, so a 0.6 x 0.6 x 1.6 mm CT does not look squashed.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from volseg.atomic import atomic_path


def label_centre(labels: np.ndarray) -> tuple[int, ...]:
    """Centre of mass of the foreground, or of the volume when nothing was segmented."""
    if labels.any():
        return tuple(int(round(c)) for c in np.argwhere(labels > 0).mean(0))
    return tuple(s // 2 for s in labels.shape)


def to_ras(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Flip/permute voxel axes to the closest RAS orientation so every picture reads the same way."""
    ornt = nib.orientations.io_orientation(affine)
    return nib.orientations.apply_orientation(array, ornt)


def ras_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along the RAS axes of :func:`to_ras`'s output."""
    ornt = nib.orientations.io_orientation(affine)
    sizes = nib.affines.voxel_sizes(affine)
    out = np.empty(3)
    out[ornt[:, 0].astype(int)] = sizes
    return out


def save_qc(image, labels: np.ndarray, path: Path, attention: np.ndarray | None = None) -> Path:
    """Write a PNG with three orthogonal views of ``image``'s first channel with ``labels`` overlaid.

    ``image`` is the source scan as read (a MetaTensor or io.Scan on the labels' grid, with its affine); both are
    turned to RAS voxel order for display. ``attention`` (same grid) adds a second row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    affine = np.asarray(image.affine)
    volume = to_ras(np.asarray(image, dtype=np.float32)[0], affine)
    labels = to_ras(np.asarray(labels), affine)
    if attention is not None:
        attention = to_ras(np.asarray(attention), affine)
    cx, cy, cz = label_centre(labels)
    sx, sy, sz = ras_spacing(affine)
    views = {
        "axial": (volume[:, :, cz], labels[:, :, cz], sy / sx),
        "coronal": (volume[:, cy, :], labels[:, cy, :], sz / sx),
        "sagittal": (volume[cx, :, :], labels[cx, :, :], sz / sy),
    }
    rows = 2 if attention is not None else 1
    fig, axes = plt.subplots(rows, 3, figsize=(12, 4 * rows), squeeze=False)
    lo, hi = np.percentile(volume, [1, 99])
    for ax, (title, (img, lab, aspect)) in zip(axes[0], views.items()):
        ax.imshow(img.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect)
        ax.imshow(
            np.ma.masked_equal(lab.T, 0),
            cmap="tab10",
            alpha=0.45,
            origin="lower",
            vmin=0,
            vmax=9,
            interpolation="nearest",
            aspect=aspect,
        )
        ax.set_title(title)
    if attention is not None:
        att = [attention[:, :, cz], attention[:, cy, :], attention[cx, :, :]]
        for ax, a, (_, _, aspect) in zip(axes[1], att, views.values()):
            ax.imshow(a.T, cmap="magma", origin="lower", vmin=0, vmax=1, aspect=aspect)
            ax.set_title("attention")
    for row in axes:
        row[0].invert_xaxis()  # axial and coronal: the patient's right on the viewer's left
        row[1].invert_xaxis()
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=72)
    plt.close(fig)
    return path
