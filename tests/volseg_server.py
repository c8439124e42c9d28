"""``volseg serve`` for the tests: a real subprocess on a free loopback port, driven by real HTTP clients, stopped
(or killed) by the test. ``SLICER_CLIENT`` is the MONAI Label Slicer module's own ``client.py``, shipped in the
``monailabel`` wheel's data folder (setup.sh installs the wheel without its dependencies); it is imported from
where pip put it, never copied."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from .helpers import REPO, free_port

VOLSEG = Path(sys.executable).with_name("volseg")
SLICER_CLIENT = Path(sys.prefix) / "monailabel/plugins/slicer/MONAILabel/MONAILabelLib/client.py"
HIPPOCAMPUS_IMAGE = REPO / "data/hippocampus/imagesTr/hippocampus_001.nii.gz"
NNUNET_MODEL = REPO / "tests/data/nnunet_tiny/models/plain/Dataset900_Tiny/nnUNetTrainer__nnUNetPlans__3d_fullres"
NNUNET_IMAGE = REPO / "tests/data/nnunet_tiny/images/aniso_0000.nii.gz"
NNUNET_KEY = "Dataset900_Tiny_nnUNetTrainer__nnUNetPlans__3d_fullres"


def slicer_client_module():
    """The Slicer module's MONAILabelLib/client.py as installed (an ImportError, not a skip, when it is not)."""
    if not SLICER_CLIENT.is_file():
        raise ImportError(f"{SLICER_CLIENT} missing: setup.sh installs monailabel==0.8.5 --no-deps")
    spec = importlib.util.spec_from_file_location("slicer_monailabel_client", SLICER_CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path
    args: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


def start(folder: Path, *args: str, ready_path: str = "/info/", headers: dict | None = None) -> Server:
    """``volseg serve ARGS --port FREE`` logging to ``folder/serve-N.log``; returns once it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / f"serve-{len(list(folder.glob('serve-*.log')))}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(VOLSEG), "serve", *args, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=folder
        )
    server = Server(process, port, log, args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"volseg serve exited with {process.returncode}:\n{server.log_text()}")
        try:
            if requests.get(server.url + ready_path, headers=headers, timeout=2).status_code < 500:
                return server
        except requests.ConnectionError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"volseg serve did not answer within 120 s:\n{server.log_text()}")
