"""Head scores as a result object, heads.json (the pipeline contract) and the heatmap."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import ConfigError, HsrError
from ..io import read_json, write_json
from .config import HeadScoreConfig

HEADS_FILE = "heads.json"
HEATMAP_FILE = "heads.png"


@dataclass
class HeadScores:
    """Scores ``[L, H]`` of every query head (higher = more safety-critical) and how they were made.

    ``exact[l, h]`` is False only for heads the approximate engine did not rescore; those rank
    below all rescored heads, by their first-order estimate.
    """

    scores: torch.Tensor
    config: HeadScoreConfig
    num_kv_heads: int
    n_prompts: int
    model: str = ""
    exact: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = self.scores.double().cpu()
        if self.exact is None:
            self.exact = torch.ones_like(self.scores, dtype=torch.bool)

    @property
    def num_layers(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.scores.shape[1])

    def ranking(self) -> list[tuple[int, int]]:
        """Every (layer, head), most safety-critical first (ties: lower layer, then head, first)."""
        cells = [(l, h) for l in range(self.num_layers) for h in range(self.num_heads)]
        return sorted(cells, key=lambda c: (not bool(self.exact[c]), -float(self.scores[c]), c[0], c[1]))

    def top(self, h: int) -> list[tuple[int, int]]:
        return self.ranking()[:h]

    def records(self) -> list[dict[str, Any]]:
        out = []
        approx = not bool(self.exact.all())
        for rank, (l, h) in enumerate(self.ranking(), 1):
            rec: dict[str, Any] = {"layer": l, "head": h, "score": float(self.scores[l, h]), "rank": rank}
            if approx:
                rec["exact"] = bool(self.exact[l, h])
            out.append(rec)
        return out

    def to_json(self, model_label: str) -> dict[str, Any]:
        cfg = self.config
        return {
            "score": cfg.score,
            "mode": cfg.mode,
            "eps": cfg.effective_eps,
            "engine": cfg.engine,
            "model": model_label,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "n_prompts": self.n_prompts,
            "rank": cfg.rank,
            "hsr_version": __version__,
            "config": cfg.as_dict(),
            **self.extras,
            "heads": self.records(),
        }


def top_k_recall(exact_scores: torch.Tensor, ranking: list[tuple[int, int]], k: int = 10) -> float:
    """Share of the exact top-``k`` heads that appear in ``ranking[:k]``."""
    flat = exact_scores.double().reshape(-1)
    H = exact_scores.shape[1]
    order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))[:k]
    truth = {(i // H, i % H) for i in order}
    return len(truth & set(ranking[:k])) / len(truth)


def save_head_scores(out_dir: str | os.PathLike, result: HeadScores, model_label: str) -> Path:
    """Write ``heads.json`` and the ``heads.png`` heatmap into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_json(model_label)
    write_json(out / HEADS_FILE, data)
    plot_head_heatmap(data, out / HEATMAP_FILE)
    return out / HEADS_FILE


def _heads_json(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / HEADS_FILE
    if not path.is_file():
        raise HsrError(f"Head scores not found: {path} (run `hsr heads` first, or pass its heads.json).")
    return path


def load_head_scores(path: str | os.PathLike) -> dict[str, Any]:
    path = _heads_json(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("heads"), list):
        raise HsrError(f"{path} is not a heads.json written by `hsr heads` (no 'heads' list).")
    return data


def load_top_heads(path: str | os.PathLike, h: int) -> list[tuple[int, int]]:
    """The ``h`` most safety-critical (layer, head) pairs of a heads.json (or its directory)."""
    data = load_head_scores(path)
    rows = sorted(data["heads"], key=lambda r: r["rank"])
    if h < 0 or h > len(rows):
        raise ConfigError(f"Asked for the top {h} heads but {path} lists {len(rows)}.")
    return [(int(r["layer"]), int(r["head"])) for r in rows[:h]]


def plot_head_heatmap(heads: str | os.PathLike | dict[str, Any], png_path: str | os.PathLike, mark_top: int = 10) -> Path:
    """Layers x heads heatmap of the scores, with the top ``mark_top`` heads outlined (the report's plot)."""
    from ..report.plots import plot_heads

    data = heads if isinstance(heads, dict) else load_head_scores(heads)
    top = [(int(r["layer"]), int(r["head"])) for r in sorted(data["heads"], key=lambda r: r["rank"])[:mark_top]]
    return plot_heads(data, Path(png_path), marked={f"top {len(top)} heads": top} if top else None)
