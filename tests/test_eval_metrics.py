"""Rates and their intervals on known counts."""

from __future__ import annotations

import numpy as np
import pytest

from hsr.evaluation.metrics import (
    bootstrap_interval,
    clopper_pearson_interval,
    proportion,
    restoration_rate,
    wilson_interval,
)


def test_zero_and_all_use_wilson_by_default():
    none = proportion([False] * 32)
    assert none["value"] == 0.0 and none["k"] == 0 and none["n"] == 32 and none["method"] == "wilson"
    # Wilson upper bound at k = 0 is z^2 / (n + z^2) = 3.8415 / 35.8415: not the bootstrap's [0, 0]
    assert none["ci_low"] == 0.0 and none["ci_high"] == pytest.approx(0.107180, abs=1e-5)
    every = proportion([True] * 20)
    assert every["value"] == 1.0 and every["ci_high"] == 1.0 and every["ci_low"] == pytest.approx(1 - 0.161130, abs=1e-5)
    assert proportion([]) is None


def test_bootstrap_method_still_available_and_collapses_at_the_edges():
    none = proportion([False] * 20, method="bootstrap")
    assert none["method"] == "bootstrap" and none["ci_low"] == none["ci_high"] == 0.0
    exact = proportion([True] * 5 + [False] * 15, method="clopper-pearson")
    assert (exact["ci_low"], exact["ci_high"]) == clopper_pearson_interval(5, 20)
    with pytest.raises(ValueError, match="unknown interval"):
        proportion([True], method="normal")


@pytest.mark.parametrize("k,n", [(1, 10), (7, 32), (50, 100), (3, 7)])
def test_interval_contains_estimate_and_agrees_with_wilson_and_exact(k, n):
    outcomes = [True] * k + [False] * (n - k)
    r = proportion(outcomes)
    assert (r["ci_low"], r["ci_high"]) == wilson_interval(k, n)
    assert r["value"] == pytest.approx(k / n)
    boot = proportion(outcomes, method="bootstrap", seed=1)
    assert boot["ci_low"] <= k / n <= boot["ci_high"]
    wl, wh = wilson_interval(k, n)
    el, eh = clopper_pearson_interval(k, n)
    assert el <= wl <= k / n <= wh <= eh  # Wilson lies inside the exact interval for these counts
    width = boot["ci_high"] - boot["ci_low"]
    assert 0.6 * (wh - wl) <= width <= 1.3 * (eh - el)


def test_bootstrap_is_seeded():
    assert bootstrap_interval(7, 32, seed=5) == bootstrap_interval(7, 32, seed=5)
    draws = {bootstrap_interval(7, 32, seed=s, n_boot=200) for s in range(10)}
    assert len(draws) > 1


def test_bootstrap_equals_resampling_outcomes_in_distribution():
    # drawing Binomial(n, k/n) is the bootstrap of the outcomes themselves
    k, n, reps = 9, 30, 20000
    rng = np.random.default_rng(0)
    data = np.array([1] * k + [0] * (n - k))
    resampled = data[rng.integers(0, n, size=(reps, n))].mean(axis=1)
    lo, hi = np.quantile(resampled, [0.025, 0.975])
    blo, bhi = bootstrap_interval(k, n, n_boot=reps, seed=1)
    assert abs(lo - blo) <= 1 / n + 1e-9 and abs(hi - bhi) <= 1 / n + 1e-9


def test_known_exact_and_wilson_values():
    # reference values (R: binom.test(5, 20)$conf.int; prop.test(..., correct=FALSE) Wilson)
    lo, hi = clopper_pearson_interval(5, 20)
    assert lo == pytest.approx(0.0865715, abs=1e-5) and hi == pytest.approx(0.4910459, abs=1e-5)
    lo, hi = wilson_interval(5, 20)
    assert lo == pytest.approx(0.1118617, abs=1e-5) and hi == pytest.approx(0.4687009, abs=1e-5)
    assert clopper_pearson_interval(0, 10)[0] == 0.0 and clopper_pearson_interval(10, 10)[1] == 1.0


def test_bad_counts_raise():
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        bootstrap_interval(0, 0)


def test_restoration_rate():
    assert restoration_rate(0.02, 0.14, 0.11) == pytest.approx(0.25)
    assert restoration_rate(0.1, 0.1, 0.05) is None
