"""Proportions with confidence intervals: attack success rate, refusal rate.

A rate is reported as ``{"value", "ci_low", "ci_high", "n", "k", "method"}`` with value = k / n in
[0, 1] and, by default, the Wilson score 95% interval: it stays honest at the edges (0/32 gives
[0.0%, 10.7%], not the [0, 0] a percentile bootstrap collapses to) and needs no seed. ``method``
may also be ``clopper-pearson`` (exact, wider) or ``bootstrap`` (seeded percentile bootstrap:
resampling n Bernoulli outcomes with replacement gives a Binomial(n, k/n) count, so the bootstrap
draws that count directly). Bootstrap intervals remain the tool for statistics without a closed
form -- RSR and paired differences (:mod:`hsr.evaluation.paired`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

DEFAULT_BOOTSTRAP = 10_000
DEFAULT_ALPHA = 0.05


def bootstrap_interval(
    k: int, n: int, *, n_boot: int = DEFAULT_BOOTSTRAP, alpha: float = DEFAULT_ALPHA, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the proportion k/n (seeded, reproducible)."""
    _check(k, n)
    draws = np.random.default_rng(seed).binomial(n, k / n, size=n_boot) / n
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def wilson_interval(k: int, n: int, *, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Wilson score interval of k/n."""
    _check(k, n)
    z = _z(alpha)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_interval(k: int, n: int, *, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of k/n, by bisection on the binomial CDF."""
    _check(k, n)
    low = 0.0 if k == 0 else _bisect(lambda p: _binom_sf(k, n, p) - alpha / 2)
    high = 1.0 if k == n else _bisect(lambda p: alpha / 2 - _binom_cdf(k, n, p))
    return low, high


INTERVALS = ("wilson", "clopper-pearson", "bootstrap")


def proportion(
    outcomes: Sequence[bool],
    *,
    method: str = "wilson",
    n_boot: int = DEFAULT_BOOTSTRAP,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> dict[str, Any] | None:
    """``{"value", "ci_low", "ci_high", "n", "k", "method", "level"}`` for boolean outcomes (None when there are none)."""
    n = len(outcomes)
    if n == 0:
        return None
    k = int(sum(bool(o) for o in outcomes))
    if method == "wilson":
        low, high = wilson_interval(k, n, alpha=alpha)
    elif method == "clopper-pearson":
        low, high = clopper_pearson_interval(k, n, alpha=alpha)
    elif method == "bootstrap":
        low, high = bootstrap_interval(k, n, n_boot=n_boot, alpha=alpha, seed=seed)
    else:
        raise ValueError(f"unknown interval method {method!r}; choose from {', '.join(INTERVALS)}")
    return {"value": k / n, "ci_low": low, "ci_high": high, "n": n, "k": k, "method": method, "level": 1 - alpha}


def restoration_rate(asr_full: float, asr_pruned: float, asr_realigned: float) -> float | None:
    """RSR = (ASR_pruned - ASR_hsr) / (ASR_pruned - ASR_full) (DESIGN.md 1.4); None if undefined: when
    pruning did not raise the ASR there is no lost safety to restore (a negative gap would flip the sign)."""
    gap = asr_pruned - asr_full
    if gap < 1e-12:
        return None
    return (asr_pruned - asr_realigned) / gap


# --------------------------------------------------------------------------- helpers


def _check(k: int, n: int) -> None:
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")


def _z(alpha: float) -> float:
    # Inverse normal CDF by bisection on erf (no scipy dependency).
    target = 1 - alpha / 2
    return _bisect(lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2))) - target, 0.0, 10.0)


def _log_pmf(i: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if i == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if i == n else -math.inf
    return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k)."""
    return min(1.0, sum(math.exp(_log_pmf(i, n, p)) for i in range(0, k + 1)))


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k)."""
    return min(1.0, sum(math.exp(_log_pmf(i, n, p)) for i in range(k, n + 1)))


def _bisect(f: Any, lo: float = 0.0, hi: float = 1.0, iters: int = 100) -> float:
    """Root of an increasing function f on [lo, hi]."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
