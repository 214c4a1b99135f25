"""Head scores as a result object, heads.json (the pipeline contract) and the heatmap."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import ConfigError, HsrError
from ..io import read_json_checked, write_json
from ..values import check_scores
from .config import HeadScoreConfig

HEADS_FILE = "heads.json"


class HeadScoreError(HsrError, ValueError):
    """Head scoring produced values that cannot rank heads."""
HEATMAP_FILE = "heads.png"
TIMINGS_FILE = "timings.json"


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
    #: Wall seconds per phase: written to timings.json (and the run's stage.json), never to heads.json,
    #: so the same inputs give the same heads.json bytes.
    timings: dict[str, float] = field(default_factory=dict)

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

    def check_finite(self) -> None:
        """Refuse NaN/inf scores (from a model or data that overflowed): their ranking would be arbitrary."""
        bad = (~torch.isfinite(self.scores)).nonzero().tolist()
        if bad:
            layer, head = bad[0]
            raise HeadScoreError(
                f"{len(bad)} of {self.scores.numel()} head scores are NaN or infinite (first: layer {layer}, head "
                f"{head}, {float(self.scores[layer, head])}); the model or the prompts give non-finite outputs "
                "(try --dtype float32), so no ranking is written."
            )

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
    """Write ``heads.json``, the ``heads.png`` heatmap and ``timings.json`` into ``out_dir`` (created if needed)."""
    result.check_finite()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_json(model_label)
    write_json(out / HEADS_FILE, data)
    write_json(out / TIMINGS_FILE, {k: round(v, 3) for k, v in result.timings.items()})
    plot_head_heatmap(data, out / HEATMAP_FILE)
    return out / HEADS_FILE


class HeadsFileError(HsrError, ValueError):
    """heads.json is missing, malformed, or does not fit the model."""


def _heads_json(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / HEADS_FILE
    if not path.is_file():
        raise HeadsFileError(f"Head scores not found: {path} (run `hsr heads` first, or pass its heads.json).")
    return path


def _exact_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class HeadsFile:
    """A validated heads.json: its header and every (layer, head), most safety-critical first."""

    path: Path
    data: dict[str, Any]
    ranking: list[tuple[int, int]]

    @property
    def num_layers(self) -> int:
        return int(self.data["num_layers"])

    @property
    def num_heads(self) -> int:
        return int(self.data["num_heads"])

    def check_model(self, num_layers: int, num_heads: int, model: str = "the model") -> "HeadsFile":
        """Refuse head scores computed on a model of another shape."""
        if (self.num_layers, self.num_heads) != (num_layers, num_heads):
            raise HeadsFileError(
                f"{self.path} scores a model with {self.num_layers} layers x {self.num_heads} heads "
                f"({self.data.get('model', '?')}), but {model} has {num_layers} x {num_heads}; "
                "score the heads of this model (hsr heads)."
            )
        return self

    def top(self, h: int) -> list[tuple[int, int]]:
        if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= len(self.ranking):
            raise ConfigError(f"Asked for the top {h} heads but {self.path} lists {len(self.ranking)}.")
        return self.ranking[:h]


def read_heads(path: str | os.PathLike) -> HeadsFile:
    """Read and validate a heads.json (or its folder): the one reader of the pipeline contract.

    Layers, heads and ranks must be JSON integers (not 1.7, "1" or true) inside the header's
    ``num_layers`` x ``num_heads``; each head and each rank appears once (tied ranks would let file
    order pick the heads); a score, where given, is a finite number.
    """
    path = _heads_json(path)
    data = read_json_checked(path, HeadsFileError, "heads JSON")
    rows = data.get("heads") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise HeadsFileError(f"{path}: not a heads.json written by `hsr heads` (no non-empty 'heads' list).")
    L, H = data.get("num_layers"), data.get("num_heads")
    if not (_exact_int(L) and _exact_int(H) and L > 0 and H > 0):
        raise HeadsFileError(f"{path}: header needs positive integer 'num_layers' and 'num_heads'.")
    parsed: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int]] = set()
    ranks: dict[int, int] = {}
    for i, r in enumerate(rows):
        fields = (r.get("rank"), r.get("layer"), r.get("head")) if isinstance(r, dict) else (None,)
        if not all(_exact_int(v) for v in fields):
            raise HeadsFileError(f"{path}: heads[{i}] needs integer 'layer', 'head' and 'rank', got {r!r}.")
        rank, layer, head = fields
        if not (0 <= layer < L and 0 <= head < H):
            raise HeadsFileError(f"{path}: heads[{i}] (layer {layer}, head {head}) lies outside the header's {L} x {H} heads.")
        if (layer, head) in seen:
            raise HeadsFileError(f"{path}: head (layer {layer}, head {head}) is listed twice.")
        seen.add((layer, head))
        if rank in ranks:
            raise HeadsFileError(f"{path}: heads[{ranks[rank]}] and heads[{i}] both have rank {rank}; ranks must be "
                                 "distinct, or the choice of heads would be arbitrary.")
        ranks[rank] = i
        if "score" in r:
            check_scores([(f"{path}: heads[{i}]", r["score"])], HeadsFileError)
        parsed.append((rank, layer, head))
    _check_scores_rank(path, rows)
    parsed.sort(key=lambda t: t[0])  # stable: equal ranks keep file order
    return HeadsFile(path, data, [(layer, head) for _, layer, head in parsed])


def _check_scores_rank(path: Path, rows: list[dict[str, Any]]) -> None:
    """Refuse scores that cannot order the heads: every head scored the same (all zero after a failed
    scoring run, a hand-made file) makes the ranks, and so the heads realigned, arbitrary. A few ties
    are normal and kept."""
    scores = [float(r["score"]) for r in rows if "score" in r]
    if len(rows) >= 2 and len(scores) == len(rows) and len(set(scores)) < 2:
        raise HeadsFileError(f"{path}: all {len(rows)} heads have the same score ({scores[0]!r}), so their ranking is "
                             "arbitrary; recompute the scores with `hsr heads` (more prompts, or another --score).")


def load_head_scores(path: str | os.PathLike) -> dict[str, Any]:
    """The validated heads.json as a dict (for plots and reports, which need every head's score)."""
    heads = read_heads(path)
    for i, r in enumerate(heads.data["heads"]):
        if "score" not in r:
            raise HeadsFileError(f"{heads.path}: heads[{i}] has no 'score', which the heatmap needs.")
    return heads.data


def plot_head_heatmap(heads: str | os.PathLike | dict[str, Any], png_path: str | os.PathLike, mark_top: int = 10) -> Path:
    """Layers x heads heatmap of the scores, with the top ``mark_top`` heads outlined (the report's plot)."""
    from ..report.plots import plot_heads

    data = heads if isinstance(heads, dict) else load_head_scores(heads)
    top = [(int(r["layer"]), int(r["head"])) for r in sorted(data["heads"], key=lambda r: r["rank"])[:mark_top]]
    return plot_heads(data, Path(png_path), marked={f"top {len(top)} heads": top} if top else None)
