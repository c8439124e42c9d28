"""Renderers of docs/models.md: the model comparison's summary."""

from __future__ import annotations

from doc_pages.sources import f4, studies


def comparison_summary() -> str:
    lines = []
    for name, rows in studies().items():
        best = ", ".join(f"{e['mode']} {e['model']} {f4(e['dice'])}" for e in rows[:3])
        worst = rows[-1]
        lines.append(
            f"- **{name}**: best {best}; last {worst['mode']} {worst['model']} {f4(worst['dice'])}"
            f" (mean of {worst['seeds']} seeds, test Dice on the 10 held-out cases)."
        )
    return "\n".join(lines) + "\n\nSource: `docs/comparison.csv`, every run of both studies."
