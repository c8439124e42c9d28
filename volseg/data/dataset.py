"""MONAI datasets over manifest cases: cached preprocessing, then random 2D/3D training samples."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from monai import data as md
from monai import transforms as mt

from volseg.config import Config
from volseg.data.check import check_cases, read_checked
from volseg.data.manifest import Case
from volseg.data.transforms import (
    load_and_preprocess,
    preprocess,
    remap_labels,
    resampling_limits,
    training_samples,
)
from volseg.errors import VolsegError


def case_dict(case: Case) -> dict:
    d = {"case_id": case.case_id, "image": [str(p) for p in case.images]}
    if case.label is not None:
        d["label"] = str(case.label)
    return d


def _cached(items: list[dict], transform: mt.Compose, cfg: Config, num_workers: int) -> md.Dataset:
    """Cache the deterministic prefix of ``transform`` (everything before its first random step)."""
    if cfg.data.cache == "memory":
        return md.CacheDataset(items, transform, num_workers=num_workers, progress=False)
    if cfg.data.cache == "disk":
        Path(cfg.data.cache_dir).mkdir(parents=True, exist_ok=True)
        return md.PersistentDataset(items, transform, cache_dir=cfg.data.cache_dir)
    if cfg.data.cache == "none":
        return md.Dataset(items, transform)
    raise VolsegError(f"data.cache must be one of ['memory', 'disk', 'none'], got {cfg.data.cache!r}")


def training_dataset(cases: Sequence[Case], cfg: Config, spatial_dims: int, num_workers: int = 0) -> md.Dataset:
    """Each item yields ``samples_per_volume`` augmented patches (3D) or slices (2D) of one case."""
    _require_labels(cases)
    transform = mt.Compose(
        [*load_and_preprocess(cfg).flatten().transforms, *training_samples(cfg, spatial_dims).transforms]
    )
    return _cached([case_dict(c) for c in cases], transform, cfg, num_workers)


def volume_dataset(cases: Sequence[Case], cfg: Config, num_workers: int = 0) -> md.Dataset:
    """Whole preprocessed volumes (validation and inference), cached like the training data."""
    return _cached([case_dict(c) for c in cases], load_and_preprocess(cfg).flatten(), cfg, num_workers)


def checked_datasets(
    train_cases: Sequence[Case], val_cases: Sequence[Case], cfg: Config, spatial_dims: int, num_workers: int = 0
) -> tuple[md.Dataset, md.Dataset | None]:
    """Training and validation datasets, every case checked first; raises ValueError naming every problem.

    With the memory cache each file is read once: the read that is checked (:func:`read_checked`) is the
    one preprocessed into the cache. Other caches check, then read again as they always do."""
    if cfg.data.cache != "memory":
        problems = check_cases([*train_cases, *val_cases], **resampling_limits(cfg))
        if problems:
            raise VolsegError("\n".join(map(str, problems)))
        return (
            training_dataset(train_cases, cfg, spatial_dims, num_workers),
            volume_dataset(val_cases, cfg, num_workers) if val_cases else None,
        )
    _require_labels(train_cases)
    prepare = preprocess(cfg)  # load_and_preprocess after LoadCased, whose read read_checked has done

    def read_and_prepare(case: Case) -> tuple[dict | None, list]:
        loaded, problems = read_checked(case, **resampling_limits(cfg))
        if loaded is None:
            return None, problems
        if "label" in loaded:
            loaded["label"] = remap_labels(loaded["label"], cfg.data.label_remap)
        return prepare({"case_id": case.case_id, **loaded}), problems

    with ThreadPoolExecutor(max(1, num_workers)) as pool:  # like CacheDataset's caching threads
        results = list(pool.map(read_and_prepare, [*train_cases, *val_cases]))
    problems = [p for _, found in results for p in found]
    if problems:
        raise VolsegError("\n".join(map(str, problems)))
    prepared = [item for item, _ in results]
    train = md.CacheDataset(prepared[: len(train_cases)], training_samples(cfg, spatial_dims), progress=False)
    val = md.CacheDataset(prepared[len(train_cases) :], mt.Compose([]), progress=False) if val_cases else None
    return train, val


def _require_labels(cases: Sequence[Case]) -> None:
    missing = [c.case_id for c in cases if c.label is None]
    if missing:
        raise VolsegError(f"training cases need labels; unlabeled: {missing[:5]}")


def training_loader(
    dataset: md.Dataset, cfg: Config, spatial_dims: int, num_workers: int = 0, sampler=None
) -> md.DataLoader:
    batch = cfg.sampling.batch_size_3d if spatial_dims == 3 else cfg.sampling.batch_size_2d
    per_item = cfg.sampling.samples_per_volume if spatial_dims == 3 else cfg.sampling.slices_per_volume
    return md.DataLoader(
        dataset,
        batch_size=max(1, batch // per_item),
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=md.list_data_collate,
        drop_last=False,
        persistent_workers=num_workers > 0,
    )
