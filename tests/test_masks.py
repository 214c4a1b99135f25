import pytest
import torch

from hsr.errors import ConfigError
from hsr.pruning import Sparsity, is_valid_nm, nm_mask, select_mask, unstructured_mask
from hsr.pruning.masks import pruned_per_row


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.5, 0.7, 0.99])
def test_unstructured_mask_has_exact_per_row_sparsity(ratio):
    scores = torch.rand(13, 37, generator=torch.Generator().manual_seed(0))
    mask = unstructured_mask(scores, ratio)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert (mask.sum(1) == pruned_per_row(37, ratio)).all()


def test_unstructured_mask_prunes_the_lowest_scores():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0], [0.5, 0.1, 0.9, 0.7]])
    mask = unstructured_mask(scores, 0.5)
    assert mask.tolist() == [[False, True, False, True], [True, True, False, False]]
    # every pruned score is <= every kept score, row by row
    for r in range(2):
        assert scores[r][mask[r]].max() <= scores[r][~mask[r]].min()


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_mask_groups_are_valid_and_lowest(n, m):
    scores = torch.rand(6, 32, generator=torch.Generator().manual_seed(1))
    mask = nm_mask(scores, n, m)
    assert is_valid_nm(mask, n, m)
    g = scores.reshape(6, -1, m)
    gm = mask.reshape(6, -1, m)
    pruned_max = torch.where(gm, g, torch.full_like(g, -1)).amax(-1)
    kept_min = torch.where(~gm, g, torch.full_like(g, 2)).amin(-1)
    assert (pruned_max <= kept_min).all()


def test_is_valid_nm_detects_broken_groups():
    mask = nm_mask(torch.rand(2, 8), 2, 4)
    assert is_valid_nm(mask, 2, 4)
    mask[0, 0] = ~mask[0, 0]
    assert not is_valid_nm(mask, 2, 4)


def test_nm_mask_rejects_widths_not_multiple_of_m():
    with pytest.raises(ConfigError, match="multiple of 4"):
        nm_mask(torch.rand(2, 6), 2, 4)


def test_sparsity_parse():
    assert Sparsity.parse("0.5") == Sparsity(ratio=0.5)
    assert Sparsity.parse("2:4") == Sparsity(n=2, m=4)
    assert Sparsity.parse("4:8").effective_ratio == 0.5
    assert select_mask(torch.rand(3, 8), Sparsity.parse("2:4")).sum() == 12
    for bad in ["1.0", "-0.1", "abc", "4:2", "0:4"]:
        with pytest.raises(ConfigError):
            Sparsity.parse(bad)
