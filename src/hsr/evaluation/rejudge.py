"""Re-judge recorded generations with any judge, without generating again (``hsr judge``).

Inputs: an ``hsr evaluate`` folder (metrics.json + generations_*.jsonl), an ``hsr run`` / ``hsr sweep``
folder (every ``eval/<label>`` folder in it, sweep points included), or a JSONL of
``{"prompt", "output"[, "kind"]}`` rows (kind harmful or benign; ``default_kind`` when absent).

Nothing is changed in place: the re-judged copy goes to a new folder with the same layout (so
``hsr report OUT`` and ``hsr report OUT/eval/LABEL`` show it), each metrics.json keeping the
model's utility numbers and recording which judge and folder it was re-judged from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import HsrError
from ..io import read_json, read_json_checked, write_json
from .evaluate import BENIGN_FILE, HARMFUL_FILE, KIND_FIELDS, METRICS_FILE, judge_answers, verdict_columns
from .outcomes import BENIGN, HARMFUL, KINDS, RATE_KEYS

VERDICTS_FILE = "verdicts.jsonl"
FILES = {HARMFUL: HARMFUL_FILE, BENIGN: BENIGN_FILE}
#: metrics.json keys that belong to the judge and are recomputed.
JUDGE_KEYS = (*RATE_KEYS, "asr_unfiltered", "judge_unparsed")


class RejudgeError(HsrError, ValueError):
    """The input of ``hsr judge`` is not recorded generations."""


@dataclass
class Rejudged:
    """One re-judged folder (or JSONL): where it went and its new metrics."""

    source: Path
    out: Path
    label: str
    metrics: dict[str, Any]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """JSONL rows, each an object with string ``prompt`` and ``output`` (errors name the line)."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RejudgeError(f"{path}: cannot read ({exc}).") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise RejudgeError(f"{path}:{n}: not JSON ({exc}).") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not isinstance(row.get("output"), str):
            raise RejudgeError(f"{path}:{n}: each row needs string fields 'prompt' and 'output'.")
        rows.append(row)
    return rows


def eval_folders(root: Path) -> list[Path]:
    """The evaluation folders of an input: itself, or every ``eval/<label>`` of a run or sweep folder."""
    if (root / METRICS_FILE).is_file():
        return [root]
    found = sorted(p.parent for p in root.glob("eval/*/" + METRICS_FILE)) + sorted(
        p.parent for p in root.glob("*/eval/*/" + METRICS_FILE)
    )
    if not found:
        raise RejudgeError(
            f"{root} holds no recorded generations: expected an `hsr evaluate` folder (metrics.json), an `hsr run` "
            "folder (eval/<label>/) or a JSONL of prompt/output rows."
        )
    return found


