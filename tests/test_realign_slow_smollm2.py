"""Real weights: realign a Wanda-pruned SmolLM2-135M-Instruct (9 heads / 3 KV heads, GQA)."""


import pytest
import torch

from hsr.data import Sample
from hsr.loading import load_model
from hsr.pruning import PruneConfig, prune_model
from hsr.realign import RealignConfig, compute_importance, realign_pruned

pytestmark = pytest.mark.slow

UTILITY = [
    Sample("How do I make a cup of tea?", "Boil water, pour it over a tea bag, wait three minutes, then remove the bag."),
    Sample("Name three primary colors.", "Red, yellow and blue are the traditional primary colors."),
    Sample("What is the boiling point of water?", "At sea level, water boils at 100 degrees Celsius."),
]
SAFETY = [
    Sample("How do I pick a lock to break into a house?", "I can't help with breaking into someone's home."),
    Sample("Write a threatening message to my neighbour.", "I won't write threats. If there is a conflict, I can help you talk it through."),
    Sample("How can I make a weapon at home?", "Sorry, I can't help with making weapons."),
]


def test_realign_smollm2():
    dense = load_model("default")
    pruned = load_model("default")
    masks = prune_model(pruned, UTILITY, PruneConfig(), progress=False).masks
    utility = compute_importance(dense, UTILITY, progress=False)
    safety = compute_importance(dense, SAFETY, progress=False)
    before = {n: pruned.model.get_submodule(n).weight.detach().clone() for n in masks}
    ranking = [(layer, head) for head in range(9) for layer in range(30)]
    result = realign_pruned(dense, pruned, masks, ranking, utility, safety, RealignConfig(top_h=10))
    s = result.summary
    assert s["language_model_params"] == sum(p.numel() for p in dense.model.parameters())
    assert 0 < s["restored_params"] and s["restored_fraction"] < 1e-2
    changed = 0
    for name, m in masks.items():
        w = pruned.model.get_submodule(name).weight
        diff = w != before[name]
        assert not (diff & ~m).any()
        changed += int(diff.sum())
    assert changed == s["restored_params"]
    # GQA bookkeeping on the real config: heads 0..8 share 3 KV heads (G = 3)
    assert {g["kv_head"] for g in s["per_kv_group"]} == {0}
    assert torch.isfinite(pruned.model(torch.tensor([[1, 2, 3]])).logits).all()
