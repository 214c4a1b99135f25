"""Formatting of results: the comparison table (plain-text/markdown) and its cells."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..evaluation.metrics import restoration_rate

COLUMNS = ("model", "ASR [95% CI]", "over-refusal [95% CI]", "perplexity", "MCQ acc. [95% CI]", "restored params")


def fmt_rate(r: dict[str, Any] | None) -> str:
    if not r:
        return "n/a"
    return f"{100 * r['value']:.1f}% [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] ({r['k']}/{r['n']})"


def fmt_ppl(p: float | None) -> str:
    return "n/a" if p is None or not math.isfinite(p) else f"{p:.2f}"


def fmt_restored(summary: dict[str, Any] | None) -> str:
    if not summary or "restored_params" not in summary:
        return "-"
    count = int(summary["restored_params"])
    frac = summary.get("restored_fraction")
    return f"{count:,} ({1e4 * frac:.3f} per 10k)" if frac is not None else f"{count:,}"


def table_rows(entries: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for e in entries:
        m = e.get("metrics") or {}
        rows.append(
            [
                str(e["label"]),
                fmt_rate(m.get("asr")),
                fmt_rate(m.get("over_refusal")),
                fmt_ppl(m.get("perplexity")),
                fmt_rate(m.get("mcq_accuracy")),
                fmt_restored(e.get("realign_summary")),
            ]
        )
    return rows


def results_table(entries: Sequence[dict[str, Any]]) -> str:
    """A markdown table (readable as plain text): model | ASR [CI] | over-refusal | perplexity | MCQ | restored."""
    rows = table_rows(entries)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    rsr = rsr_line(entries)
    if rsr:
        out.append("")
        out.append(rsr)
    return "\n".join(out)


def rsr_line(entries: Sequence[dict[str, Any]]) -> str | None:
    """Restoration rate of each realigned-like model against dense and pruned (DESIGN.md 1.4)."""
    asr = {e["label"]: (e.get("metrics") or {}).get("asr") for e in entries}
    if not asr.get("dense") or not asr.get("pruned"):
        return None
    parts = []
    for label in asr:
        if label in ("dense", "pruned") or not asr[label]:
            continue
        rsr = restoration_rate(asr["dense"]["value"], asr["pruned"]["value"], asr[label]["value"])
        parts.append(f"{label} {'undefined (pruned ASR = dense ASR)' if rsr is None else f'{100 * rsr:.1f}%'}")
    if not parts:
        return None
    return "Restoration rate RSR = (ASR_pruned - ASR_model) / (ASR_pruned - ASR_dense): " + "; ".join(parts)
