"""Report figures (matplotlib, Agg canvas, no global pyplot state): each function writes one PNG.

matplotlib is imported when the first figure is made: importing it takes a quarter of a second, which
every ``hsr`` command (``--help``, a refused option) would otherwise pay.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..evaluation.outcomes import METRIC_KEYS, OUTCOMES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = {"dense": "#4c72b0", "pruned": "#c44e52", "realigned": "#55a868", "control": "#8172b2"}
FALLBACK = ("#dd8452", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")


def color_of(label: str, i: int) -> str:
    return COLORS.get(label, FALLBACK[i % len(FALLBACK)])


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def _rate_panel(ax: Any, labels: Sequence[str], rates: Sequence[dict[str, Any] | None], title: str) -> None:
    """Bars of rates in percent with their CI as error bars; missing rates are marked n/a."""
    for i, (label, r) in enumerate(zip(labels, rates)):
        if r is None:
            ax.text(i, 1, "n/a", ha="center", va="bottom", fontsize=8, color="gray")
            continue
        v, lo, hi = 100 * r["value"], 100 * r["ci_low"], 100 * r["ci_high"]
        ax.bar(i, v, color=color_of(label, i))
        ax.errorbar(i, v, yerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt="none", ecolor="black", capsize=4, zorder=3)
        ax.text(i, hi + 1.5, f"{v:.1f}%\n({r['k']}/{r['n']})", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(range(len(labels))))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 118)
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=10)


#: Colours of the outcomes in the safety figure.
OUTCOME_COLORS = {"complied": "#c44e52", "answered": "#55a868", "refusal": "#4c72b0", "non-answer": "#dd8452",
                  "degenerate": "#8c8c8c"}


def _outcome_panel(ax: Any, labels: Sequence[str], metrics: Sequence[dict[str, Any]], kind: str, title: str) -> None:
    """Grouped bars: for each model, the share of each outcome of ``kind`` with its 95% interval."""
    outcomes = OUTCOMES[kind]
    width = 0.8 / len(outcomes)
    for j, outcome in enumerate(outcomes):
        key = METRIC_KEYS[(kind, outcome)]
        for i, m in enumerate(metrics):
            r = m.get(key)
            x = i - 0.4 + width * (j + 0.5)
            if not r:
                continue
            v, lo, hi = 100 * r["value"], 100 * r["ci_low"], 100 * r["ci_high"]
            ax.bar(x, v, width, color=OUTCOME_COLORS[outcome], label=outcome if i == 0 else None)
            ax.errorbar(x, v, yerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt="none", ecolor="black", capsize=2,
                        linewidth=0.8, zorder=3)
            ax.text(x, hi + 1, f"{r['k']}", ha="center", va="bottom", fontsize=6)
    if not any(m.get(METRIC_KEYS[(kind, o)]) for m in metrics for o in outcomes):
        ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 112)
    ax.set_ylabel("% of answers")
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7, ncol=4, loc="upper center")


def plot_safety(entries: Sequence[dict[str, Any]], path: Path) -> Path:
    """The four outcomes of harmful prompts (ASR = complied) and of benign prompts, per model, with 95% intervals
    (the count of answers above each bar)."""
    labels = [e["label"] for e in entries]
    metrics = [e["metrics"] for e in entries]
    fig = new_figure(max(8.0, 2.2 * len(labels) + 2), 3.8)
    _outcome_panel(fig.add_subplot(1, 2, 1), labels, metrics, "harmful", "Harmful prompts (ASR = complied)")
    _outcome_panel(fig.add_subplot(1, 2, 2), labels, metrics, "benign", "Benign prompts (over-refusal = refusal)")
    return save_figure(fig, path)


def _lm_eval_panel(ax: Any, labels: Sequence[str], metrics: Sequence[dict[str, Any]], keys: Sequence[tuple[str, str]]) -> None:
    """Grouped bars: for each lm-eval (task, metric), every model's value with ± one standard error."""
    from .tables import PERCENT_METRICS, lm_eval_score

    width = 0.8 / max(1, len(labels))
    for i, (label, m) in enumerate(zip(labels, metrics)):
        for j, (task, metric) in enumerate(keys):
            s = lm_eval_score(m, task, metric)
            if not s or s.get("value") is None:
                continue
            scale = 100.0 if metric.split("[")[0] in PERCENT_METRICS else 1.0
            x = j - 0.4 + width * (i + 0.5)
            ax.bar(x, scale * s["value"], width, color=color_of(label, i), label=label if j == 0 else None)
            if s.get("stderr") is not None:
                ax.errorbar(x, scale * s["value"], yerr=scale * s["stderr"], fmt="none", ecolor="black", capsize=3, zorder=3)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{t}\n{m}" for t, m in keys], rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("% (shares) or value")
    ax.set_title("lm-eval (± 1 standard error)", fontsize=10)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7)


