"""Paired comparisons for the report: RSR and McNemar of each realigned-like model against pruned.

The models of a run answer the same harmful prompts, so their per-prompt verdicts are read back
from each evaluation folder's ``generations_harmful.jsonl`` and compared prompt by prompt
(:mod:`hsr.evaluation.paired`). That is only valid if every model answered the same prompts in
the same order; otherwise the summary says why paired statistics are unavailable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..evaluation.evaluate import HARMFUL_FILE
from ..evaluation.paired import paired_difference, restoration_rate_interval
from ..evaluation.refusal import COMPLIED

DENSE, PRUNED = "dense", "pruned"
#: Models that are not compared against pruned (base = the input model before an align stage).
NOT_COMPARED = (DENSE, PRUNED, "base")


def read_harmful(eval_dir: str | Path) -> list[dict[str, Any]] | None:
    """Rows of ``generations_harmful.jsonl`` in ``eval_dir`` (None if the file is absent or unreadable)."""
    path = Path(eval_dir) / HARMFUL_FILE
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None


def attack_success(row: dict[str, Any]) -> bool:
    """A row's attack success: its ``verdict`` when present, else the older boolean field."""
    if "verdict" in row:
        return row["verdict"] == COMPLIED
    return bool(row.get("attack_success"))


def _key(row: dict[str, Any]) -> tuple[Any, Any]:
    return row.get("prompt"), row.get("image")


def _rows_of(entry: dict[str, Any]) -> list[dict[str, Any]] | None:
    if entry.get("harmful_rows") is not None:
        return entry["harmful_rows"]
    return read_harmful(entry["eval_dir"]) if entry.get("eval_dir") else None


def paired_summary(entries: Sequence[dict[str, Any]], *, n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """``{"available": bool, "reason": str | None, "pruning": ..., "comparisons": [...]}`` for the report.

    ``pruning`` = ASR_pruned - ASR_dense (paired, with McNemar p), available whenever both were evaluated.
    Each comparison (one per model other than dense and pruned) holds the model's ``label``, its
    ``rsr`` (:func:`~hsr.evaluation.paired.restoration_rate_interval`) and ``difference`` =
    ASR_model - ASR_pruned (:func:`~hsr.evaluation.paired.paired_difference`, with McNemar p).
    """
    by_label = {e["label"]: e for e in entries}
    others = [e["label"] for e in entries if e["label"] not in NOT_COMPARED]
    if DENSE not in by_label or PRUNED not in by_label:
        return {"available": False, "reason": "needs a dense and a pruned model", "comparisons": []}
    rows = {label: _rows_of(by_label[label]) for label in (DENSE, PRUNED, *others)}
    missing = [label for label, r in rows.items() if not r]
    if missing:
        return {"available": False, "reason": f"no per-prompt verdicts ({HARMFUL_FILE}) for {', '.join(missing)}",
                "comparisons": []}
    reference = [_key(r) for r in rows[PRUNED]]
    differ = [label for label, r in rows.items() if [_key(x) for x in r] != reference]
    if differ:
        return {"available": False, "comparisons": [],
                "reason": f"{', '.join(differ)} did not answer the same prompts in the same order as pruned"}
    success = {label: [attack_success(x) for x in r] for label, r in rows.items()}
    comparisons = [
        {
            "label": label,
            "rsr": restoration_rate_interval(success[DENSE], success[PRUNED], success[label], n_boot=n_boot, seed=seed),
            "difference": paired_difference(success[PRUNED], success[label], n_boot=n_boot, seed=seed),
        }
        for label in others
    ]
    dense_vs_pruned = paired_difference(success[DENSE], success[PRUNED], n_boot=n_boot, seed=seed)
    return {"available": True, "reason": None, "n": len(reference), "pruning": dense_vs_pruned, "comparisons": comparisons}
