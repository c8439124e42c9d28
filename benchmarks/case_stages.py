"""Issue 45: where a CT case's seconds go, stage by stage, in a fresh process and in a warm one.

    python benchmarks/case_stages.py [--precisions auto bf16 int8] [--warm-cases 5] [--nnunet-model FOLDER]

Models: the 3 mm nnU-Net CT model of ``benchmarks/nnunet_stand_in.py`` (the trained one where present, else its
stand-in) and the built-in ``abdomen-ct`` (a volseg zoo model). CT: the TCIA Philips planning CT as NIfTI
(512x512x79; the bundled 3 mm CT where ../shared is absent).

Per model and ``--precisions`` entry (``auto`` is what a user gets):
- ``volseg infer CT --model M --precision P`` as a fresh process: wall, CPU (user + system) and peak RSS from
  its own rusage: what the user waits for;
- the same case in a fresh child process of this script, stage by stage: imports, opening the model, then read,
  preprocess, resample, network, logits back to the scan, argmax (for nnU-Net's default plans fused into
  logits back: ``linear_argmax``), the rest of the export, statistics and writing the label map. Each stage's
  wall and CPU seconds (CPU over every thread: the ratio tells how much of it ran on both cores) are exclusive: time spent in a nested stage (the resampling inside preprocessing)
  counts for that stage only, so the stages add up to the case;
- a warm process: the model opened once, then ``--warm-cases`` cases one after the other; each stage's median
  over cases 2.. (what each case costs once the model is open);
- ``volseg infer`` on a folder of ``--warm-cases`` copies of the CT (links, one case each), as a hospital batch
  runs: its pace per case is (its wall - the single-case process's wall) / (cases - 1), the batch runner
  reading the next case while the current one is predicted.
Goals (issue 45, int8 and bf16): the fresh process within 2.0x its own network seconds, a warm case within 1.4x.
The child measures by wrapping volseg's own functions (``--child``); nothing in volseg knows it is measured.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.nnunet_stand_in import nnunet_model, philips_nifti  # noqa: E402
from benchmarks.record import provenance, timed_process, write  # noqa: E402

VOLSEG = Path(sys.executable).with_name("volseg")
GOAL_FRESH, GOAL_WARM = 2.0, 1.4  # x the network's own seconds
STAGES = (
    "imports",
    "open model",
    "read",
    "preprocess",
    "resample",
    "network",
    "logits back",
    "argmax",
    "export",
    "statistics",
    "write",
)


class Stages:
    """Exclusive wall and CPU seconds per stage: a stage entered inside another is taken out of the outer one."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.stack: list[list] = []

    def enter(self, name: str) -> None:
        self.stack.append([name, time.perf_counter(), time.process_time(), 0.0, 0.0])

    def leave(self) -> None:
        name, wall0, cpu0, inner_wall, inner_cpu = self.stack.pop()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        self.wall[name] = self.wall.get(name, 0.0) + wall - inner_wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu - inner_cpu
        if self.stack:
            self.stack[-1][3] += wall
            self.stack[-1][4] += cpu

    def timed(self, name: str):
        stages = self

        class _Block:
            def __enter__(self):
                stages.enter(name)

            def __exit__(self, *exc):
                stages.leave()

        return _Block()

    def wrap(self, owner, attribute: str, name) -> None:
        """Time every call of ``owner.attribute`` as stage ``name`` (a callable: the name from the outer stage)."""
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self.enter(name(self.stack[-1][0] if self.stack else "") if callable(name) else name)
            try:
                return original(*args, **kwargs)
            finally:
                self.leave()

        setattr(owner, attribute, timed)

    def reset(self) -> None:
        self.wall, self.cpu = {}, {}


def instrument(stages: Stages) -> None:
    """Wrap the functions a case passes through, for both model families."""
    import volseg.data.transforms as transforms
    import volseg.inference.zoo_segmenter as zoo
    import volseg.nnunet.preprocess as nnunet_preprocess
    import volseg.nnunet.segmenter as nnunet

    stages.wrap(nnunet.NnunetSegmenter, "read", "read")
    stages.wrap(nnunet, "preprocess", "preprocess")
    stages.wrap(nnunet_preprocess, "resample", lambda outer: "resample" if outer == "preprocess" else "logits back")
    stages.wrap(nnunet, "predict_logits", "network")
    stages.wrap(nnunet, "logits_to_labels", "export")
    stages.wrap(nnunet_preprocess, "probabilities_to_labels", "argmax")
    stages.wrap(nnunet_preprocess, "linear_argmax", "logits back")  # nnU-Net's argmax runs inside it, fused
    stages.wrap(zoo.ZooSegmenter, "read", "read")
    stages.wrap(zoo, "predict_probabilities", "network")
    stages.wrap(transforms, "to_source_grid", "logits back")
    stages.wrap(zoo, "probabilities_to_labels", "argmax")


