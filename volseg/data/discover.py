"""Build a manifest from a dataset folder: MSD / nnU-Net layouts or images and labels matched by name."""

from __future__ import annotations

import json
import random
from pathlib import Path

from volseg.data.case_ids import CHANNEL, file_stem
from volseg.data.manifest import Case, ManifestError, safe_case_id
from volseg.errors import VolsegError


def _images_by_case(folder: Path, label_ids: set[str]) -> dict[str, list[Path]]:
    """Group files into cases; nnU-Net's ``_0000`` suffixes become channels in suffix order."""
    stems = {p: s for p in sorted(folder.iterdir()) if (s := file_stem(p)) is not None}
    channel_style = any(m and m["case"] in label_ids for m in map(CHANNEL.match, stems.values())) or (
        not label_ids and stems and all(CHANNEL.match(s) for s in stems.values())
    )
    cases: dict[str, list[tuple[str, Path]]] = {}
    for path, stem in stems.items():
        match = CHANNEL.match(stem) if channel_style else None
        case_id, channel = (match["case"], match["channel"]) if match else (stem, "0000")
        cases.setdefault(case_id, []).append((channel, path))
    return {case_id: [p for _, p in sorted(chs)] for case_id, chs in cases.items()}


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def is_dataset_folder(src: str | Path) -> bool:
    """An MSD/nnU-Net folder or images/ + labels/ (what :func:`discover_cases` reads), not a DICOM archive."""
    root = Path(src)
    return (root / "dataset.json").is_file() or _first_dir(root, ("imagesTr", "images")) is not None


def discover_cases(src: str | Path) -> list[Case]:
    """Cases of an MSD/nnU-Net folder (dataset.json, imagesTr/labelsTr, imagesTs) or of a folder with
    ``images/`` and ``labels/`` sub-folders matched by name. Unlabeled cases get split 'test'."""
    root = Path(src)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    cases: list[Case] = []
    dataset_json = root / "dataset.json"
    training = _read_json(dataset_json).get("training") if dataset_json.is_file() else None
    if isinstance(training, list) and training and isinstance(training[0], dict) and "image" in training[0]:
        for entry in training:  # MSD: explicit image/label pairs
            image, label = root / entry["image"], root / entry["label"]
            cases.append(Case(file_stem(image) or image.name, (image,), label, "train"))
    else:
        images = _first_dir(root, ("imagesTr", "images"))
        labels = _first_dir(root, ("labelsTr", "labels"))
        if images is None:
            raise ManifestError(f"{root}: no imagesTr/ or images/ folder and no dataset.json training list")
        label_files = {s: p for p in sorted(labels.iterdir()) if (s := file_stem(p))} if labels else {}
        for case_id, channels in _images_by_case(images, set(label_files)).items():
            cases.append(Case(case_id, tuple(channels), label_files.get(case_id), "train"))
    test_dir = _first_dir(root, ("imagesTs",))
    if test_dir is not None:
        for case_id, channels in _images_by_case(test_dir, set()).items():
            cases.append(Case(case_id, tuple(channels), None, "test"))
    bad = [c.case_id for c in cases if not safe_case_id(c.case_id)]
    if bad:
        raise ManifestError(f"{root}: case ids not usable as file names: {bad[:5]}")
    if not cases:
        raise ManifestError(f"{root}: no images found")
    return cases


def assign_splits(cases: list[Case], val_fraction: float, test_fraction: float, seed: int) -> list[Case]:
    """Deterministic random split of the labeled cases for a seed; unlabeled cases stay 'test'."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise VolsegError(f"fractions must be in [0, 1) and sum below 1, got val={val_fraction}, test={test_fraction}")
    labeled = sorted((c for c in cases if c.label is not None), key=lambda c: c.case_id)
    order = list(range(len(labeled)))
    random.Random(seed).shuffle(order)
    n_test = round(len(labeled) * test_fraction)
    n_val = round(len(labeled) * val_fraction)
    split_of = {}
    for rank, index in enumerate(order):
        split_of[labeled[index].case_id] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return sorted(
        (Case(c.case_id, c.images, c.label, split_of.get(c.case_id, "test")) for c in cases),
        key=lambda c: c.case_id,
    )


def label_names_from_dataset_json(root: str | Path) -> dict[int, str] | None:
    """Label value -> name from an MSD (``{"1": "Anterior"}``) or nnU-Net v2 (``{"Anterior": 1}``) file."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    labels = _read_json(path).get("labels")
    if not isinstance(labels, dict):
        return None
    pairs = ((int(k), str(v)) if str(k).isdigit() else (int(v), str(k)) for k, v in labels.items())
    return {value: name for value, name in pairs if value != 0}


def _read_json(path: Path) -> dict:
    """A dataset.json as a dict, or a one-line ManifestError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object")
    return data
