"""Renderers of docs/distributed.md: DDP throughput."""

from __future__ import annotations

from doc_pages.sources import _machine_value, f2, result, source, times


def ddp_throughput() -> str:
    d = result("ddp_throughput")
    one, two = sorted(d["rows"], key=lambda r: r["nproc"])[:2]
    return (
        f"Measured: {f2(one['samples_per_second'])} samples/s with {one['nproc']} process and"
        f" {f2(two['samples_per_second'])} with {two['nproc']} processes sharing the same"
        f" {_machine_value(d, 'cores', 'cpu_count')} cores, {times(two['speedup'])}. " + source("ddp_throughput")
    )
