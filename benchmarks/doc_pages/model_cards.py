"""Renderers of volseg/pretrained/*/MODEL_CARD.md: the built-in models' cards."""

from __future__ import annotations

from doc_pages.sources import (
    GOAL_ABDOMEN_CT,
    INT8_AUTO_BAR,
    ORGAN,
    PRETRAINED,
    abdomen_ircadb,
    f3,
    f4,
    hippocampus,
    n,
    organs,
    pretrained_json,
    result,
    times,
    training_record,
)


def card_hippocampus() -> str:
    h = hippocampus()
    a = h["agreement"]
    hip = result("int8")["rows"][0]
    return "\n".join(
        [
            f"- **Parameters**: {n(h['parameters'])} (counted from `model.pt`).",
            f"- **Training time**: {h['minutes']:.0f} min of CPU training to the shipped epoch {h['epoch']} (its"
            " epochs' summed seconds, from the checkpoint's history; no GPU).",
            f"- **Validation** (44 cases, whole volumes, best epoch {h['epoch']}): mean Dice {f4(h['best_dice'])}"
            f" (anterior {f4(h['best_val']['anterior'])}, posterior {f4(h['best_val']['posterior'])}).",
            f"- **Test** (the {h['cases']} bundled test cases, never seen in training or model selection): Dice"
            f" anterior {f4(h['fp32']['anterior'])}, posterior {f4(h['fp32']['posterior'])}, mean"
            f" {f4(h['fp32_mean'])} (fp32, from `int8.json`).",
            f"- **INT8 twin** agreement on those cases: labels vs fp32 at Dice"
            f" {' / '.join(f4(v) for v in a['dice_vs_fp32_mean'].values())} mean,"
            f" {' / '.join(f4(v) for v in a['dice_vs_fp32_min'].values())} worst (anterior / posterior); Dice"
            f" against the manual labels {' / '.join(f4(v) for v in h['int8'].values())} (fp32"
            f" {' / '.join(f4(v) for v in h['fp32'].values())}). A {'x'.join(map(str, result('int8')['window']))}"
            f" window runs {times(hip['speedup_vs_fp32'], 1)} faster than OpenVINO fp32"
            f" ({hip['window_s'] * 1000:.0f} vs {result('int8')['fp32_window_s'] * 1000:.0f} ms,"
            " `benchmarks/results/int8.md`).",
        ]
    )


def card_abdomen() -> str:
    model = training_record(PRETRAINED / "abdomen-ct" / "model.pt")
    locator = training_record(PRETRAINED / "abdomen-ct" / "locator.pt")
    fp32, int8 = abdomen_ircadb("auto"), abdomen_ircadb("int8")
    a = pretrained_json("abdomen-ct", "int8.json")["agreement"]
    worst = a["dice_vs_fp32_min"]
    below = [ORGAN[k] for k in ORGAN if worst[k] < INT8_AUTO_BAR]
    ct = result("int8_abdomen_ct")
    base = next(r for r in ct["rows"] if r["keep_fp32"] == "none")
    met = [ORGAN[k] for k in ORGAN if fp32[k] >= GOAL_ABDOMEN_CT[k]]
    return "\n".join(
        [
            f"- **Parameters**: {n(model['parameters'])} (counted from `model.pt`).",
            f"- **Training time**: {model['minutes']:.0f} min of CPU training over {model['epochs']} epochs (the"
            " checkpoint's history); the learning rate ended at"
            f" {model['lr_end_share']:.0%} of its peak.",
            "- **Cross-source Dice** on 3D-IRCADb-01 patient 1, a contrast (venous) CT with **manual** masks, never"
            " seen in training, scored on its own grid with volseg's window-aligned body crop"
            " (`benchmarks/results/whole_volume_abdomen_ct.json`): "
            + ", ".join(f"{ORGAN[k]} **{f3(fp32[k])}**" for k in ORGAN)
            + f". The goals were {' / '.join(f'{v:.2f}' for v in GOAL_ABDOMEN_CT.values())}: met for "
            + (", ".join(met) if met else "no organ")
            + ".",
            "- **INT8 twin** (`int8.json`): labels vs fp32, Dice per organ, worst of the"
            f" {a['cases']} check CTs: " + ", ".join(f"{ORGAN[k]} {f3(worst[k])}" for k in ORGAN) + "; on IRCADb"
            f" against the manual masks int8 scores {organs(int8)} (fp32 {organs(fp32)}). "
            + (
                f"The {', '.join(below)} {'is' if len(below) == 1 else 'are'} below the {INT8_AUTO_BAR} agreement"
                " bar, so `--precision auto` keeps this model in fp32; `--precision int8` forces the twin"
                if below
                else "Every organ reaches the agreement bar, so `--precision auto` runs the twin"
            )
            + f" (window {'x'.join(map(str, ct['window']))}: {times(base['speedup_vs_fp32'], 1)} faster than"
            " OpenVINO fp32, `benchmarks/results/int8_abdomen_ct.md`).",
            f"- **Locator for `--roi`** (`locator.pt`): {n(locator['parameters'])} parameters, trained"
            f" {locator['minutes']:.0f} min ({locator['epochs']} epochs, its checkpoint's history).",
        ]
    )
