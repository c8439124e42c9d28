"""What the steps of ``benchmarks/nnunet_models.py`` share: the models, CTs and runs it measures, its
nnU-Net trainer, and the helpers that time a command on a quiet machine."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks import nnunet_budget, nnunet_env
from benchmarks.nnunet_env import short_trainer

REPO = Path(__file__).resolve().parents[1]
TRAINER_NAME = "nnUNetTrainerVolsegShort"
PLANS = "nnUNetPlans"
CONFIGURATION = "3d_fullres"
SHARED = REPO.parent / "shared" / "data"
BUNDLED = REPO / "data" / "abdomen_ct"
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4}  # data/abdomen_ct
IRCADB_MASKS = {"liver": "liver", "spleen": "spleen", "kidney_right": "rightkidney", "kidney_left": "leftkidney"}
MODELS = {  # spacing (mm) -> (dataset id, dataset name)
    "3": (931, "Dataset931_AbdomenCT3mm"),
    "1.5": (932, "Dataset932_AbdomenCT1p5mm"),
}


CTS = ("philips", "bundled", "ircadb")


# the hippocampus model: its key in ``models``, and the name of its test set (in the runs' "ct" field)
HIPPOCAMPUS = "hippocampus"
HIPPOCAMPUS_ID, HIPPOCAMPUS_DATASET = 4, nnunet_budget.DATASET
HIPPOCAMPUS_LABELS = nnunet_budget.LABELS
HIPPOCAMPUS_TRAINER = nnunet_budget.TRAINER  # nnUNetTrainerBudget: the default recipe in a wall-clock budget
SETTINGS = ("tta_off", "tta_on", "defaults")


# each timed run: (name, tool, setting it belongs to); the nnU-Net default is the tta_on run
RUNS = {
    "nnunet_tta_off": ("nnunet", "tta_off"),
    "volseg_fp32_tta_off": ("volseg", "tta_off"),
    "volseg_int8_tta_off": ("volseg", "tta_off"),
    "volseg_torch_tta_off": ("volseg", "tta_off"),  # volseg's pipeline on nnU-Net's own runtime: exactness apart
    "volseg_bf16_tta_off": ("volseg", "tta_off"),  # OpenVINO bf16, where the CPU computes bf16 natively
    "nnunet_tta_on": ("nnunet", "tta_on"),
    "volseg_fp32_tta_on": ("volseg", "tta_on"),
    "volseg_int8_tta_on": ("volseg", "tta_on"),
    "volseg_default": ("volseg", "defaults"),
}


# written into nnU-Net's package by benchmarks/nnunet_env.py
TRAINER = short_trainer(
    TRAINER_NAME,
    "volseg_models",
    "nnU-Net's default recipe, a few iterations long (benchmarks/nnunet_models.py in volseg). The final\n"
    "    validation (nnU-Net's sliding-window prediction of the validation cases) is skipped: only the weights\n"
    "    are needed.",
    "VOLSEG_NNUNET_SHORT",
    val_iterations=1,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list, env: dict, log_path: Path) -> float:
    """Run a command, its output into ``log_path``; returns wall seconds. On failure prints the log's tail."""
    return nnunet_env.run(cmd, env, log_path, say=log)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_info() -> dict:
    info: dict = {"cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        names = {
            "model name": "model_name",
            "cpu family": "family",
            "model": "model_number",
            "stepping": "stepping",
            "cpu MHz": "mhz",
        }
        if key in names and names[key] not in info:
            info[names[key]] = value.strip()
        elif key == "flags" and "flags" not in info:
            info["flags"] = value.split()
    flags = set(info.get("flags", []))
    info["simd"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    return info


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def machine_cpu_seconds() -> float:
    """CPU seconds spent by every process on the machine since boot (/proc/stat: all but idle and iowait)."""
    fields = Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def busy_cores(seconds: float) -> float:
    """Cores kept busy by the whole machine over the next ``seconds`` (this script sleeps meanwhile)."""
    before, started = machine_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_cpu_seconds() - before) / (time.monotonic() - started)


