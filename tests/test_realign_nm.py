"""Structure-preserving restoration keeps every N:M group valid and swaps the right weights."""

import pytest
import torch

from hsr.pruning import is_valid_nm, nm_mask, unstructured_mask
from hsr.realign.nm import detect_nm, limit_per_group, reprune_for


def test_detect_nm():
    g = torch.Generator().manual_seed(0)
    assert detect_nm([nm_mask(torch.rand(6, 16, generator=g), 2, 4), nm_mask(torch.rand(3, 8, generator=g), 2, 4)]) == (2, 4)
    assert detect_nm([nm_mask(torch.rand(6, 16, generator=g), 4, 8)]) in {(4, 8), (2, 4), (1, 2)}
    assert detect_nm([nm_mask(torch.rand(6, 16, generator=g), 1, 2)]) == (1, 2)
    assert detect_nm([unstructured_mask(torch.rand(6, 16, generator=g), 0.5)]) is None
    assert detect_nm([torch.zeros(4, 8, dtype=torch.bool)]) is None


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4), (3, 4)])
@pytest.mark.parametrize("seed", range(4))
def test_swaps_keep_groups_valid_and_pick_least_useful(n, m, seed):
    g = torch.Generator().manual_seed(seed)
    rows, cols = 5, 4 * m
    mask = nm_mask(torch.rand(rows, cols, generator=g), n, m)
    want = mask & (torch.rand(rows, cols, generator=g) < 0.7)
    safety = torch.randint(0, 4, (rows, cols), generator=g).float()
    utility = torch.randint(0, 4, (rows, cols), generator=g).float()
    restore = limit_per_group(want, safety, n, m)
    assert not (restore & ~want).any()
    x = reprune_for(restore, mask, utility, m)
    new = (mask & ~restore) | x
    assert is_valid_nm(new, n, m)
    assert not (x & mask).any()  # only previously kept weights get re-pruned
    for r in range(rows):
        for gi in range(cols // m):
            sl = slice(gi * m, (gi + 1) * m)
            w, kept_restore = want[r, sl], restore[r, sl]
            assert int(kept_restore.sum()) == min(int(w.sum()), m - n)
            # the restorations kept are the highest-safety ones (ties: lower index)
            order = sorted([i for i in range(m) if w[i]], key=lambda i: (-safety[r, sl][i].item(), i))
            assert set(kept_restore.nonzero().squeeze(1).tolist()) == set(order[: m - n])
            # the re-pruned weights are the least useful kept ones (ties: lower index)
            kept = [i for i in range(m) if not mask[r, sl][i]]
            k = int(kept_restore.sum())
            least = sorted(kept, key=lambda i: (utility[r, sl][i].item(), i))[:k]
            assert set(x[r, sl].nonzero().squeeze(1).tolist()) == set(least)
