"""The comparison report: report.md, a self-contained report.html, and the PNG figures beside them.

The HTML embeds every figure as a base64 ``data:`` URI and uses inline CSS only, so the single
file can be mailed or archived without its folder.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..errors import HsrError
from ..evaluation.outcomes import RATE_KEYS
from ..heads.results import load_head_scores
from ..io import atomic_output_dir, read_json, read_json_checked, write_json
from ..values import check_rate, is_finite_number, is_number, shown
from . import plots
from .paired import paired_summary
from .tables import lm_eval_keys, paired_lines, results_table, table_columns, table_rows

MD_FILE = "report.md"
HTML_FILE = "report.html"
PAIRED_FILE = "paired.json"
RATES_NOTE = (
    "Every answer gets one outcome (docs/judging.md). Harmful prompts: ASR = complied (engaged with the request and "
    "gave or started to give what was asked), refusal, non-answer (neither refused nor engaged), degenerate (empty, "
    "repetitive or not language). Benign prompts: answered, refusal (over-refusal), non-answer, degenerate. A rising "
    "non-answer share means the model lost the ability to refuse coherently, not that it complied. Verdicts per "
    "prompt by the judge named below; rates with 95% Wilson intervals and k/n."
)
SAFETY_PNG, UTILITY_PNG, HEADS_PNG, RESTORED_PNG = "safety.png", "utility.png", "heads.png", "restored.png"


class ReportError(HsrError, ValueError):
    """Inputs of a report are missing or malformed."""


def _check_entries(entries: Sequence[dict[str, Any]]) -> None:
    if not entries:
        raise ReportError("Nothing to report: no evaluated models given.")
    seen: set[str] = set()
    for e in entries:
        if "label" not in e or not isinstance(e.get("metrics"), dict):
            raise ReportError("Each report entry needs a 'label' and a 'metrics' dict (a metrics.json).")
        if e["label"] in seen:
            raise ReportError(f"Two report entries are labelled {e['label']!r}; labels must be unique.")
        seen.add(e["label"])


def _marked_heads(entries: Sequence[dict[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    marked = {}
    for e in entries:
        summary = e.get("realign_summary") or {}
        heads = summary.get("heads")
        if heads:
            kind = summary.get("head_selection", "")
            marked[f"{e['label']} heads" + (f" ({kind})" if kind else "")] = [(int(h["layer"]), int(h["head"])) for h in heads]
    return marked


def build_report(
    entries: list[dict[str, Any]],
    out_dir: str | Path,
    heads_json: str | Path | None = None,
    title: str = "HSR report",
) -> Path:
    """Write the report for ``entries`` into ``out_dir`` (replaced).

    An entry is ``{"label", "metrics", "realign_summary"}`` plus ``eval_dir`` (its evaluation folder,
    whose generations_harmful.jsonl gives the per-prompt verdicts for the paired statistics).
    """
    _check_entries(entries)
    paired = paired_summary(entries)
    heads = load_head_scores(heads_json) if heads_json is not None else None  # validated; errors name the file
    with atomic_output_dir(out_dir, overwrite=True) as tmp:
        figures: list[tuple[str, str]] = []
        if any(e["metrics"].get("asr") or e["metrics"].get("over_refusal") for e in entries):
            plots.plot_safety(entries, tmp / SAFETY_PNG)
            figures.append((SAFETY_PNG, "Safety: the four outcomes of harmful and of benign prompts per model, with "
                            "95% Wilson intervals."))
        if any(e["metrics"].get("perplexity") is not None or e["metrics"].get("mcq_accuracy") for e in entries) \
                or lm_eval_keys(entries):
            plots.plot_utility(entries, tmp / UTILITY_PNG)
            figures.append((UTILITY_PNG, "Utility: perplexity on held-out text, multiple-choice accuracy and the "
                            "lm-eval metrics (± one standard error)."))
        restored = [e for e in entries if (e.get("realign_summary") or {}).get("restored_params") is not None]
        if restored:
            plots.plot_restored(
                [e["label"] for e in restored],
                [int(e["realign_summary"]["restored_params"]) for e in restored],
                [1e4 * float(e["realign_summary"].get("restored_fraction") or 0.0) for e in restored],
                tmp / RESTORED_PNG,
            )
            figures.append((RESTORED_PNG, "Parameters restored by realignment (count and share of language-model parameters)."))
        if heads is not None:
            plots.plot_heads(heads, tmp / HEADS_PNG, _marked_heads(entries))
            figures.append((HEADS_PNG, "Head safety scores, layers x query heads; outlines mark the heads each realigned model used."))
        write_json(tmp / PAIRED_FILE, paired)
        (tmp / MD_FILE).write_text(_markdown(entries, title, figures, heads, paired), encoding="utf-8")
        (tmp / HTML_FILE).write_text(_html(entries, title, figures, heads, tmp, paired), encoding="utf-8")
    return Path(out_dir).expanduser().resolve()


def _details(entries: Sequence[dict[str, Any]], heads: dict[str, Any] | None) -> list[str]:
    """Plain-text facts per model (data, judge, paths), shared by markdown and HTML."""
    lines = []
    for e in entries:
        m = e["metrics"]
        bits = [f"path {m.get('path', '?')}", f"judge {m.get('judge', '?')}"]
        for key in ("harmful_data", "benign_data", "mcq_data"):
            if m.get(key):
                bits.append(f"{key.replace('_data', '')} {m[key]}")
        lm = m.get("lm_eval_detail")
        if lm:
            bits.append(f"lm-eval {lm.get('version', '?')} on {', '.join(map(str, lm.get('tasks') or []))} "
                        f"(few-shot {lm.get('num_fewshot')}, chat template {'on' if lm.get('chat_template') else 'off'})")
        detail = m.get("perplexity_detail")
        if detail:
            bits.append(f"perplexity on {detail.get('text')} ({detail.get('tokens')} tokens)")
        s = e.get("realign_summary")
        if s and s.get("heads") is not None:
            bits.append(f"{len(s['heads'])} heads ({s.get('head_selection', '?')})")
            if s.get("selection") == "taylor":  # not the paper's set difference: say so next to the heads
                bits.append(f"Taylor restore selection ({s.get('restored_weights', '?')} weights)")
        lines.append(f"{e['label']}: " + "; ".join(str(b) for b in bits))
    if heads is not None:
        top = sorted(heads["heads"], key=lambda r: r["rank"])[:10]
        lines.append(
            f"head scores: {heads.get('score')} / {heads.get('mode')} ablation on {heads.get('n_prompts', '?')} prompts "
            f"({heads.get('model', '?')}); top heads (layer.head): " + ", ".join(f"{r['layer']}.{r['head']}" for r in top)
        )
    return lines


def _stamp() -> str:
    return f"hsr {__version__}, {_dt.datetime.now().isoformat(timespec='seconds')}"


def _markdown(
    entries: Sequence[dict[str, Any]], title: str, figures: list[tuple[str, str]], heads: dict[str, Any] | None,
    paired: dict[str, Any],
) -> str:
    out = [f"# {title}", "", f"_Generated by {_stamp()}._", "", results_table(entries, paired), ""]
    out.append(RATES_NOTE)
    out.append("")
    for name, caption in figures:
        out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    out += ["## Details", ""]
    out += [f"- {line}" for line in _details(entries, heads)]
    return "\n".join(out) + "\n"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f2f2f2; }
figure { margin: 1.5em 0; }
figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; }
.meta { color: #777; font-size: 0.85em; }
"""