def plot_utility(entries: Sequence[dict[str, Any]], path: Path) -> Path:
    """Perplexity (log scale when values span >10x), MCQ accuracy and, when run, the lm-eval metrics per model."""
    from .tables import lm_eval_keys

    labels = [e["label"] for e in entries]
    keys = lm_eval_keys(entries)
    panels = 3 if keys else 2
    fig = new_figure(max(6.0, 1.6 * len(labels) + 2) + (max(4.0, 1.2 * len(keys) * len(labels)) if keys else 0), 3.6)
    ax = fig.add_subplot(1, panels, 1)
    ppls = [e["metrics"].get("perplexity") for e in entries]
    for i, (label, p) in enumerate(zip(labels, ppls)):
        if p is None or not math.isfinite(p):
            ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8, color="gray")
            continue
        ax.bar(i, p, color=color_of(label, i))
        ax.text(i, p, f"{p:.2f}", ha="center", va="bottom", fontsize=7)
    finite = [p for p in ppls if p is not None and math.isfinite(p) and p > 0]
    if finite and max(finite) / min(finite) > 10:
        ax.set_yscale("log")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("perplexity")
    ax.set_title("Perplexity on held-out text (lower is better)", fontsize=10)
    _rate_panel(fig.add_subplot(1, panels, 2), labels, [e["metrics"].get("mcq_accuracy") for e in entries], "Multiple-choice accuracy")
    if keys:
        _lm_eval_panel(fig.add_subplot(1, panels, 3), labels, [e["metrics"] for e in entries], keys)
    return save_figure(fig, path)


def plot_heads(heads: dict[str, Any], path: Path, marked: dict[str, list[tuple[int, int]]] | None = None) -> Path:
    """Layers x query heads heatmap of head scores from a heads.json; ``marked`` outlines head sets."""
    from matplotlib.patches import Rectangle

    L, H = int(heads["num_layers"]), int(heads["num_heads"])
    grid = [[math.nan] * H for _ in range(L)]
    for r in heads["heads"]:
        grid[int(r["layer"])][int(r["head"])] = float(r["score"])
    fig = new_figure(min(3 + 0.4 * H, 18), min(2 + 0.28 * L, 18))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid, aspect="auto", cmap="viridis", origin="upper", interpolation="nearest")
    from ..heads.scores import unit_of

    unit = unit_of(str(heads.get("score", "")))
    fig.colorbar(im, ax=ax, label=f"{heads.get('score', 'score')}: {unit}")
    styles = [("red", "-"), ("white", "--"), ("orange", ":")]
    handles = []
    for (name, cells), (color, ls) in zip((marked or {}).items(), styles):
        for layer, head in cells:
            ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor=color, linestyle=ls, linewidth=1.4))
        handles.append(Rectangle((0, 0), 1, 1, fill=False, edgecolor=color, linestyle=ls, label=name))
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(handles), fontsize=8,
                  facecolor="#999999", framealpha=1.0)
    ax.set_xlabel("query head")
    ax.set_ylabel("layer")
    ax.set_title(f"Head safety scores ({heads.get('score', '?')}, {heads.get('mode', '?')} ablation)", fontsize=10)
    return save_figure(fig, path)


def plot_restored(labels: Sequence[str], counts: Sequence[int], per_10k: Sequence[float], path: Path) -> Path:
    """Restored parameter counts per realigned model (annotated with the share per ten-thousand)."""
    fig = new_figure(max(4.5, 1.4 * len(labels) + 2), 3.4)
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, c, f) in enumerate(zip(labels, counts, per_10k)):
        ax.bar(i, c, color=color_of(label, i))
        ax.text(i, c, f"{c:,}\n{f:.3f} per 10k", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylim(0, max(list(counts) + [1]) * 1.3)
    ax.set_ylabel("restored parameters")
    ax.set_title("Parameters restored by realignment", fontsize=10)
    return save_figure(fig, path)
