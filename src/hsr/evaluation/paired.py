"""Paired statistics: the models answer the same prompts, so compare them prompt by prompt.

Dense, pruned, realigned and control are evaluated on the same harmful prompts in the same order,
so their per-prompt outcomes (True = attack success) are paired. Paired statistics use that:

- :func:`mcnemar_exact` -- the exact McNemar test of "two models have the same ASR": under the
  null, each discordant prompt (one model complied, the other did not) is a fair coin, so the
  two-sided p-value is ``min(1, 2 * P(X <= min(b, c)))`` for ``X ~ Binomial(b + c, 1/2)``.
- :func:`paired_difference` -- ASR_b - ASR_a with a paired bootstrap interval (prompt indices
  resampled, both models' outcomes taken at the same indices) and the McNemar p-value.
- :func:`restoration_rate_interval` -- RSR = (ASR_pruned - ASR_model) / (ASR_pruned - ASR_dense)
  with a paired bootstrap interval: each replicate resamples prompt indices once and uses them
  for all three models. The RSR is undefined when the denominator is not positive (pruning did not
  raise the ASR); such replicates are dropped and counted (``undefined_replicates``).

Pure functions (NumPy for the resampling only), seeded, no model needed.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .metrics import DEFAULT_ALPHA, DEFAULT_BOOTSTRAP, restoration_rate


def _as_array(outcomes: Sequence[bool], name: str) -> np.ndarray:
    arr = np.asarray([bool(o) for o in outcomes], dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"{name}: no outcomes")
    return arr


def _same_length(*arrays: np.ndarray) -> int:
    lengths = {a.size for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"paired outcomes need the same prompts, got lengths {sorted(lengths)}")
    return lengths.pop()


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic)."""
    return sum(math.comb(n, i) for i in range(0, k + 1)) / 2**n


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    """Exact two-sided McNemar test on paired outcomes: ``{"p_value", "a_only", "b_only", "n"}``.

    ``a_only`` = prompts where only ``a`` is True, ``b_only`` = where only ``b`` is; with no
    discordant prompt the p-value is 1.
    """
    x, y = _as_array(a, "a"), _as_array(b, "b")
    n = _same_length(x, y)
    a_only = int(((x == 1) & (y == 0)).sum())
    b_only = int(((x == 0) & (y == 1)).sum())
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else min(1.0, 2 * _binom_half_cdf(min(a_only, b_only), discordant))
    return {"p_value": p, "a_only": a_only, "b_only": b_only, "n": n}


def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentile(values: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_difference(
    a: Sequence[bool],
    b: Sequence[bool],
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> dict[str, Any]:
    """Rate of ``b`` minus rate of ``a`` on the same prompts, paired bootstrap interval, McNemar p-value."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    n = _same_length(x, y)
    idx = _indices(n, n_boot, seed)
    low, high = _percentile(y[idx].mean(axis=1) - x[idx].mean(axis=1), alpha)
    test = mcnemar_exact(a, b)
    return {
        "value": float(y.mean() - x.mean()), "ci_low": low, "ci_high": high, "n": n,
        "method": "paired bootstrap", "level": 1 - alpha, "n_boot": n_boot,
        "mcnemar_p": test["p_value"], "a_only": test["a_only"], "b_only": test["b_only"],
    }


def restoration_rate_interval(
    dense: Sequence[bool],
    pruned: Sequence[bool],
    model: Sequence[bool],
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> dict[str, Any]:
    """RSR of ``model`` with a paired bootstrap interval (``value`` None when the RSR is undefined).

    Returns ``{"value", "ci_low", "ci_high", "n", "method", "level", "n_boot",
    "undefined_replicates"}``; the interval is None when fewer than half the replicates are defined.
    """
    d, p, m = _as_array(dense, "dense"), _as_array(pruned, "pruned"), _as_array(model, "model")
    n = _same_length(d, p, m)
    value = restoration_rate(float(d.mean()), float(p.mean()), float(m.mean()))
    idx = _indices(n, n_boot, seed)
    dm, pm, mm = d[idx].mean(axis=1), p[idx].mean(axis=1), m[idx].mean(axis=1)
    gap = pm - dm
    defined = gap > 1e-12  # as restoration_rate: only replicates where pruning raised the ASR
    low = high = None
    if defined.sum() >= n_boot / 2:
        low, high = _percentile((pm[defined] - mm[defined]) / gap[defined], alpha)
    return {
        "value": value, "ci_low": low, "ci_high": high, "n": n, "method": "paired bootstrap",
        "level": 1 - alpha, "n_boot": n_boot, "undefined_replicates": int(n_boot - defined.sum()),
    }