def child(model: str, image: Path, precision: str, cases: int) -> dict:
    """One process: the stages of its first case (with imports and opening), and of every case after it."""
    stages = Stages()
    with stages.timed("imports"):
        import numpy as np

        from volseg.data import io
        from volseg.inference.inputs import CaseInput
        from volseg.inference.label_statistics import label_statistics
        from volseg.inference.open_model import InferenceOptions, open_segmenter
        from volseg.runtime.huge_pages import use_plain_pages
    use_plain_pages()  # as the command line does
    instrument(stages)
    with stages.timed("open model"):
        segmenter = open_segmenter(model, InferenceOptions(precision=precision))
    per_case = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(cases):
            with stages.timed("preprocess"):  # what load does besides reading and resampling
                data = segmenter.load(CaseInput("ct", (image,)))
            with stages.timed("export"):  # what predict does besides the network, logits back and argmax
                labels, _ = segmenter.predict(data)
            with stages.timed("statistics"):
                source = data["source_image"]
                label_statistics(
                    labels,
                    np.asarray(source)[0],  # as the batch runner takes it (MONAI's .array would copy it)
                    source.affine,
                    segmenter.info.labels,
                )
            with stages.timed("write"):
                io.write_label(labels, data["image"], Path(tmp) / f"ct{n}_seg.nii.gz")
            per_case.append({"wall": dict(stages.wall), "cpu": dict(stages.cpu)})
            stages.reset()
    return {"engine": f"{segmenter.backend} {segmenter.precision}", "cases": per_case}


