"""Renderers of docs/slicer.md and its README row: ``volseg serve`` against a fresh ``volseg infer`` process."""

from __future__ import annotations

import statistics

from doc_pages.sources import result, source, table


def serve_latency() -> str:
    data = result("serve_latency")
    rows = []
    for case in data["cases"]:
        served, fresh = case["server"], case["fresh"]
        later = served["requests"][1:] or served["requests"]
        rows.append(
            [
                case["case"],
                case["model"],
                f"{served['median_seconds']:.2f} s",
                f"{statistics.median(r['read_predict'] for r in later):.2f} s",
                f"{served['median_overhead']:.3f} s (goal <= {case['overhead_goal']:g})",
                f"{fresh['median_seconds']:.1f} s",
                f"{case['speed_up']:.1f}x",
                f"{served['peak_rss_mb']} / {fresh['peak_rss_mb']} MB",
                f"{served['startup_seconds']:.1f} s",
                "met" if case["met"] else "not met",
            ]
        )
    header = [
        "case",
        "model",
        "warm request",
        "its read + predict",
        "overhead",
        "fresh process",
        "speed-up",
        "peak RSS server / fresh",
        "server start-up",
        "goal",
    ]
    return (
        "Warm request: the median of requests 2.. of one image (the Slicer module's client, a uint8 NRRD back); "
        "read + predict: the server's own seconds for what `volseg infer` does per case; overhead: the rest "
        "(HTTP, queue, the label file written and parsed). Fresh process: `volseg infer FILE --model M`, whole "
        f"process, median of {len(data['cases'][0]['fresh']['seconds'])}. Goals: overhead <= 0.3 s (hippocampus) "
        f"and <= 1 s (CT); the hippocampus request >= {data['goals']['hippocampus_speed_up']:g}x faster than the "
        "fresh process.\n\n"
        + table(header, rows)
        + f"\n\nThe whole run took {data['wall_seconds'] / 60:.1f} min. "
        + source("serve_latency")
    )


def readme_row() -> list[str]:
    """The README's results row."""
    cases = result("serve_latency")["cases"]
    first = cases[0]
    ct = [c["server"]["median_overhead"] for c in cases if "CT" in c["case"]]
    return [
        "`volseg serve` for 3D Slicer (MONAI Label's protocol), models warm, vs a fresh `volseg infer` process",
        f"hippocampus request **{first['server']['median_seconds']:.2f} s** vs {first['fresh']['median_seconds']:.1f}"
        f" s ({first['speed_up']:.0f}x); server overhead {first['server']['median_overhead']:.3f} s"
        + (f", at most {max(ct):.2f} s on a CT" if ct else ""),
        "[Slicer](docs/slicer.md)",
    ]
