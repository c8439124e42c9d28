"""Label maps after the network: the largest component per label, and left and right from the midline.

**Largest component.** :func:`keep_largest_component` (``--keep-largest``) drops every piece of a label but its
largest, as stray false positives are.

**Left and right from geometry, not appearance**: a label split at the patient's midline after inference.

A model that must tell the left kidney from the right one by appearance may not mirror its training data
across x, and learns each kidney from one example per training scan. Trained instead with one kidney
class (``data.label_remap``), mirrored across x, it sees both kidneys and their mirror images; the side
comes back here, from where each voxel lies against the body's midline (``data.split_at_midline``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def keep_largest_component(labels: np.ndarray, values: Iterable[int]) -> np.ndarray:
    """Per label, keep only its largest 26-connected component (removes stray false positives)."""
    from scipy import ndimage

    out = labels.copy()
    for value in values:
        components, n = ndimage.label(labels == value, structure=np.ones((3, 3, 3)))
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    return out


def split_at_midline(
    labels: np.ndarray, image: np.ndarray, affine: np.ndarray, mapping: dict[int, int], is_body
) -> np.ndarray:
    """``labels`` (X, Y, Z) with each ``value`` of ``mapping`` split: its voxels on the patient's left of the
    midline (world x below it, RAS) become ``mapping[value]``. The midline is the centre of the body
    (``is_body(image)``) over the slices that hold the label, along the axis closest to head-foot."""
    out = labels.copy()
    axial = int(np.argmax(np.abs(np.asarray(affine, float)[2, :3])))
    body = is_body(image)
    for value, left in mapping.items():
        found = np.argwhere(labels == value)
        if not len(found):
            continue
        slices = np.unique(found[:, axial])
        body_there = np.argwhere(body.take(slices, axis=axial))
        if not len(body_there):
            continue
        body_there[:, axial] = slices[body_there[:, axial]]  # back to the scan's slice index
        midline = _world_x(body_there, affine).mean()  # the body's centre where the label lies
        on_left = _world_x(found, affine) < midline
        out[tuple(found[on_left].T)] = left
    return out


def _world_x(indices: np.ndarray, affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, float)
    return indices @ affine[0, :3] + affine[0, 3]