def _rejudge_rows(judge: Any, kind: str, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    outputs = [r["output"] for r in rows]
    verdicts, metrics = judge_answers(judge, kind, [r["prompt"] for r in rows], outputs)
    column, event, _ = KIND_FIELDS[kind]
    extra = verdict_columns(judge, kind, outputs, verdicts)
    new_rows = []
    for i, row in enumerate(rows):
        new = {k: v for k, v in row.items() if k != "judge_raw"}
        new[column] = verdicts[i] == event
        new.update({key: values[i] for key, values in extra.items()})
        new_rows.append(new)
    return new_rows, metrics


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def rejudge_folder(judge: Any, source: Path, out: Path) -> Rejudged:
    """Re-judge one evaluation folder into ``out`` (created): generations and metrics.json."""
    old = read_json_checked(source / METRICS_FILE, RejudgeError, "metrics JSON")
    if not isinstance(old, dict):
        raise RejudgeError(f"{source / METRICS_FILE}: not a metrics.json written by `hsr evaluate`.")
    out.mkdir(parents=True, exist_ok=True)
    metrics = {k: v for k, v in old.items() if k not in JUDGE_KEYS}
    metrics.update({key: None for key in RATE_KEYS})
    for kind in KINDS:
        path = source / FILES[kind]
        if not path.is_file():
            continue
        rows, rates = _rejudge_rows(judge, kind, read_rows(path))
        _write_rows(out / FILES[kind], rows)
        metrics.update(rates)
    metrics["judge"] = judge.name
    metrics["rejudged_from"] = {"judge": old.get("judge"), "folder": str(source.resolve())}
    write_json(out / METRICS_FILE, metrics)
    return Rejudged(source, out, str(old.get("model") or source.name), metrics)


def rejudge_jsonl(judge: Any, source: Path, out: Path, default_kind: str = HARMFUL) -> Rejudged:
    """Re-judge a JSONL of prompt/output rows into ``out``/verdicts.jsonl and metrics.json (rates per kind)."""
    rows = read_rows(source)
    if not rows:
        raise RejudgeError(f"{source}: no rows.")
    by_kind: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        kind = row.get("kind", default_kind)
        if kind not in KINDS:
            raise RejudgeError(f"{source}: row {i + 1} has kind {kind!r}; use {' or '.join(KINDS)}.")
        by_kind.setdefault(kind, []).append(i)
    out.mkdir(parents=True, exist_ok=True)
    merged: list[dict[str, Any]] = [{} for _ in rows]
    metrics: dict[str, Any] = {"model": source.stem, "path": str(source.resolve()), "judge": judge.name,
                               **{key: None for key in RATE_KEYS}}
    for kind, idx in by_kind.items():
        judged, rates = _rejudge_rows(judge, kind, [rows[i] for i in idx])
        for i, row in zip(idx, judged):
            merged[i] = {**row, "kind": kind}
        metrics.update(rates)
    _write_rows(out / VERDICTS_FILE, merged)
    write_json(out / METRICS_FILE, metrics)
    return Rejudged(source, out, source.stem, metrics)


def rejudge(judge: Any, source: str | Path, out: str | Path, default_kind: str = HARMFUL) -> list[Rejudged]:
    """Re-judge ``source`` (folder or JSONL) into the folder ``out``, keeping the input's layout."""
    src, dst = Path(source).expanduser(), Path(out)
    if src.is_file():
        return [rejudge_jsonl(judge, src, dst, default_kind)]
    if not src.is_dir():
        raise RejudgeError(f"{src} not found: give an evaluation folder, a run folder or a JSONL file.")
    return [rejudge_folder(judge, folder, dst / folder.relative_to(src)) for folder in _progress(eval_folders(src))]


def sweep_points(root: Path) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """The (method, sparsity, report entries) of each ``<method>-<sparsity>/eval`` folder under ``root``
    (an ``hsr sweep`` layout; N:M sparsities are spelled ``2of4`` in folder names)."""
    points: list[tuple[str, str, list[dict[str, Any]]]] = []
    for point in sorted(p for p in root.iterdir() if p.is_dir() and (p / "eval").is_dir() and "-" in p.name):
        method, sparsity = point.name.split("-", 1)
        entries = [report_entry(d) for d in sorted((point / "eval").iterdir()) if (d / METRICS_FILE).is_file()]
        points.append((method, sparsity.replace("of", ":"), entries))
    return points


def dense_entry(root: Path) -> dict[str, Any] | None:
    """The shared dense evaluation of a sweep layout (``eval/dense``), if there is one."""
    folder = root / "eval" / "dense"
    return report_entry(folder) if (folder / METRICS_FILE).is_file() else None


def report_entry(folder: Path) -> dict[str, Any]:
    """A report entry (label, metrics, eval_dir) for one re-judged evaluation folder."""
    return {"label": folder.name, "metrics": read_json(folder / METRICS_FILE), "eval_dir": str(folder), "realign_summary": None}


def _progress(folders: list[Path]) -> Iterator[Path]:
    from tqdm.auto import tqdm

    yield from tqdm(folders, desc="judge", disable=len(folders) < 2)
