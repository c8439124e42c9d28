"""Renderers of docs/nnunet.md: parity with nnU-Net and TotalSegmentator, speed, engines, int8 variants."""

from __future__ import annotations

from doc_pages.sources import GOAL_NNUNET_SPEED, INT8_AUTO_BAR, f2, f4, result, source, table, times


def nnunet_parity() -> str:
    d = result("nnunet_parity")
    rows = d["rows"]
    identical = sum(1 for r in rows if r["differ"] == 0)
    torch_rows = [r for r in rows if r["backend"] == "torch"]
    torch_same = sum(1 for r in torch_rows if r["differ"] == 0)
    return (
        f"`benchmarks/nnunet_parity.py` compares every `nnUNetv2_predict` run it recorded (TTA on and off, one and"
        f" two folds): [{identical} of {len(rows)} case runs identical voxel for voxel, worst Dice"
        f" {f4(d['worst_dice'])}](../benchmarks/results/nnunet_parity.md) (torch identical in {torch_same} of"
        f" {len(torch_rows)}). " + source("nnunet_parity")
    )


def totalseg_parity() -> str:
    d = result("totalseg_parity")
    rows = d["rows"]
    identical = sum(1 for r in rows if r["differ"] == 0)
    names = d["naming"]
    agree = all(not v["mismatched"] and v["volseg_labels"] == v["totalsegmentator_labels"] for v in names.values())
    count = max(v["volseg_labels"] for v in names.values())
    return (
        f"`benchmarks/totalseg_parity.py` runs TotalSegmentator {d['versions']['TotalSegmentator']} itself and"
        " volseg on the bundled CT, a reoriented copy and an anisotropic crop: [label maps identical voxel for"
        f" voxel in {identical} of {len(rows)} runs"
        + (f", the same {count} names and numbers" if agree else "")
        + "](../benchmarks/results/totalseg_parity.md). "
        + source("totalseg_parity")
    )


def nnunet_speed() -> str:
    d = result("nnunet_models")
    rows = []
    for r in d["rows"]:
        rec = r["record"]
        own = r.get("nnunet_seconds")
        # same setting; the defaults row against nnU-Net's default (mirroring on) where that ran
        speedup = "" if rec["tool"] == "nnunet" or not own else times(own / rec["seconds"])
        rows.append(
            [
                rec["ct"],
                rec["setting"],
                "nnUNetv2_predict" if rec["tool"] == "nnunet" else f"volseg {rec['engine']}",
                f"{rec['seconds']:.1f}",
                f"{rec['peak_rss_mb']:.0f}",
                speedup,
            ]
        )
    cts = ", ".join(f"{k} {'x'.join(map(str, v['size']))}" for k, v in d["cts"].items() if v)
    best: dict[str, dict[str, tuple]] = {}  # kind -> CT -> (speed-up, setting, agreement with fp32)
    for r in d["rows"]:
        rec = r["record"]
        if (
            rec["ct"] in d["cts"]
            and rec["tool"] == "volseg"
            and rec["setting"] in ("tta_off", "tta_on")
            and r.get("nnunet_seconds")
        ):
            kind = rec["engine"].split()[-1]
            speedup = r["nnunet_seconds"] / rec["seconds"]
            if speedup > best.get(kind, {}).get(rec["ct"], (0.0,))[0]:
                setting = rec["setting"]
                agreement = (
                    d["comparisons"]
                    .get(r.get("comparisons_key"), {})
                    .get(f"volseg_{kind}_{setting}_vs_volseg_fp32_{setting}")
                    if kind != "fp32"
                    else None
                )
                best.setdefault(kind, {})[rec["ct"]] = (speedup, setting.replace("_", " "), agreement)

    def verdict(kind: str, goal: float) -> str:
        """The goal judged on every CT, each at its best setting; int8 also needs its labels to agree."""
        parts, met = [], []
        for ct, (speedup, setting, agreement) in best[kind].items():
            mean = (agreement or {}).get("mean")
            if kind == "fp32":
                parts.append(f"{ct} {times(speedup)} ({setting})")
                ok = speedup >= goal
            else:
                labels = f"labels vs fp32 {f4(mean)}" if mean is not None else "no label found"
                parts.append(f"{ct} {times(speedup)} ({setting}; {labels})")
                ok = speedup >= goal and mean is not None and mean >= INT8_AUTO_BAR
            met += [ct] if ok else []
        if len(met) == len(parts):
            outcome = "met on every CT"
        else:
            outcome = f"met on {', '.join(met)} only" if met else "not met"
            outcome += " (the labels must also agree at 0.99)" if kind != "fp32" else ""
        return f"{goal:.0f}x with {kind}, best per CT: {', '.join(parts)}: {outcome}"

    goals = "; ".join(verdict(kind, goal) for kind, goal in GOAL_NNUNET_SPEED.items() if kind in best)
    hippocampus, agreement = d.get("hippocampus"), ""
    if hippocampus:
        cases = len(hippocampus["cases"])
        for row in rows:
            if row[0] == "hippocampus":
                row[0] = f"hippocampus ({cases} cases, one process)"
        model = next((m for m in d["models"].values() if m.get("kind") == "hippocampus"), {})
        training = model.get("training") or {}
        c = d["comparisons"].get(f"{model.get('dataset')}|hippocampus", {})
        found = [
            f"{setting.replace('_', ' ')} mean {f4(v['mean'])}, worst case {f4(v['case_mean_min'])}"
            for setting in ("tta_off", "tta_on")
            if (v := c.get(f"volseg_fp32_{setting}_vs_nnunet_{setting}")) and v.get("mean") is not None
        ]
        agreement = (
            f" A hippocampus `3d_fullres` model nnU-Net trained on volseg's split for {training.get('budget_minutes')}"
            f" min ({training.get('epochs')} epochs of {training.get('iterations_per_epoch')} iterations; val Dice"
            f" {f4(training['val_dice']) if training.get('val_dice') is not None else '?'}"
            f"{', barely trained too' if (training.get('val_dice') or 0) < 0.5 else ''}),"
            f" its {cases} held-out test MRIs given to each tool as one folder; volseg OpenVINO fp32 labels against"
            f" nnU-Net's, Dice per label over the cases: {'; '.join(found) or 'not run'}."
        )
    return (
        f"A 3 mm CT model nnU-Net itself trained (barely: its labels measure the tools' agreement, not a usable"
        f" model), whole case file to file, one process each, on a quiet machine; CTs: {cts}."
        + agreement
        + " Speed-up: nnU-Net's time in the same setting over volseg's (defaults: nnU-Net's default, mirroring on,"
        " over volseg's default). Label agreement per run and label:"
        " [`nnunet_models.md`](../benchmarks/results/nnunet_models.md).\n\n"
        + table(["input", "setting", "run", "s", "peak MB", "speed-up vs nnU-Net"], rows)
        + f"\n\nGoals on the CTs, nnU-Net's time over volseg's in the same TTA setting: {goals}. Not run yet: "
        + "; ".join(d.get("not_run", []))
        + ". "
        + source("nnunet_models")
    )


