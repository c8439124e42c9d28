"""Manifest over all 230 MSD Task04 hippocampus cases, holding out the bundled test cases.

Usage: python pipelines/hippocampus_manifest.py SRC OUT.csv
Train/val is a seeded 80/20 split of the other 220 cases; the 10 test cases of the embedded default
(data_manifest.csv) are marked 'test' so the default model never sees them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from volseg.data.discover import assign_splits, discover_cases
from volseg.data.manifest import Case, read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]


def main(src: Path, out: Path) -> None:
    held_out = {c.case_id for c in read_manifest(REPO / "data_manifest.csv") if c.split == "test"}
    cases = discover_cases(src)
    pool = assign_splits([c for c in cases if c.case_id not in held_out], val_fraction=0.2, test_fraction=0.0, seed=0)
    tests = [Case(c.case_id, c.images, c.label, "test") for c in cases if c.case_id in held_out]
    write_manifest(sorted(pool + tests, key=lambda c: c.case_id), out)
    print(f"wrote {out}: {len(pool)} train/val cases, {len(tests)} held-out test cases")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