def wait_quiet(max_load: float, max_busy: float, wait_s: float, step_s: float = 20.0) -> dict:
    """Wait (up to ``wait_s``) until the 1-minute load average is below ``max_load`` and the machine's other
    processes kept fewer than ``max_busy`` cores busy over the last 10 s; record both either way. (The load
    average alone also carries the decaying tail of this script's previous run.)"""
    first = load_average()
    started = time.monotonic()
    busy = busy_cores(10.0)
    now = load_average()
    while (now[0] >= max_load or busy >= max_busy) and time.monotonic() - started < wait_s:
        log(f"load average {now}, {busy:.2f} cores busy (want < {max_load} and < {max_busy}); waiting")
        time.sleep(min(step_s, max(1.0, wait_s - (time.monotonic() - started))))
        busy = busy_cores(10.0)
        now = load_average()
    return {
        "load_before_wait": first,
        "waited_s": round(time.monotonic() - started, 1),
        "load_at_start": now,
        "busy_cores_10s_before": round(busy, 2),
        "quiet": now[0] < max_load and busy < max_busy,
        "max_load": max_load,
        "max_busy": max_busy,
    }


def timed(cmd: list, env: dict, log_path: Path) -> dict:
    """One process under ``/usr/bin/time -v``: wall seconds, its peak RSS (largest single process) and the
    peak summed PSS of the process tree (sampled every 0.2 s; PSS shares pages between the processes that
    map them, so forked workers are not counted twice)."""
    import psutil

    time_file = log_path.with_suffix(".time")
    full = ["/usr/bin/time", "-v", "-o", str(time_file), *[str(c) for c in cmd]]
    log("+ " + " ".join(str(c) for c in cmd))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    peak_tree = [0]
    tree_cpu: dict[int, float] = {}  # each process's own user + system seconds, last seen
    with open(log_path, "w", encoding="utf-8") as out:
        out.write("+ " + " ".join(str(c) for c in cmd) + "\n")
        out.flush()
        started, machine_before = time.perf_counter(), machine_cpu_seconds()
        proc = subprocess.Popen(full, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample():
            try:
                root = psutil.Process(proc.pid)
            except psutil.Error:
                return
            while not done.is_set():
                total = 0
                try:
                    for p in [root, *root.children(recursive=True)]:
                        try:
                            t = p.cpu_times()
                            tree_cpu[p.pid] = t.user + t.system
                            total += p.memory_full_info().pss
                        except (psutil.Error, AttributeError):
                            try:
                                total += p.memory_info().rss
                            except psutil.Error:
                                pass
                except psutil.Error:
                    pass
                peak_tree[0] = max(peak_tree[0], total)
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        seconds = time.perf_counter() - started
        machine_cpu = machine_cpu_seconds() - machine_before
        done.set()
        sampler.join()
    text = time_file.read_text(encoding="utf-8", errors="replace") if time_file.exists() else ""
    if rc:
        print(log_path.read_text(encoding="utf-8", errors="replace")[-6000:], file=sys.stderr)
        raise SystemExit(f"failed ({rc}) after {seconds:.0f} s: see {log_path}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    elapsed = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    log(f"  {seconds:.1f} s")
    result = {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(int(rss.group(1)) / 1024, 1) if rss else None,
        "peak_tree_pss_mb": round(peak_tree[0] / 2**20, 1),
        "time_v_elapsed": elapsed.group(1) if elapsed else None,
    }
    for key, pattern in (
        ("user_s", r"User time \(seconds\): ([\d.]+)"),
        ("system_s", r"System time \(seconds\): ([\d.]+)"),
        ("cpu_percent", r"Percent of CPU this job got: (\d+)%"),
    ):
        found = re.search(pattern, text)
        result[key] = float(found.group(1)) if found else None
    # what the rest of the machine used meanwhile: every process's CPU time less this run's own. The run's own
    # is the larger of /usr/bin/time's (its waited-for processes) and the sampled sum over its process tree
    # (which also sees workers that are not waited for, less their last 0.2 s)
    own = max((result["user_s"] or 0.0) + (result["system_s"] or 0.0), sum(tree_cpu.values()))
    result.update(
        machine_cpu_s=round(machine_cpu, 1),
        run_cpu_s=round(own, 1),
        tree_cpu_sampled_s=round(sum(tree_cpu.values()), 1),
        others_cores_during=round(max(0.0, machine_cpu - own) / seconds, 2),
    )
    return result
