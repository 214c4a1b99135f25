"""Head -> weight slices for MHA and GQA: exactly the expected rows / columns, nothing else."""

import pytest

from hsr.realign import HeadGeometry, head_bias_mask, head_weight_mask
from hsr.realign.slices import K, O, Q, V

from conftest import tiny_loaded


def _entries(mask):
    return set(map(tuple, mask.nonzero().tolist()))


@pytest.mark.parametrize("num_heads,num_kv", [(8, 2), (8, 8), (8, 4), (8, 1)])
def test_slices_touch_exactly_the_expected_entries(num_heads, num_kv):
    d, hidden = 4, 20  # hidden != H * d on purpose: head width comes from head_dim
    geom = HeadGeometry(num_heads, num_kv, d)
    group = num_heads // num_kv
    shapes = {Q: (num_heads * d, hidden), K: (num_kv * d, hidden), V: (num_kv * d, hidden), O: (hidden, num_heads * d)}
    for h in range(num_heads):
        g = h // group
        expected = {
            Q: {(r, c) for r in range(h * d, (h + 1) * d) for c in range(hidden)},
            K: {(r, c) for r in range(g * d, (g + 1) * d) for c in range(hidden)},
            V: {(r, c) for r in range(g * d, (g + 1) * d) for c in range(hidden)},
            O: {(r, c) for r in range(hidden) for c in range(h * d, (h + 1) * d)},
        }
        for rel, shape in shapes.items():
            assert _entries(head_weight_mask(geom, rel, [h], shape)) == expected[rel], (h, rel)
        assert set(head_bias_mask(geom, Q, [h], num_heads * d).nonzero().squeeze(1).tolist()) == set(range(h * d, (h + 1) * d))
        assert set(head_bias_mask(geom, K, [h], num_kv * d).nonzero().squeeze(1).tolist()) == set(range(g * d, (g + 1) * d))
        assert head_bias_mask(geom, O, [h], hidden) is None
    # several heads: the union; GQA heads of one group share k/v rows
    both = head_weight_mask(geom, K, [0, group - 1], shapes[K])
    assert _entries(both) == _entries(head_weight_mask(geom, K, [0], shapes[K]))
    two = head_weight_mask(geom, Q, [1, 3], shapes[Q])
    assert int(two.sum()) == 2 * d * hidden


def test_head_index_out_of_range():
    with pytest.raises(ValueError):
        head_weight_mask(HeadGeometry(4, 2, 8), Q, [4], (32, 16))


def test_geometry_uses_config_head_dim():
    loaded = tiny_loaded("llama")  # head_dim 32 != hidden / heads = 16
    geom = HeadGeometry.from_arch(loaded.arch)
    assert geom.head_dim == 32 and geom.group_size == 2
    q = loaded.arch.layer_linears(0)["self_attn.q_proj"].weight
    mask = head_weight_mask(geom, Q, [1], tuple(q.shape))
    assert mask[32:64].all() and int(mask.sum()) == 32 * q.shape[1]
