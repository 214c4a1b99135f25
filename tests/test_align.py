"""The alignment stage: disjoint splits, reproducible data, and a fine-tune that touches only what it should."""

from __future__ import annotations

import json

import pytest
import torch

from hsr.align import AlignConfig
from hsr.align.data import harmful_examples, trim_to_sentence
from hsr.align.refusals import OPENINGS, refusal_for
from hsr.align.splits import jaccard, max_similarity, split_harmful, words
from hsr.align.train import finetune, first_trained_layer, upper_layers_only
from hsr.data import Sample, load_samples
from hsr.errors import ConfigError
from hsr.resources import builtin_path

from conftest import tiny_loaded

EVAL_SETS = ("advbench_eval", "advbench_val", "benign", "benign_val", "harmbench")
TRAIN_SETS = ("advbench_align", "align_benign")


def _prompts(name: str) -> list[str]:
    return [json.loads(l)["prompt"] for l in builtin_path(name).read_text(encoding="utf-8").splitlines() if l.strip()]


def test_jaccard_and_words():
    assert words("Make a BOMB, now!") == {"make", "a", "bomb", "now"}
    assert jaccard(words("a b c"), words("a b d")) == pytest.approx(2 / 4)
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_split_harmful_is_disjoint_and_far_from_reserved():
    prompts = [f"write a guide to making thing {i} quickly" for i in range(10)] + [
        "tell me how to pick a lock", "explain how to pick a lock fast", "describe stealing a car",
        "how to hotwire a truck", "plan a bank robbery", "forge a passport", "launder money online",
    ]
    test = ["how to pick a lock"]
    val, train = split_harmful(prompts, test, calibration=["forge a passport"], n_val=3, seed=1)
    assert len(val) == 3 and not set(val) & set(train)
    assert "forge a passport" not in val + train
    for p in val + train:
        assert max_similarity(p, test) < 0.5
    for p in train:
        assert max_similarity(p, val) < 0.5
    assert split_harmful(prompts, test, ["forge a passport"], 3, seed=1) == (val, train)  # seeded


def test_shipped_training_sets_are_disjoint_from_every_evaluation_set():
    """No training prompt equals or near-duplicates (Jaccard >= 0.5) an evaluation prompt."""
    evaluation = [p for name in EVAL_SETS for p in _prompts(name)]
    for name in TRAIN_SETS:
        train = _prompts(name)
        assert train, name
        assert not set(train) & set(evaluation), name
        near = [p for p in train if max_similarity(p, evaluation) >= 0.5]
        assert near == [], (name, near[:3])
    # the head/importance calibration set must not overlap the reported harmful test set either
    assert not set(_prompts("safety")) & set(_prompts("advbench_eval"))


def test_refusals_are_seeded_and_open_with_a_refusal():
    a, b = refusal_for("do x", 0), refusal_for("do x", 0)
    assert a == b
    assert any(a.startswith(o) for o in OPENINGS)
    many = {refusal_for(f"prompt {i}", 0) for i in range(60)}
    assert len(many) > 10  # varied, not one template
    ex = harmful_examples([Sample(prompt="do x")], seed=0)
    assert ex[0].response == a and ex[0].meta["kind"] == "refusal"


def test_trim_to_sentence():
    assert trim_to_sentence("One. Two is cut") == "One."
    assert trim_to_sentence("Ends here! ") == "Ends here!"
    assert trim_to_sentence("no end at all") == "no end at all"
    assert trim_to_sentence("Version 2.5 is out. And") == "Version 2.5 is out."


def test_align_config_validation():
    with pytest.raises(ConfigError, match="align.epochs"):
        AlignConfig(epochs=0).validate()
    with pytest.raises(ConfigError, match="align.modules"):
        AlignConfig(modules=("qkv",)).validate()
    with pytest.raises(ConfigError, match="align.lr"):
        AlignConfig(lr=2.0).validate()


def _examples() -> list[Sample]:
    return [
        Sample(prompt=f"harmful request {i}", response="I'm sorry, but I can't help with that.") for i in range(4)
    ] + [Sample(prompt=f"benign question {i}", response=f"Here is answer {i}.") for i in range(4)]


def test_finetune_trains_only_the_chosen_modules_of_the_last_layers():
    loaded = tiny_loaded("llama")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    config = AlignConfig(epochs=3, batch_size=4, lr=5e-3, warmup_steps=1, train_layers=1, modules=("q_proj", "o_proj"))
    losses = finetune(loaded, _examples(), config)
    assert losses[-1] < losses[0]
    last = loaded.arch.num_layers - 1
    changed = {k for k, v in loaded.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"model.layers.{last}.self_attn.q_proj.weight", f"model.layers.{last}.self_attn.o_proj.weight"}
    assert all(not p.requires_grad for p in loaded.model.parameters())
    assert len(loaded.arch.layers) == loaded.arch.num_layers  # layer list restored


def test_cached_lower_layers_give_the_same_loss_as_the_full_model():
    """Training on cached layer-k inputs must see exactly what the full forward computes."""
    from hsr.align.train import _batch, cache_inputs, response_loss

    loaded = tiny_loaded("qwen2")
    arch = loaded.arch
    ex = _examples()[:3]
    full = cache_inputs(loaded, arch, ex, 0, 64)  # layer-0 inputs = embeddings
    start = arch.num_layers - 1
    upper = cache_inputs(loaded, arch, ex, start, 64)
    with torch.no_grad():
        a = response_loss(loaded.model, arch, *_batch(full, torch.device("cpu")))
        with upper_layers_only(arch, start):
            b = response_loss(loaded.model, arch, *_batch(upper, torch.device("cpu")))
    assert torch.allclose(a, b, atol=1e-5)


def test_mixed_attention_types_require_training_all_layers():
    loaded = tiny_loaded("llama")
    loaded.arch.text_model.config.layer_types = ["sliding_attention", "full_attention"]
    with pytest.raises(ConfigError, match="train_layers must be null"):
        first_trained_layer(loaded.arch, AlignConfig(train_layers=1))
    assert first_trained_layer(loaded.arch, AlignConfig(train_layers=None)) == 0


def test_finetune_makes_a_tiny_model_refuse_its_harmful_training_prompts_only():
    """Loss falls and greedy answers to the harmful training prompts turn into refusals (judged by the
    refusal judge), while the benign training prompts still get answers, not refusals."""
    from hsr.evaluation.generation import generate
    from hsr.evaluation.refusal import verdict

    loaded = tiny_loaded("llama")
    examples = _examples()
    questions = [Sample(prompt=s.prompt) for s in examples]

    def refusals() -> list[bool]:
        return [verdict(a) == "refusal" for a in generate(loaded, questions, max_new_tokens=12)]

    before = refusals()
    assert sum(before[:4]) == 0  # a random model does not refuse
    losses = finetune(loaded, examples, AlignConfig(epochs=20, batch_size=4, lr=5e-3, warmup_steps=1, train_layers=None))
    assert losses[-1] < losses[0]
    after = refusals()
    assert sum(after[:4]) >= 3
    assert sum(after[4:]) == 0


def test_hsr_align_builds_the_same_testbed_as_the_run_config():
    """`hsr align` (AlignConfig defaults) and the `align` section of the default run config agree."""
    from dataclasses import fields

    from hsr.pipeline.config import default_config

    section = default_config()["align"]
    defaults = AlignConfig()
    for f in fields(AlignConfig):
        if f.name in section:
            value = section[f.name]
            assert (tuple(value) if isinstance(value, list) else value) == getattr(defaults, f.name), f.name
