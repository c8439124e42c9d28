"""Renderers of docs/gpu.md: the GPU check's results (or the CPU reference alone, until a GPU has run it) and
what a call to a GPU machine carries."""

from __future__ import annotations

from doc_pages.sources import RESULTS, result, source, table


def gpu_check() -> str:
    cpu = result("gpu_check_cpu")
    gpu = result("gpu_check") if (RESULTS / "gpu_check.json").exists() else None
    if gpu is None:
        opening = (
            "No GPU has run the check yet: every machine of this project so far had none, and no GPU machine "
            "has been lent to a session since the check was written. Below, the CPU reference a GPU run is "
            "compared with."
        )
    else:
        d = gpu["device"]
        opening = (
            f"{d['gpu']} ({d['gpu_memory_gib']} GiB, driver {d['driver']}, compute capability {d['capability']}), "
            f"torch {d['torch']}, CUDA {d['cuda']}, cuDNN {d['cudnn']}; the whole check took {gpu['wall_s']:.0f} s."
        )
    rows = []
    for name, run in cpu["train"].items():
        on_gpu = gpu["train"][name] if gpu else {}
        speed_up = f"{on_gpu['steps_per_second'] / run['steps_per_second']:.1f}x" if on_gpu else "—"
        rows.append(
            [
                name,
                f"{run['steps_per_second']:.2f}",
                f"{on_gpu['steps_per_second']:.2f}" if on_gpu else "—",
                speed_up,
                f"{on_gpu['peak_gpu_memory_mb']:.0f}" if on_gpu else "—",
                f"{run['val_dice']:.3f} / " + (f"{on_gpu['val_dice']:.3f}" if on_gpu else "—"),
            ]
        )
    header = ["`volseg train` (embedded data)", "CPU steps/s", "GPU steps/s", "GPU / CPU", "peak GPU MB"]
    training = table([*header, "last val Dice CPU / GPU"], rows)
    return opening + "\n\n" + training + "\n\n" + _inference(cpu, gpu) + "\n\n" + source(*_sources(gpu))


def _inference(cpu: dict, gpu: dict | None) -> str:
    rows = []
    for name, run in cpu["infer"].items():
        on_gpu = gpu["infer"][name] if gpu else None
        agreement = ", ".join(f"{k}: {v:.4f}" for k, v in on_gpu["lowest_dice_per_label"].items()) if on_gpu else "—"
        rows.append(
            [
                name,
                str(run["cases"]),
                f"{run['median_case_s']:.2f}",
                f"{on_gpu['median_case_s']:.2f} (first {on_gpu['first_case_s']:.2f})" if on_gpu else "—",
                agreement,
            ]
        )
    header = ["`volseg infer`", "cases", "CPU s/case", "GPU s/case", "lowest Dice per label, GPU vs CPU"]
    windows = [
        f"CPU {cpu['sliding_window']['windows_per_second']:.1f}",
        f"GPU {gpu['sliding_window']['windows_per_second']:.1f}" if gpu else "GPU —",
    ]
    grid = "x".join(map(str, cpu["sliding_window"]["grid"]))
    return (
        table(header, rows)
        + f"\n\nSliding window, a pancreas-size CT on the abdomen-ct model's {grid} grid: windows/s "
        + ", ".join(windows)
        + "."
    )


def _sources(gpu: dict | None) -> list[str]:
    return ["gpu_check_cpu", "gpu_check"] if gpu else ["gpu_check_cpu"]


def gpu_carry() -> str:
    carry = result("gpu_carry")
    rows = [["the working tree", f"{carry['tree_mib']:.1f}"]]
    rows += [[name.split("-")[0], f"{mib:.2f}"] for name, mib in carry["wheels_mib"].items()]
    rows.append([f"**all** (a call carries at most {carry['limit_mib']} MiB)", f"**{carry['total_mib']:.1f}**"])
    return table(["what travels", "MiB"], rows) + "\n\n" + source("gpu_carry")