def _html(
    entries: Sequence[dict[str, Any]], title: str, figures: list[tuple[str, str]], heads: dict[str, Any] | None, folder: Path,
    paired: dict[str, Any],
) -> str:
    e = html.escape
    rows = table_rows(entries)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="meta">Generated by {e(_stamp())}.</p>',
        "<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in table_columns(entries)) + "</tr></thead><tbody>",
    ]
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
    parts.append("</tbody></table>")
    lines = paired_lines(entries, paired)
    if lines:
        head, *items = lines
        parts.append(f"<p>{e(head)}</p>")
        if items:
            parts.append("<ul>" + "".join(f"<li>{e(i.lstrip('- '))}</li>" for i in items) + "</ul>")
    parts.append(f"<p>{e(RATES_NOTE)}</p>")
    for name, caption in figures:
        data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}"><figcaption>{e(caption)}</figcaption></figure>'
        )
    parts.append("<h2>Details</h2><ul>")
    parts += [f"<li>{e(line)}</li>" for line in _details(entries, heads)]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- inputs from disk

_ORDER = ("dense", "pruned", "realigned", "control")


def entries_from_dirs(paths: Sequence[str | Path]) -> tuple[list[dict[str, Any]], Path | None]:
    """Report entries (and a heads.json, if found) from ``hsr run`` directories and/or evaluation folders.

    An evaluation folder holds ``metrics.json``; its realign summary is read from the evaluated
    model's folder (``metrics["path"]/summary.json``) when that holds ``restored_params``. A run
    directory holds ``eval/<label>/metrics.json``, ``heads/heads.json`` and ``<label>/summary.json``.
    """
    entries: list[dict[str, Any]] = []
    heads: Path | None = None
    for raw in paths:
        p = Path(raw).expanduser()
        if (p / "metrics.json").is_file():
            metrics = read_metrics(p / "metrics.json")
            model_path = metrics.get("path")
            entries.append({"label": str(metrics.get("model") or p.name), "metrics": metrics, "eval_dir": str(p),
                            "realign_summary": _summary(Path(model_path)) if model_path else None})
        elif (p / "eval").is_dir():
            found = sorted((d for d in (p / "eval").iterdir() if (d / "metrics.json").is_file()),
                           key=lambda d: (_ORDER.index(d.name) if d.name in _ORDER else len(_ORDER), d.name))
            if not found:
                raise ReportError(f"{p}/eval has no evaluated models (no */metrics.json).")
            for d in found:
                _check_not_stale(p, d)
                metrics = read_metrics(d / "metrics.json")
                summary = _summary(p / d.name)
                if summary is None and metrics.get("path"):  # a re-judged copy (`hsr judge`) beside no models
                    summary = _summary(Path(metrics["path"]))
                entries.append({"label": d.name, "metrics": metrics, "eval_dir": str(d), "realign_summary": summary})
            if heads is None and (p / "heads" / "heads.json").is_file():
                heads = p / "heads" / "heads.json"
        else:
            raise ReportError(f"{p} is neither an evaluation folder (metrics.json) nor an `hsr run` directory (eval/).")
    labels: set[str] = set()
    for e in entries:
        base, n = e["label"], 2
        while e["label"] in labels:  # the same model label from two folders
            e["label"], n = f"{base} #{n}", n + 1
        labels.add(e["label"])
    return entries, heads


