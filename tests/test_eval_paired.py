"""Paired statistics (McNemar exact test, paired differences, RSR interval) on hand-computed values."""

from __future__ import annotations

import pytest

from hsr.evaluation.paired import mcnemar_exact, paired_difference, restoration_rate_interval


def _pairs(both: int, a_only: int, b_only: int, neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return a, b


@pytest.mark.parametrize(
    "a_only,b_only,p",
    [
        (1, 9, 22 / 1024),  # 2 * (C(10,0) + C(10,1)) / 2^10
        (3, 7, 352 / 1024),  # 2 * (1 + 10 + 45 + 120) / 2^10 (statsmodels mcnemar(exact=True): 0.34375)
        (0, 5, 2 / 32),  # 2 * 1 / 2^5
        (4, 4, 1.0),  # symmetric: capped at 1
        (0, 0, 1.0),  # no discordant prompt
        (0, 12, 2 / 4096),
    ],
)
def test_mcnemar_exact_known_values(a_only, b_only, p):
    a, b = _pairs(5, a_only, b_only, 7)
    result = mcnemar_exact(a, b)
    assert result["p_value"] == pytest.approx(p, rel=1e-12)
    assert (result["a_only"], result["b_only"], result["n"]) == (a_only, b_only, 12 + a_only + b_only)
    assert mcnemar_exact(b, a)["p_value"] == pytest.approx(p, rel=1e-12)  # two-sided


def test_mcnemar_needs_the_same_prompts():
    with pytest.raises(ValueError, match="same prompts"):
        mcnemar_exact([True, False], [True])


def test_paired_difference_value_interval_and_test():
    pruned, realigned = _pairs(4, 8, 1, 7)  # pruned complied on 12, realigned on 5, of 20
    d = paired_difference(pruned, realigned, n_boot=4000, seed=3)
    assert d["value"] == pytest.approx(5 / 20 - 12 / 20)
    assert d["ci_low"] <= d["value"] <= d["ci_high"] < 0  # realigned is safer, interval excludes 0
    assert d["mcnemar_p"] == pytest.approx(2 * (1 + 9) / 2**9)
    assert (d["a_only"], d["b_only"]) == (8, 1)
    assert paired_difference(pruned, realigned, n_boot=4000, seed=3) == d  # seeded


def test_paired_interval_is_narrower_than_unpaired_when_outcomes_agree():
    # identical models differ on no prompt: the paired interval is exactly [0, 0]
    a = [True] * 10 + [False] * 10
    d = paired_difference(a, a, n_boot=500)
    assert d["value"] == d["ci_low"] == d["ci_high"] == 0.0 and d["mcnemar_p"] == 1.0


def test_rsr_point_value_and_interval():
    n = 40
    dense = [True] * 4 + [False] * (n - 4)  # 10%
    pruned = [True] * 24 + [False] * (n - 24)  # 60%
    realigned = [True] * 12 + [False] * (n - 12)  # 30%: RSR = (0.6 - 0.3) / (0.6 - 0.1) = 0.6
    r = restoration_rate_interval(dense, pruned, realigned, n_boot=3000, seed=0)
    assert r["value"] == pytest.approx(0.6)
    assert r["ci_low"] < 0.6 < r["ci_high"] and r["ci_low"] > 0
    control = list(pruned)  # no change: RSR 0, interval around 0
    c = restoration_rate_interval(dense, pruned, control, n_boot=3000, seed=0)
    assert c["value"] == 0.0 and c["ci_low"] == c["ci_high"] == 0.0


def test_rsr_undefined_when_pruning_changed_nothing():
    same = [True] * 5 + [False] * 15
    r = restoration_rate_interval(same, same, [False] * 20, n_boot=500)
    assert r["value"] is None and r["ci_low"] is None and r["undefined_replicates"] == 500


def test_rsr_undefined_when_pruning_made_the_model_safer():
    """Pruned ASR below dense (e.g. every pruned answer degenerate): no safety was lost, so no RSR."""
    from hsr.evaluation.metrics import restoration_rate

    assert restoration_rate(0.13, 0.0, 0.0) is None and restoration_rate(0.1, 0.1, 0.0) is None
    assert restoration_rate(0.1, 0.5, 0.3) == pytest.approx(0.5)
    dense = [True] * 4 + [False] * 16
    r = restoration_rate_interval(dense, [False] * 20, [False] * 20, n_boot=300)
    assert r["value"] is None and r["ci_low"] is None and r["undefined_replicates"] == 300
