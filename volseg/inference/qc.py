"""Quality-control pictures: axial, coronal and sagittal slices through the structure, label overlaid.

Views follow the radiological convention (the patient's right on the viewer's left) and keep the voxels'
true proportions, so a 0.6 x 0.6 x 1.6 mm CT does not look squashed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from volseg.files.atomic import atomic_path

# matplotlib's tab10, by label value: the colours of QC pictures, review pages and RTSTRUCT contours alike
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
OVERLAY_ALPHA = 0.45


def label_colors(values: Iterable[int], configured: Mapping[int, str] | None = None) -> dict[int, str]:
    """Label value -> "#rrggbb": the model's configured colour (``data.label_colors``), else the palette's."""
    return {int(v): (configured or {}).get(int(v), PALETTE[int(v) % len(PALETTE)]) for v in values}


def label_rgb(values: Iterable[int], configured: Mapping[int, str] | None = None) -> dict[int, tuple[int, int, int]]:
    """Label value -> (r, g, b) 0-255 of :func:`label_colors`, for the DICOM writers (SEG, RTSTRUCT); a configured
    colour that is not ``#rrggbb`` gives way to the palette's."""
    rgb = {}
    for value, text in label_colors(values, configured).items():
        digits = text.lstrip("#")
        try:
            rgb[value] = tuple(int(digits[n : n + 2], 16) for n in (0, 2, 4)) if len(digits) == 6 else None
        except ValueError:
            rgb[value] = None
        if rgb[value] is None:
            rgb[value] = label_rgb([value])[value]
    return rgb


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


def save_qc(
    image,
    labels: np.ndarray,
    path: Path,
    attention: np.ndarray | None = None,
    names: Mapping[int, str] | None = None,
    colors: Mapping[int, str] | None = None,
    title: str = "",
) -> Path:
    """Write a PNG with three orthogonal views of ``image``'s first channel with ``labels`` overlaid, titled
    ``title`` (the case id), with a legend naming each label (``names``) in its colour (``colors``, else the
    palette); a label the model has but did not find here is listed as "not found".

    ``image`` is the source scan as read (a MetaTensor or io.Scan on the labels' grid, with its affine); both are
    turned to RAS voxel order for display. ``attention`` (same grid) adds a second row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch

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
    found = {int(v) for v in np.unique(labels) if v != 0}
    names = dict(names or {value: f"label {value}" for value in found})
    palette = label_colors({*names, *found}, colors)
    lookup = np.zeros((max([*palette, 0]) + 1, 4))
    for value, colour in palette.items():
        lookup[value] = to_rgba(colour, OVERLAY_ALPHA)
    rows = 2 if attention is not None else 1
    fig, axes = plt.subplots(rows, 3, figsize=(12, 4 * rows + 0.8), squeeze=False)
    lo, hi = np.percentile(volume, [1, 99])
    for ax, (view, (img, lab, aspect)) in zip(axes[0], views.items()):
        ax.imshow(img.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect)
        ax.imshow(lookup[lab.T.astype(np.int64)], origin="lower", interpolation="nearest", aspect=aspect)
        ax.set_title(view)
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
    legend = [
        Patch(color=palette[value], label=f"{value} {name}" + ("" if value in found else " (not found)"))
        for value, name in sorted(names.items())
    ]
    fig.legend(handles=legend, loc="lower center", ncol=min(len(legend), 6) or 1, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=72)
    plt.close(fig)
    return path