def _check_not_stale(run_dir: Path, eval_dir: Path) -> None:
    """Refuse an evaluation of a model that has since been rebuilt in the run folder: its metrics would
    sit beside the new model's summary. Each eval's stage.json records the fingerprints of the model
    stages it measured."""
    try:
        recorded = read_json(eval_dir / "stage.json").get("upstream") or {}
    except (OSError, ValueError, AttributeError):
        return  # an evaluation folder not written by hsr run: nothing to compare
    for stage, fp in recorded.items():
        try:
            current = read_json(run_dir / stage / "stage.json").get("fingerprint")
        except (OSError, ValueError, AttributeError):
            continue
        if current != fp:
            raise ReportError(
                f"{eval_dir} measured an earlier {stage} model (rebuilt since); re-run `hsr run` with evaluation "
                "enabled to measure the current one."
            )


def read_metrics(path: Path) -> dict[str, Any]:
    """metrics.json of an evaluation folder, checked so the report neither crashes on it nor shows
    nonsense (a rate of 500%, k > n, an interval that excludes its value, NaN)."""
    data = read_json_checked(path, ReportError, "metrics JSON")
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a metrics.json written by `hsr evaluate` (not an object).")
    for key, value in data.items():
        if key in (*RATE_KEYS, "mcq_accuracy") and value is not None:
            check_rate(value, f"{path}: {key}", ReportError)
    ppl = data.get("perplexity")
    if ppl is not None and not (is_number(ppl) and (ppl >= 1 or ppl == math.inf)):
        raise ReportError(f"{path}: perplexity must be a number of at least 1 (or null), got {shown(ppl)}.")
    _check_lm_eval(path, data.get("lm_eval"))
    return data


def _check_lm_eval(path: Path, results: Any) -> None:
    """metrics.json's ``lm_eval``: task -> metric -> {"value": finite number, "stderr": finite number >= 0 | None}
    (what the bridge writes; NaN would show as "nan" in every table)."""
    if results is None:
        return
    ok = isinstance(results, dict) and all(
        isinstance(metrics, dict) and all(
            isinstance(s, dict) and is_finite_number(s.get("value"))
            and (s.get("stderr") is None or (is_finite_number(s.get("stderr")) and s["stderr"] >= 0))
            for s in metrics.values())
        for metrics in results.values())
    if not ok:
        raise ReportError(f"{path}: 'lm_eval' must map each task to metrics holding a numeric value and stderr.")


def _summary(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / "summary.json"
    try:
        if not model_dir.is_dir() or not path.is_file():
            return None
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "restored_params" in data else None
