"""nnU-Net v2 beside volseg, for the benchmarks that run nnU-Net itself (``nnunet_budget``, ``nnunet_reference``,
``nnunet_models``, ``nnunet_golden``): its own virtual environment, the trainers volseg adds to it, and its
commands with their folders.

- :func:`ensure`: the venv at a given path, created with ``NNUNET`` (pip's nnunetv2 brings its own torch
  build) when it has no Python, then the given trainers written into its nnunetv2 package. With the venv and
  the trainers in place it writes nothing.
- Trainers: nnU-Net finds a trainer by class name inside its own package (also at prediction time, for
  ``build_network_architecture``), so a trainer is a module written there, under
  ``nnunetv2/training/nnUNetTrainer/variants/<folder>/`` (nnU-Net's documented way to add a trainer).
  :func:`short_trainer` is nnU-Net's default recipe a few iterations long, its final validation skipped.
- :func:`environment`: ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` inside a work folder;
  :func:`run`: one command, echoed, its wall seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

NNUNET = "nnunetv2==2.8.1"
FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


@dataclass(frozen=True)
class Trainer:
    name: str  # the class name, as ``nnUNetv2_train -tr`` takes it
    folder: str  # its package under nnunetv2/training/nnUNetTrainer/variants/
    code: str  # the module's text


def short_trainer(name: str, folder: str, doc: str, env_prefix: str, val_iterations: int) -> Trainer:
    """nnU-Net's default recipe, ``<env_prefix>_EPOCHS`` (2) epochs of ``<env_prefix>_ITERATIONS`` (10)
    iterations and ``<env_prefix>_VAL_ITERATIONS`` (``val_iterations``) validation iterations, in bf16 autocast
    with ``<env_prefix>_BF16=1``; the final validation (nnU-Net's sliding-window prediction of the validation
    cases) is skipped. ``doc``: the class's
    docstring as written in the module."""
    code = f'''
import os

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {name}(nnUNetTrainer):
    """{doc}"""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("{env_prefix}_EPOCHS", "2"))
        self.num_iterations_per_epoch = int(os.environ.get("{env_prefix}_ITERATIONS", "10"))
        self.num_val_iterations_per_epoch = int(os.environ.get("{env_prefix}_VAL_ITERATIONS", "{val_iterations}"))

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("{name}: final validation skipped")

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's step; with ``{env_prefix}_BF16=1`` under bf16 autocast on the CPU, as nnU-Net autocasts on
        a GPU (only worth it on a CPU with native bf16: 2.1x on Zen 4's avx512_bf16)."""
        if os.environ.get("{env_prefix}_BF16") != "1" or self.device.type != "cpu":
            return super().train_step(batch)
        data, target = batch["data"], batch["target"]
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = self.network(data)
            loss = self.loss(output, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
        self.optimizer.step()
        return {{"loss": loss.detach().float().cpu().numpy()}}
'''
    return Trainer(name, folder, code)


def say(message: str) -> None:
    print(message, flush=True)


def run(cmd: list, env: dict | None = None, log: Path | None = None, say: Callable[[str], None] = say) -> float:
    """Run a command, echoed through ``say``; returns its wall seconds. Without ``log`` its output goes to the
    console and a failure raises ``CalledProcessError``; with ``log`` its output goes into that file and a
    failure prints the log's tail and exits."""
    cmd = [str(c) for c in cmd]
    say("+ " + " ".join(cmd))
    started = time.perf_counter()
    if log is None:
        subprocess.run(cmd, check=True, env=env)
        return time.perf_counter() - started
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        out.write("+ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.run(cmd, check=False, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if proc.returncode:
        print(log.read_text(encoding="utf-8", errors="replace")[-6000:], file=sys.stderr)
        raise SystemExit(f"failed ({proc.returncode}) after {seconds:.0f} s: see {log}")
    say(f"  {seconds:.1f} s")
    return seconds


def package_dir(python: Path) -> Path:
    """The folder of the nnunetv2 package that ``python`` imports."""
    return Path(
        subprocess.run(
            [str(python), "-c", "import nnunetv2, os; print(os.path.dirname(nnunetv2.__file__))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )


def install_trainer(python: Path, trainer: Trainer) -> Path:
    """``trainer`` written into the nnunetv2 package of ``python`` (only when it is missing or differs)."""
    path = package_dir(python) / "training" / "nnUNetTrainer" / "variants" / trainer.folder / f"{trainer.name}.py"
    if not path.exists() or path.read_text(encoding="utf-8") != trainer.code:
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(trainer.code, encoding="utf-8")
    return path


def ensure(venv: Path, trainers: Iterable[Trainer] = (), logs: Path | None = None) -> Path:
    """nnU-Net's venv at ``venv`` (created with ``NNUNET`` when it has no Python; the output of ``venv`` and
    ``pip`` into ``logs/venv.log`` and ``logs/pip.log`` when ``logs`` is given) with ``trainers`` installed;
    returns its ``bin`` folder (``nnUNetv2_*`` and its ``python``)."""
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", venv], dict(os.environ), logs and logs / "venv.log")
        run([python, "-m", "pip", "install", "-q", NNUNET], dict(os.environ), logs and logs / "pip.log")
    for trainer in trainers:
        install_trainer(python, trainer)
    return venv / "bin"


def environment(work: Path, **extra: str) -> dict[str, str]:
    """This process's environment with nnU-Net's three folders inside ``work`` (``work/nnUNet_raw`` ...) and
    ``extra``."""
    return {**os.environ, **{name: str(work / name) for name in FOLDERS}, **extra}


def versions(python: Path, packages: Iterable[str]) -> dict[str, str]:
    """The installed version of each of ``packages`` that ``python`` has (missing ones left out)."""
    code = (
        "import json, sys, importlib.metadata as m\nout = {}\nfor p in sys.argv[1:]:\n    try: out[p] = m.version(p)\n"
        "    except Exception: pass\nprint(json.dumps(out))"
    )
    return json.loads(
        subprocess.run([str(python), "-c", code, *packages], check=True, capture_output=True, text=True).stdout
    )
