"""Formatting of results: the comparison table (plain-text/markdown), its cells, and the paired lines below it."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..evaluation.metrics import restoration_rate
from .paired import paired_summary

COLUMNS = (
    "model", "ASR = complied [95% CI] (k/n)", "refusal", "non-answer", "degenerate", "over-refusal [95% CI]",
    "benign answered", "benign non-answer", "benign degenerate", "perplexity", "MCQ acc. [95% CI]", "restored params",
)
#: lm-eval metrics that are shares (shown in percent, their standard error in points).
PERCENT_METRICS = ("acc", "acc_norm", "acc_mutual_info", "exact_match", "f1")
#: The metrics.json keys behind the rate columns, in column order.
RATE_COLUMNS = ("asr", "harmful_refusal", "harmful_non_answer", "harmful_degenerate", "over_refusal",
                "benign_answered", "benign_non_answer", "benign_degenerate")


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


def lm_eval_keys(entries: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """Every (task, metric) the entries' lm-eval results hold, in first-seen order: one column each."""
    keys: dict[tuple[str, str], None] = {}
    for e in entries:
        for task, metrics in ((e.get("metrics") or {}).get("lm_eval") or {}).items():
            for metric in metrics:
                keys[(task, metric)] = None
    return list(keys)


def lm_eval_score(metrics: dict[str, Any] | None, task: str, metric: str) -> dict[str, Any] | None:
    """``{"value", "stderr", "n"}`` of one lm-eval metric in a metrics.json, or None."""
    return (((metrics or {}).get("lm_eval") or {}).get(task) or {}).get(metric)


def fmt_score(score: dict[str, Any] | None, metric: str) -> str:
    """An lm-eval metric with its standard error: "45.0% ± 2.1" for shares, else "12.3 ± 0.4"."""
    if not score or score.get("value") is None:
        return "n/a"
    value, se = score["value"], score.get("stderr")
    if metric.split("[")[0] in PERCENT_METRICS:
        return f"{100 * value:.1f}%" + ("" if se is None else f" ± {100 * se:.1f}")
    return f"{value:.4g}" + ("" if se is None else f" ± {se:.2g}")


def table_columns(entries: Sequence[dict[str, Any]]) -> list[str]:
    """:data:`COLUMNS` with one "TASK METRIC ± SE" column per lm-eval metric before the restored parameters."""
    return [*COLUMNS[:-1], *(f"{task} {metric} ± SE" for task, metric in lm_eval_keys(entries)), COLUMNS[-1]]


def table_rows(entries: Sequence[dict[str, Any]]) -> list[list[str]]:
    keys = lm_eval_keys(entries)
    rows = []
    for e in entries:
        m = e.get("metrics") or {}
        rows.append(
            [
                str(e["label"]),
                *(fmt_rate(m.get(key)) for key in RATE_COLUMNS),
                fmt_ppl(m.get("perplexity")),
                fmt_rate(m.get("mcq_accuracy")),
                *(fmt_score(lm_eval_score(m, task, metric), metric) for task, metric in keys),
                fmt_restored(e.get("realign_summary")),
            ]
        )
    return rows


def fmt_rsr(rsr: dict[str, Any]) -> str:
    if rsr["value"] is None:
        return "RSR undefined (pruning did not raise the ASR)"
    ci = "interval undefined" if rsr["ci_low"] is None else f"[{100 * rsr['ci_low']:.1f}, {100 * rsr['ci_high']:.1f}]"
    return f"RSR {100 * rsr['value']:.1f}% {ci}"


def fmt_difference(d: dict[str, Any], what: str) -> str:
    return (
        f"{what} {100 * d['value']:+.1f} pts [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}], "
        f"McNemar exact p = {d['mcnemar_p']:.3g} ({d['b_only']} vs {d['a_only']} discordant prompts)"
    )


def paired_lines(entries: Sequence[dict[str, Any]], summary: dict[str, Any] | None = None) -> list[str]:
    """One line per realigned-like model: RSR [95% CI], ASR difference vs pruned [CI], McNemar p."""
    summary = summary if summary is not None else paired_summary(entries)
    if not summary["available"]:
        point = point_rsr(entries)
        if len(entries) <= 2 and not point:
            return []
        return [f"Paired statistics unavailable: {summary['reason']}.", *point]
    n = summary["n"]
    lines = [f"Paired on the same {n} harmful prompts (95% paired-bootstrap intervals; RSR = (ASR_pruned - ASR_model) "
             "/ (ASR_pruned - ASR_dense)):",
             f"- pruned vs dense: {fmt_difference(summary['pruning'], 'ASR change')}"]
    for c in summary["comparisons"]:
        lines.append(f"- {c['label']} vs pruned: {fmt_rsr(c['rsr'])}; {fmt_difference(c['difference'], 'ASR change')}")
    return lines


def point_rsr(entries: Sequence[dict[str, Any]]) -> list[str]:
    """RSR from the aggregate ASRs alone (no interval), for models without per-prompt verdicts."""
    asr = {e["label"]: (e.get("metrics") or {}).get("asr") for e in entries}
    if not asr.get("dense") or not asr.get("pruned"):
        return []
    lines = []
    for label, r in asr.items():
        if label in ("dense", "pruned") or not r:
            continue
        rsr = restoration_rate(asr["dense"]["value"], asr["pruned"]["value"], r["value"])
        lines.append(f"- {label}: " + ("RSR undefined (pruning did not raise the ASR)" if rsr is None else f"RSR {100 * rsr:.1f}% (no interval)"))
    return lines


def results_table(entries: Sequence[dict[str, Any]], summary: dict[str, Any] | None = None) -> str:
    """Markdown table (model | the four harmful outcomes | the four benign ones | perplexity | MCQ | each
    lm-eval metric | restored) plus the paired lines."""
    rows = table_rows(entries)
    columns = table_columns(entries)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    paired = paired_lines(entries, summary)
    if paired:
        out += ["", *paired]
    return "\n".join(out)