def run_child(model: str, image: Path, precision: str, cases: int) -> dict:
    command = [sys.executable, __file__, "--child", model, str(image), precision, str(cases)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"child failed: {done.stderr[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_process(model: str, image: Path, precision: str, out: Path) -> dict:
    """``volseg infer`` (a file or a folder) as a user runs it: wall, CPU and peak RSS from its own rusage."""
    return timed_process([str(VOLSEG), "infer", str(image), "--model", model, "--precision", precision, "-o", str(out)])


def batch_folder(image: Path, cases: int, work: Path) -> Path:
    """``cases`` links to the CT in one folder: a batch of that many cases."""
    folder = work / f"batch-of-{cases}"
    folder.mkdir(exist_ok=True)
    for n in range(cases):
        link = folder / f"ct{n}.nii.gz"
        if not link.exists():
            link.symlink_to(image)
    return folder


def summary(case: dict) -> dict:
    """Stage -> (wall, CPU) rounded, and the case's total."""
    stages = {s: [round(case["wall"].get(s, 0.0), 3), round(case["cpu"].get(s, 0.0), 3)] for s in STAGES}
    return {"stages": stages, "total": round(sum(w for w, _ in stages.values()), 2)}


def measure(name: str, model: str, image: Path, precision: str, args, work: Path) -> dict:
    print(f"{name} {precision}: fresh process, its stages, a warm batch of {args.warm_cases}", flush=True)
    fresh = fresh_process(model, image, precision, work / f"out-{name}-{precision}")
    batch = fresh_process(
        model, batch_folder(image, args.warm_cases, work), precision, work / f"batch-{name}-{precision}"
    )
    pace = round((batch["wall"] - fresh["wall"]) / (args.warm_cases - 1), 2)
    first = run_child(model, image, precision, 1)
    warm = run_child(model, image, precision, args.warm_cases)
    later = [summary(c) for c in warm["cases"][1:]] or [summary(warm["cases"][0])]
    steady = {s: [round(statistics.median(c["stages"][s][i] for c in later), 3) for i in (0, 1)] for s in STAGES}
    steady_total = round(sum(w for w, _ in steady.values()), 2)
    cold = summary(first["cases"][0])
    network = cold["stages"]["network"][0]
    warm_network = steady["network"][0]
    return {
        "model": name,
        "precision": precision,
        "engine": first["engine"],
        "fresh_process": fresh,
        "batch_process": {**batch, "cases": args.warm_cases, "seconds_per_case": pace},
        "fresh_stages": cold,
        "warm_stages": {"stages": steady, "total": steady_total},
        "fresh_over_network": round(fresh["wall"] / network, 2) if network else None,
        "warm_over_network": round(steady_total / warm_network, 2) if warm_network else None,
        "batch_over_network": round(pace / warm_network, 2) if warm_network else None,
    }


def markdown(rows: list[dict], image_note: str) -> list[str]:
    header = "| model | engine | run | " + " | ".join(STAGES) + " | case | x network |"
    lines = [
        "# One CT case, stage by stage (wall s, CPU/wall in brackets where above 1.2)",
        "",
        f"CT: {image_note}. Fresh: the first case of a new process (imports and opening included). Warm: the "
        "median of cases 2.. of one process. Stages are exclusive (nested work counted once); nnU-Net's argmax runs "
        "inside its logits back (fused). `volseg infer` as a "
        "fresh process (whole command): the last column of the fresh row is its wall time over the network's.",
        "",
        header,
        "|" + "---|" * (len(STAGES) + 5),
    ]
    for r in rows:
        for run, block, ratio in (
            ("fresh", r["fresh_stages"], r["fresh_over_network"]),
            ("warm", r["warm_stages"], r["warm_over_network"]),
        ):
            cells = []
            for s in STAGES:
                wall, cpu = block["stages"][s]
                share = f" ({cpu / wall:.1f})" if wall > 0.05 and cpu / wall > 1.2 else ""
                cells.append(f"{wall:.2f}{share}" if wall else "—")
            lines.append(
                f"| {r['model']} | {r['engine']} | {run} | "
                + " | ".join(cells)
                + f" | {block['total']:.2f} | {ratio}x |"
            )
        f, b = r["fresh_process"], r["batch_process"]
        lines.append(
            f"| {r['model']} | {r['engine']} | `volseg infer` process | {f['wall']} s wall, {f['cpu']} s "
            f"CPU, {f['peak_rss_mb']} MB peak |" + " |" * (len(STAGES) + 1)
        )
        lines.append(
            f"| {r['model']} | {r['engine']} | `volseg infer` batch of {b['cases']} | {b['wall']} s wall: "
            f"{b['seconds_per_case']} s per case after the first, {r['batch_over_network']}x the network, "
            f"{b['peak_rss_mb']} MB peak |" + " |" * (len(STAGES) + 1)
        )
    return lines


def hash_seconds(folder: Path) -> float:
    """What opening the model paid on every run before the checkpoints' digests were cached: hashing them."""
    import hashlib

    started = time.perf_counter()
    for checkpoint in sorted(Path(folder).glob("fold_*/checkpoint_*.pth")):
        hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    return round(time.perf_counter() - started, 3)


def ensure_int8_twin(folder: Path, image: Path, work: Path) -> None:
    """The nnU-Net model's int8 twin in volseg's cache, made once by ``volseg export`` (calibrated and checked on
    the CT; 2.5 min on 2 cores) where there is none. A seeded stand-in's twin measures int8's speed only: its
    labels agree poorly with the stand-in's fp32 ones, which mean nothing either."""
    from volseg.nnunet.int8 import read_twin
    from volseg.nnunet.model_folder import ModelFolder

    if read_twin(ModelFolder.open(folder)) is not None:
        return
    (work / "calibration").mkdir(exist_ok=True)
    (work / "calibration" / image.name).symlink_to(image)
    (work / "check.csv").write_text(f"case_id,image,label,split\nct,{image},,val\n", encoding="utf-8")
    export = [str(VOLSEG), "export", str(folder), "--precision", "int8", "--calibration", str(work / "calibration")]
    timed_process([*export, "--check", str(work / "check.csv")])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, model, image, precision, cases = sys.argv
        print(json.dumps(child(model, Path(image), precision, int(cases))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=["auto", "bf16", "int8"])
    parser.add_argument("--warm-cases", type=int, default=5)
    parser.add_argument("--nnunet-model", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    made = provenance(__file__)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="case-stages-") as tmp:
        work = Path(tmp)
        image = philips_nifti(work)
        image_note = "the TCIA Philips planning CT (512x512x79, 1.07x1.07x3 mm)"
        if image is None:
            image, image_note = REPO / "data/abdomen_ct/ct.nii.gz", "the bundled CT (122x101x112, 3 mm)"
        nnunet, source = nnunet_model(args.nnunet_model, work)
        hashing = hash_seconds(nnunet)
        if "int8" in args.precisions:
            ensure_int8_twin(nnunet, image, work)
        models = {f"3 mm nnU-Net ({source})": str(nnunet), "abdomen-ct": "abdomen-ct"}
        rows = [measure(name, model, image, p, args, work) for name, model in models.items() for p in args.precisions]
    result = {
        "ct": image_note,
        "goals": {"fresh": GOAL_FRESH, "warm": GOAL_WARM},
        "rows": rows,
        "checkpoint_hash_seconds": hashing,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(write(args.out, "case_stages", result, markdown(rows, image_note), made))


if __name__ == "__main__":
    main()
