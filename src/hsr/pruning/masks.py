"""Pure mask selection: which weights to prune given importance scores.

Masks are boolean with True = pruned. Selection is per output row (a row of an nn.Linear
weight ``[out, in]``), so every row ends up with exactly the same sparsity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class Sparsity:
    """Either an unstructured ratio in [0, 1), or N:M (prune N of every M consecutive inputs)."""

    ratio: float = 0.0
    n: int = 0
    m: int = 0

    @property
    def is_nm(self) -> bool:
        return self.m > 0

    @property
    def effective_ratio(self) -> float:
        return self.n / self.m if self.is_nm else self.ratio

    def describe(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.ratio:g}"

    @classmethod
    def parse(cls, text: str | float) -> "Sparsity":
        """``"0.5"`` -> unstructured 50%; ``"2:4"`` -> prune 2 of every 4."""
        if isinstance(text, (int, float)):
            text = str(text)
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
        if match:
            n, m = int(match.group(1)), int(match.group(2))
            if not 0 < n < m:
                raise ConfigError(f"N:M sparsity needs 0 < N < M, got {n}:{m}.")
            return cls(n=n, m=m)
        try:
            ratio = float(text)
        except ValueError:
            raise ConfigError(f"Sparsity must be a ratio in [0, 1) or N:M like 2:4, got {text!r}.") from None
        if not 0.0 <= ratio < 1.0:
            raise ConfigError(f"Sparsity ratio must be in [0, 1), got {ratio}.")
        return cls(ratio=ratio)


def pruned_per_row(columns: int, ratio: float) -> int:
    """How many weights of a row of ``columns`` inputs are pruned at ``ratio`` (floor, as Wanda)."""
    return int(columns * ratio + 1e-9)


def unstructured_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Prune the ``ratio`` lowest-scoring weights of every row. Ties break by column index."""
    rows, cols = scores.shape
    k = pruned_per_row(cols, ratio)
    mask = torch.zeros(rows, cols, dtype=torch.bool, device=scores.device)
    if k == 0:
        return mask
    order = torch.sort(scores.float(), dim=1, stable=True).indices
    mask.scatter_(1, order[:, :k], True)
    return mask


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Prune the ``n`` lowest of every ``m`` consecutive inputs in each row."""
    rows, cols = scores.shape
    if cols % m:
        raise ConfigError(f"N:M sparsity {n}:{m} needs the input width ({cols}) to be a multiple of {m}.")
    groups = scores.float().reshape(rows, cols // m, m)
    order = torch.sort(groups, dim=2, stable=True).indices
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(2, order[..., :n], True)
    return mask.reshape(rows, cols)


def select_mask(scores: torch.Tensor, sparsity: Sparsity) -> torch.Tensor:
    return nm_mask(scores, sparsity.n, sparsity.m) if sparsity.is_nm else unstructured_mask(scores, sparsity.ratio)


def nm_of(mask: torch.Tensor, m: int) -> int | None:
    """N if every group of ``m`` consecutive inputs of ``mask`` has the same 0 < N < m pruned, else None."""
    rows, cols = mask.shape
    if cols % m:
        return None
    counts = mask.reshape(rows, cols // m, m).sum(-1)
    n = int(counts.reshape(-1)[0])
    if not 0 < n < m or not bool((counts == n).all()):
        return None
    return n


def is_valid_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    """True when every group of ``m`` consecutive inputs has exactly ``n`` pruned weights (0 < n < m)."""
    return nm_of(mask, m) == n