"""Issue 43, acceptance 2: what a click in 3D Slicer costs through ``volseg serve`` (models warm) against a fresh
``volseg infer`` process on the same file and model.

    python benchmarks/serve_latency.py [--requests 4] [--fresh-runs 3] [--nnunet-model FOLDER]

Cases: a hippocampus MRI case (``data/hippocampus``, the built-in ``hippocampus-mri``), the bundled CT with
``abdomen-ct``, and the TCIA Philips planning CT (``../shared/data/tcia_pancreatic_ct_cbct_seg_cb001``, DICOM,
written once as NIfTI, as Slicer uploads it) with a 3 mm nnU-Net 3d_fullres model: ``--nnunet-model``, else the
model ``benchmarks/nnunet_models.py`` trains (``runs/nnunet_models/.../Dataset931_AbdomenCT3mm``) where present,
else a stand-in with that model's plan (3 mm, patch 112x112x128, PlainConvUNet 32-320, 4 labels) and seeded
weights: the seconds depend on the architecture and the scan, not on the weights. A case whose input is missing
is named and skipped.

Per case: one server (``volseg serve -m MODEL``, default engine choice) started, its start-up timed; the image
uploaded with the Slicer module's own client (``MONAILabelLib/client.py`` from the ``monailabel`` wheel) and
inferred ``--requests`` times (the first, then the median of the rest). Request seconds are the client's wall
clock; the server's own read + predict seconds come back in the answer's params; overhead = request - (read +
predict): HTTP, queue, the label file written and parsed. Peak RSS: the server's VmHWM after the requests, and
each fresh process's ru_maxrss (``os.wait4``). The fresh process runs ``--fresh-runs`` times (median). Goals:
overhead <= 0.3 s on the hippocampus case and <= 1 s on a CT; the hippocampus request >= 10x faster than the
fresh process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.nnunet_stand_in import PHILIPS, nnunet_model, philips_nifti  # noqa: E402
from benchmarks.record import provenance, timed_process, write  # noqa: E402

VOLSEG = Path(sys.executable).with_name("volseg")
GOALS = {"hippocampus": 0.3, "ct": 1.0}  # overhead seconds
SPEED_UP_GOAL = 10.0  # hippocampus: fresh process / warm request


def fresh_runs(model: str, image: Path, work: Path, runs: int) -> dict:
    results = [
        timed_process([str(VOLSEG), "infer", str(image), "--model", model, "-o", str(work / f"fresh{i}")])
        for i in range(runs)
    ]
    return {
        "seconds": [r["wall"] for r in results],
        "median_seconds": round(statistics.median(r["wall"] for r in results), 2),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
    }


def server_runs(model: str, image: Path, work: Path, requests_: int) -> dict:
    sys.path.insert(0, str(REPO))
    from tests import volseg_server

    started = time.perf_counter()
    server = volseg_server.start(work / "server", "-m", model, "--datastore", str(work / "store"))
    startup = time.perf_counter() - started
    try:
        client = volseg_server.slicer_client_module().MONAILabelClient(server.url, tmpdir=str(work))
        key = next(iter(client.info()["models"]))
        began = time.perf_counter()
        client.upload_image(str(image), "case")
        upload = time.perf_counter() - began
        rows = []
        for _ in range(requests_):
            began = time.perf_counter()
            file, params = client.infer(key, "case", {"result_extension": ".nrrd", "result_dtype": "uint8"})
            wall = time.perf_counter() - began
            os.unlink(file)
            own = params["seconds"]["read"] + params["seconds"]["predict"]
            rows.append({"seconds": round(wall, 3), "read_predict": round(own, 3), "overhead": round(wall - own, 3)})
        hwm = next(
            line
            for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines()
            if line.startswith("VmHWM")
        )
    finally:
        server.stop()
    later = rows[1:] or rows
    return {
        "startup_seconds": round(startup, 2),
        "upload_seconds": round(upload, 3),
        "requests": rows,
        "median_seconds": round(statistics.median(r["seconds"] for r in later), 3),
        "median_overhead": round(statistics.median(r["overhead"] for r in later), 3),
        "peak_rss_mb": round(int(hwm.split()[1]) / 1024),
    }


def cases(work: Path, nnunet: Path | None) -> list[dict]:
    model, source = nnunet_model(nnunet, work)
    philips = philips_nifti(work)
    found = [
        {
            "case": "hippocampus MRI (hippocampus_001)",
            "kind": "hippocampus",
            "model": "hippocampus-mri",
            "image": REPO / "data/hippocampus/imagesTr/hippocampus_001.nii.gz",
        },
        {"case": "bundled CT (3 mm)", "kind": "ct", "model": "abdomen-ct", "image": REPO / "data/abdomen_ct/ct.nii.gz"},
    ]
    if philips is None:
        print(f"skipped: the Philips CT ({PHILIPS} not found)")
    else:
        found.append(
            {
                "case": "Philips planning CT (512x512x79)",
                "kind": "ct",
                "model": str(model),
                "image": philips,
                "model_source": source,
            }
        )
    return found


def measure(case: dict, work: Path, args) -> dict:
    print(f"{case['case']}: server", flush=True)
    served = server_runs(case["model"], case["image"], work / "serve", args.requests)
    print(f"{case['case']}: fresh processes", flush=True)
    fresh = fresh_runs(case["model"], case["image"], work / "fresh", args.fresh_runs)
    speed_up = fresh["median_seconds"] / served["median_seconds"]
    met = served["median_overhead"] <= GOALS[case["kind"]] and (
        case["kind"] != "hippocampus" or speed_up >= SPEED_UP_GOAL
    )
    model = case["model"] if "model_source" not in case else f"3 mm nnU-Net ({case['model_source']})"
    return {
        "case": case["case"],
        "model": model,
        "server": served,
        "fresh": fresh,
        "speed_up": round(speed_up, 1),
        "overhead_goal": GOALS[case["kind"]],
        "met": met,
    }


def markdown(rows: list[dict], args) -> list[str]:
    lines = [
        "# `volseg serve` (warm) vs a fresh `volseg infer` process, per request",
        "",
        "Request: the Slicer module's own client (`MONAILabelLib/client.py`) sending `POST /infer/{model}` for an "
        "image uploaded once, answered with a uint8 NRRD; its wall clock, the median of requests 2.."
        f"{args.requests}. Read + predict: the server's own seconds for the work `volseg infer` does per case. "
        "Overhead: request - (read + predict). Fresh: `volseg infer FILE --model M -o DIR`, whole process "
        f"(start-up, model loading, the case, writing), median of {args.fresh_runs}. Peak RSS: the server's "
        "VmHWM after its requests; the fresh process's ru_maxrss.",
        "",
        "| case | model | request (s) | read + predict (s) | overhead (s) | goal | first request (s) | upload (s) | "
        "server start-up (s) | server peak RSS (MB) | fresh process (s) | fresh peak RSS (MB) | speed-up | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, f = r["server"], r["fresh"]
        lines.append(
            f"| {r['case']} | {r['model']} | {s['median_seconds']} | "
            f"{statistics.median(x['read_predict'] for x in s['requests'][1:] or s['requests']):.3f} | "
            f"{s['median_overhead']} | <= {r['overhead_goal']} | {s['requests'][0]['seconds']} | "
            f"{s['upload_seconds']} | {s['startup_seconds']} | {s['peak_rss_mb']} | {f['median_seconds']} | "
            f"{f['peak_rss_mb']} | {r['speed_up']}x | {'yes' if r['met'] else 'no'} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--fresh-runs", type=int, default=3)
    parser.add_argument("--nnunet-model", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    made = provenance(__file__)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="serve-latency-") as tmp:
        work = Path(tmp)
        rows = [measure(case, work / str(i), args) for i, case in enumerate(cases(work, args.nnunet_model))]
    result = {
        "goals": {"overhead_seconds": GOALS, "hippocampus_speed_up": SPEED_UP_GOAL},
        "cases": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(write(args.out, "serve_latency", result, markdown(rows, args), made))


if __name__ == "__main__":
    main()
