"""Shared test fixtures-as-functions: a tiny manifest over bundled real cases, a tiny training config."""

from __future__ import annotations

from pathlib import Path

from volseg.config import Config, load_config
from volseg.data.manifest import Case, read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]


def tiny_manifest(tmp_path: Path, n_train: int = 3, n_val: int = 1, n_test: int = 0) -> Path:
    """A manifest over a few bundled hippocampus cases (real MRI crops, ~35x50x35 voxels)."""
    cases = read_manifest(REPO / "data_manifest.csv")
    picked = [
        Case(c.case_id, c.images, c.label, split)
        for c, split in zip(cases, ["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    ]
    path = tmp_path / "manifest.csv"
    write_manifest(picked, path)
    return path


def tiny_config(manifest: Path, model: str = "unet", dims: int = 3, *extra: str) -> Config:
    return load_config(
        None,
        [
            f"data.manifest={manifest}",
            f"model.name={model}",
            f"model.dims={dims}",
            "model.features=[4, 8, 16]",
            "sampling.patch_size_3d=[24, 24, 24]",
            "sampling.batch_size_3d=2",
            "sampling.patch_size_2d=[32, 32]",
            "sampling.batch_size_2d=4",
            "sampling.slices_per_volume=2",
            "train.epochs=2",
            "train.iterations_per_epoch=2",
            "train.val_every=1",
            "train.threads=1",
            *extra,
        ],
    )


def tiny_run(tmp_path: Path, dims: int = 3, *extra: str) -> Path:
    """A real run folder from one very short training (for geometry and plumbing, not accuracy)."""
    from volseg.training.trainer import train

    manifest = tiny_manifest(tmp_path, n_train=2, n_val=0)
    cfg = tiny_config(manifest, "unet", dims, "train.epochs=1", "train.iterations_per_epoch=1", *extra)
    train(cfg, tmp_path / "run", device="cpu")
    return tmp_path / "run"


def free_port() -> int:
    """A TCP port free on loopback now (the servers the tests start listen there, never on a default port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
