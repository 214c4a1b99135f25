"""Reading heads.json (the heads stage's output) and choosing which heads to realign.

heads.json lists every (layer, head) with a rank (1 = most safety-critical). HSR realigns the
first ``top_h`` by rank; the random-head control instead draws ``top_h`` heads uniformly from all
``L * H`` heads of the model with a seeded generator (same h, so the comparison is fair).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, HsrError


class HeadsFileError(HsrError, ValueError):
    """heads.json is missing, malformed, or does not fit the model."""


def read_head_ranking(path: str | Path) -> list[tuple[int, int]]:
    """Every ``(layer, head)`` in ``path``, most safety-critical first (ascending rank)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HeadsFileError(f"Heads file {path} not found; run `hsr heads` first or pass its heads.json.") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise HeadsFileError(f"{path}: cannot read heads JSON ({exc}).") from exc
    rows = data.get("heads") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise HeadsFileError(f"{path}: expected an object with a non-empty 'heads' list.")
    try:
        parsed = [(int(r["rank"]), int(r["layer"]), int(r["head"])) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise HeadsFileError(f"{path}: every entry of 'heads' needs integer 'layer', 'head' and 'rank' ({exc}).") from exc
    parsed.sort(key=lambda t: t[0])  # stable: equal ranks keep file order
    return [(layer, head) for _, layer, head in parsed]


def check_ranking(ranking: Sequence[tuple[int, int]], num_layers: int, num_heads: int) -> list[tuple[int, int]]:
    """Validate heads against the model's shape and drop repeats (first occurrence wins)."""
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    for layer, head in ranking:
        key = (int(layer), int(head))
        if not (0 <= key[0] < num_layers and 0 <= key[1] < num_heads):
            raise HeadsFileError(
                f"Head ranking lists (layer {key[0]}, head {key[1]}) but the model has {num_layers} layers "
                f"x {num_heads} heads; was it computed on another model?"
            )
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def select_heads(
    ranking: Sequence[tuple[int, int]], top_h: int, num_layers: int, num_heads: int,
    random_heads: bool = False, seed: int = 0,
) -> list[tuple[int, int]]:
    """The heads to realign: the first ``top_h`` of ``ranking``, or ``top_h`` seeded-random heads."""
    if random_heads:
        population = [(layer, head) for layer in range(num_layers) for head in range(num_heads)]
        if top_h > len(population):
            raise ConfigError(f"top_h={top_h} exceeds the model's {len(population)} attention heads.")
        return sorted(random.Random(seed).sample(population, top_h))
    ranked = check_ranking(ranking, num_layers, num_heads)
    if top_h > len(ranked):
        raise ConfigError(f"top_h={top_h} exceeds the {len(ranked)} ranked heads available.")
    return ranked[:top_h]
