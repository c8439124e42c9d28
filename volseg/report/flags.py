"""What a reviewer should look at first: failed cases, empty labels, labels touching the scan's border, and
volumes outside the batch's robust range (median +- 3 scaled MADs, FastSurfer's and nnU-Net's habit of
judging a case against its cohort rather than a fixed threshold)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MAD_TO_SIGMA = 1.4826  # a normal sample's MAD times this estimates its standard deviation
MIN_CASES = 5  # fewer non-empty volumes than this: no range is judged


def robust_range(volumes, k: float = 3.0) -> tuple[float, float] | None:
    """(low, high) = median -+ k scaled MADs of the non-empty volumes; None when too few to judge."""
    values = np.asarray([v for v in volumes if v > 0], dtype=float)
    if values.size < MIN_CASES:
        return None
    median = float(np.median(values))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(values - median)))
    return (max(0.0, median - k * spread), median + k * spread) if spread > 0 else None


def case_flags(
    status: str,
    error: str,
    volumes: Mapping[int, float],
    border: set[int],
    ranges: Mapping[int, tuple[float, float] | None],
    names: Mapping[int, str],
) -> list[dict]:
    """One dict per flag: ``kind`` (failed, empty, volume, border), the ``label`` it concerns, and ``text``."""
    if status == "failed":
        return [{"kind": "failed", "label": None, "text": f"failed: {error}"}]
    flags = []
    for value, name in names.items():
        volume = volumes.get(value, 0.0)
        if volume == 0:
            flags.append({"kind": "empty", "label": value, "text": f"{name} empty"})
            continue
        low_high = ranges.get(value)
        if low_high is not None and not low_high[0] <= volume <= low_high[1]:
            flags.append(
                {
                    "kind": "volume",
                    "label": value,
                    "text": f"{name} {volume:.3g} mL outside the batch range {low_high[0]:.3g}-{low_high[1]:.3g} mL",
                }
            )
        if value in border:
            flags.append({"kind": "border", "label": value, "text": f"{name} touches the border"})
    return flags
