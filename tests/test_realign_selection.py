"""Set difference C = (S(q) ∩ U(max_p)) − U(p) against a brute-force reference over python sets."""

import pytest
import torch

from hsr.errors import ConfigError
from hsr.realign import RealignConfig, candidate_mask, top_fraction_mask, validate_fractions
from hsr.realign.selection import top_count


def _ref_top(values: list[float], frac: float) -> set[int]:
    k = top_count(frac, len(values))
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))  # ties: lower index first
    return set(order[:k])


def _ref_candidates(u: torch.Tensor, s: torch.Tensor, p: float, q: float, max_p: float, per_row: bool) -> set[int]:
    if not per_row:
        uf, sf = u.reshape(-1).tolist(), s.reshape(-1).tolist()
        return (_ref_top(sf, q) & _ref_top(uf, max_p)) - _ref_top(uf, p)
    out: set[int] = set()
    cols = u.shape[1]
    for r in range(u.shape[0]):
        ur, sr = u[r].tolist(), s[r].tolist()
        row = (_ref_top(sr, q) & _ref_top(ur, max_p)) - _ref_top(ur, p)
        out |= {r * cols + c for c in row}
    return out


def _as_set(mask: torch.Tensor) -> set[int]:
    return set(mask.reshape(-1).nonzero().squeeze(1).tolist())


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_candidates_match_brute_force(per_row, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (7, 13)
    # Small integer scores so that ties are frequent and tie-breaking is exercised.
    u = torch.randint(0, 6, shape, generator=g).float()
    s = torch.randint(0, 6, shape, generator=g).float()
    for p, q, max_p in [(0.5, 0.5, 0.7), (0.0, 1.0, 1.0), (0.3, 0.2, 0.3), (0.1, 0.9, 0.95), (0.0, 0.05, 0.0)]:
        got = candidate_mask(u, s, p, q, max_p, per_row=per_row)
        assert got.shape == shape and got.dtype == torch.bool
        assert _as_set(got) == _ref_candidates(u, s, p, q, max_p, per_row), (p, q, max_p)


def test_top_fraction_counts_and_ties():
    s = torch.tensor([[1.0, 3.0, 3.0, 0.0], [3.0, 3.0, 2.0, float("nan")]])
    flat = top_fraction_mask(s, 0.5)
    assert int(flat.sum()) == 4
    assert _as_set(flat) == {1, 2, 4, 5}  # the four 3.0s
    three = top_fraction_mask(s, 3 / 8)
    assert _as_set(three) == {1, 2, 4}  # tie among the 3.0s: lower indices first
    rows = top_fraction_mask(s, 0.25, per_row=True)
    assert rows.sum(1).tolist() == [1, 1]
    assert _as_set(rows) == {1, 4}
    assert not top_fraction_mask(s, 0.0).any() and top_fraction_mask(s, 1.0).all()
    assert top_fraction_mask(s, 1.0, per_row=True)[1, 3]  # NaN counts as the lowest score, still selected at 100%


def test_rounding_is_half_up():
    assert top_count(0.5, 3) == 2
    assert top_count(0.25, 2) == 1
    assert top_count(0.7, 10) == 7
    assert top_count(0.0, 5) == 0 and top_count(1.0, 5) == 5


def test_full_candidates_when_q1_p0_maxp1():
    u, s = torch.randn(5, 6), torch.randn(5, 6)
    assert candidate_mask(u, s, 0.0, 1.0, 1.0).all()
    assert not candidate_mask(u, s, 0.7, 1.0, 0.7).any()  # p == max_p leaves nothing


@pytest.mark.parametrize(
    "p,q,max_p,msg",
    [
        (0.8, 0.5, 0.7, "0 <= p <= max_p <= 1"),
        (-0.1, 0.5, 0.7, "0 <= p <= max_p <= 1"),
        (0.5, 0.5, 1.2, "0 <= p <= max_p <= 1"),
        (0.5, 0.0, 0.7, "0 < q <= 1"),
        (0.5, 1.5, 0.7, "0 < q <= 1"),
        (float("nan"), 0.5, 0.7, "p must be a number"),
    ],
)
def test_invalid_fractions_raise_clear_errors(p, q, max_p, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        validate_fractions(p, q, max_p)
    with pytest.raises(ConfigError):
        RealignConfig(p=p, q=q, max_p=max_p).validate()
    with pytest.raises(ConfigError):
        candidate_mask(torch.ones(2, 2), torch.ones(2, 2), p, q, max_p)


@pytest.mark.parametrize(
    "kw,msg", [({"top_h": 0}, "top_h"), ({"budget": -1}, "budget"), ({"nm": "0.5", "preserve_nm": True}, "N:M"), ({"nm": "3:2", "preserve_nm": True}, "N:M"),
     ({"nm": "2:4"}, "preserve_nm")]
)
def test_invalid_config(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        RealignConfig(**kw).validate()
