"""Choosing which heads to realign from a head ranking (read by :func:`hsr.heads.read_heads`).

heads.json lists every (layer, head) with a rank (1 = most safety-critical). HSR realigns the
first ``top_h`` by rank; the random-head control instead draws ``top_h`` heads uniformly from all
``L * H`` heads of the model with a seeded generator (same h, so the comparison is fair).
"""

from __future__ import annotations

import random
from typing import Sequence

from ..errors import ConfigError
from ..heads.results import HeadsFileError


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


def check_top_h(top_h: int, num_layers: int, num_heads: int, model: str = "the model's") -> None:
    """``top_h`` heads must exist: checked from config.json before any model loads, and again on the model."""
    if top_h > num_layers * num_heads:
        raise ConfigError(f"top_h={top_h} exceeds {model} {num_layers * num_heads} attention heads "
                          f"({num_layers} layers x {num_heads}).")


def select_heads(
    ranking: Sequence[tuple[int, int]], top_h: int, num_layers: int, num_heads: int,
    random_heads: bool = False, seed: int = 0,
) -> list[tuple[int, int]]:
    """The heads to realign: the first ``top_h`` of ``ranking``, or ``top_h`` seeded-random heads."""
    if random_heads:
        check_top_h(top_h, num_layers, num_heads)
        population = [(layer, head) for layer in range(num_layers) for head in range(num_heads)]
        return sorted(random.Random(seed).sample(population, top_h))
    ranked = check_ranking(ranking, num_layers, num_heads)
    if top_h > len(ranked):
        raise ConfigError(f"top_h={top_h} exceeds the {len(ranked)} ranked heads available.")
    return ranked[:top_h]
