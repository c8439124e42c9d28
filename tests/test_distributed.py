"""torchrun on CPU with gloo and 2 processes: DDP training, kill-and-resume, sharded batch inference."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from volseg.config import save_config
from volseg.data.manifest import read_manifest
from volseg.runtime.checkpoint import load_checkpoint

from .helpers import REPO, tiny_config, tiny_manifest, tiny_run

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "volseg"]
RUN_FILES = {"config.yaml", "best.pt", "last.pt", "training_log.csv", "curves.png"}


@pytest.fixture(scope="module")
def ddp_config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    manifest = tiny_manifest(tmp, n_train=4, n_val=2)
    cfg = tiny_config(
        manifest,
        "unet",
        3,
        "train.epochs=4",
        "train.iterations_per_epoch=3",
        "train.lr=0.01",
        "train.verify_replicas=true",
        "train.val_every=2",
    )
    save_config(cfg, tmp / "ddp.yaml")
    return tmp / "ddp.yaml"


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_ddp_training_two_ranks(ddp_config, tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        [*TORCHRUN, "train", "--config", str(ddp_config), "--output", str(run), "--device", "cpu"],
        capture_output=True,
        encoding="utf-8",
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    # verify_replicas raised on any step where the ranks' weights differed; the run finished, so they never did
    assert {p.name for p in run.iterdir()} == RUN_FILES  # rank 0 alone wrote, nothing half-written left
    history = load_checkpoint(run / "last.pt")["history"]
    losses = [h["train_loss"] for h in history]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert losses[-1] < losses[0], losses
    assert {1, 2} <= set(history[-1]["val_dice"])  # validation sharded over ranks, gathered


def test_ddp_kill_and_resume(ddp_config, tmp_path):
    run = tmp_path / "run"
    cmd = [
        *TORCHRUN,
        "train",
        "--config",
        str(ddp_config),
        "--output",
        str(run),
        "--device",
        "cpu",
        "--set",
        "train.epochs=8",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "last.pt").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(run / "last.pt")["epoch"]
    assert 1 <= killed_at < 8
    result = subprocess.run(
        [*TORCHRUN, "train", "--output", str(run), "--device", "cpu", "--resume"],
        capture_output=True,
        encoding="utf-8",
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert [h["epoch"] for h in load_checkpoint(run / "last.pt")["history"]] == list(range(1, 9))


def test_sharded_inference_six_cases(tmp_path):
    run = tiny_run(tmp_path)
    cases = [c for c in read_manifest(REPO / "data_manifest.csv") if c.split == "test"][:6]
    (tmp_path / "in").mkdir()
    for case in cases:
        shutil.copyfile(case.image, tmp_path / "in" / case.image.name)
    out = tmp_path / "out"
    result = subprocess.run(
        [*TORCHRUN, "infer", str(tmp_path / "in"), "--model", str(run), "-o", str(out), "--device", "cpu"],
        capture_output=True,
        encoding="utf-8",
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{c.case_id}_seg.nii.gz" for c in cases)
    merged = list(csv.DictReader(open(out / "volseg_run.csv", encoding="utf-8")))
    assert sorted(r["case_id"] for r in merged) == sorted(c.case_id for c in cases)
    assert all(r["status"] == "ok" for r in merged)
    per_rank = [list(csv.DictReader(open(out / f"volseg_run.rank{k}.csv", encoding="utf-8"))) for k in range(2)]
    assert all(len(rows) == 3 for rows in per_rank)  # shared out, none done twice
    # each rank appends to its own statistics part (one shared file raced: two headers, rows lost), rank 0 merges
    stats = list(csv.DictReader(open(out / "statistics.csv", encoding="utf-8")))
    assert sorted({r["case_id"] for r in stats}) == sorted(c.case_id for c in cases)
    assert len(stats) == 2 * len(cases) and all(r["label"] in ("1", "2") for r in stats)
    assert sorted(json.loads((out / "statistics.json").read_text(encoding="utf-8"))) == sorted(c.case_id for c in cases)