def nnunet_engines() -> str:
    """Per window on each engine, one whole case stage by stage, and the fp32 bound that follows."""
    d = result("nnunet_engines")
    rows = [
        [r["engine"], f"skipped: {r['skipped']}", "", ""]
        if "skipped" in r
        else [r["engine"], f2(r["window_s"]), f"{r['gflop']:.0f}", f"{r['gflop_per_s']:.0f}"]
        for r in d["engines"]
    ]
    cases = [
        [
            f"OpenVINO {r['precision']}",
            str(r["windows"]),
            *(f"{r['stages'][k]:.1f}" for k in ("read", "preprocess", "network", "export")),
            f"{r['total_s']:.1f}",
        ]
        for r in d["case_runs"]
        if "stages" in r
    ]
    text = (
        f"Where the time goes: one {'x'.join(map(str, d['patch']))} window of `{d['model']}` on each engine, and"
        f" the case `{d['case']}` through volseg in one process (start-up, model loading and writing excluded):\n\n"
        + table(["engine", "s per window", "GFLOP per window", "GFLOP/s"], rows)
        + "\n\n"
        + table(["run", "windows", "read s", "preprocess s", "network s", "export s", "total s"], cases)
    )
    fp32 = next((r for r in d["case_runs"] if r.get("precision") == "fp32" and "stages" in r), None)
    ct = d["case"].removesuffix(".nii.gz").removesuffix("_0000")
    own = d.get("nnunet_seconds") or next(
        (
            r["record"]["seconds"]
            for r in result("nnunet_models")["rows"]
            if r["record"]["ct"] == ct and r["record"]["run"] == "nnunet_tta_off"
        ),
        None,
    )
    if own and fp32:
        text += (
            f"\n\n`nnUNetv2_predict` takes {own:.1f} s on this case with TTA off; volseg's fp32 network alone takes"
            f" {fp32['stages']['network']:.1f} s of it, so an fp32 run can be at most"
            f" {times(own / fp32['stages']['network'])} faster than nnU-Net here, with everything but the network free."
        )
    return text + "\n\n" + source("nnunet_engines", "nnunet_models")


def nnunet_int8_variants() -> str:
    """The NNCF settings tried for nnU-Net int8 twins: worst label's Dice vs fp32 per CT, window time."""
    d = result("nnunet_int8_variants")
    cases = sorted({c for r in d["rows"] for c in r["cases"]})
    rows = [
        [
            r["calibration"],
            f"`{r['variant']}`",
            str(r["fp32_convolutions"]),
            f2(r["window_s"]),
            *(f4(min(r["cases"][c]["dice_vs_fp32"].values())) if c in r["cases"] else "—" for c in cases),
        ]
        for r in d["rows"]
    ]
    models = sorted({r["model"] for r in d["rows"]})
    return (
        f"NNCF settings for the int8 twin of `{', '.join(models)}`: each quantizes the model from the windows"
        " that the twin export cuts from the calibration scans; then each CT is segmented (TTA off) in fp32 and in"
        " int8, and the table gives the worst label's Dice of int8 against fp32"
        " ([`nnunet_int8_variants.md`](../benchmarks/results/nnunet_int8_variants.md) has every label):\n\n"
        + table(["calibration", "variant", "fp32 convolutions", "s per window", *cases], rows)
        + "\n\n"
        + source("nnunet_int8_variants")
    )
