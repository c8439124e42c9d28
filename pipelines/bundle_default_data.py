"""Recreate the embedded default dataset (data/hippocampus + data_manifest.csv) from MSD Task04.

Usage: python pipelines/bundle_default_data.py [../shared/data/msd_task04_hippocampus]
Picks 40 cases with a fixed seed (24 train, 6 val, 10 test) and copies them byte for byte.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

from volseg.data.discover import discover_cases
from volseg.data.manifest import Case, write_manifest

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"train": 24, "val": 6, "test": 10}
SEED = 2026


def main(src: Path) -> None:
    cases = sorted(discover_cases(src), key=lambda c: c.case_id)
    chosen = random.Random(SEED).sample(cases, sum(SPLITS.values()))
    dest = REPO / "data" / "hippocampus"
    bundled, start = [], 0
    for split, n in SPLITS.items():
        for case in sorted(chosen[start : start + n], key=lambda c: c.case_id):
            image = dest / "imagesTr" / case.image.name
            label = dest / "labelsTr" / case.label.name
            for source, target in ((case.image, image), (case.label, label)):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            bundled.append(Case(case.case_id, (image,), label, split))
        start += n
    write_manifest(sorted(bundled, key=lambda c: c.case_id), REPO / "data_manifest.csv")
    print(f"bundled {len(bundled)} cases into {dest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "msd_task04_hippocampus")
