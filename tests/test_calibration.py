import pytest
import torch

from hsr.architecture import final_norm
from hsr.calibration import capture_inputs, run_layer, walk_layers
from hsr.data import Sample, encode
from hsr.testing.tiny import MIXED_ATTENTION_ARCHS, TINY_ARCHS, VLM_ARCHS, tiny_image

from conftest import tiny_loaded


@pytest.mark.parametrize("arch_name", TINY_ARCHS + MIXED_ATTENTION_ARCHS)
def test_layerwise_replay_equals_full_forward(arch_name, tmp_path):
    loaded = tiny_loaded(arch_name)
    image = None
    if arch_name in VLM_ARCHS:
        image = tmp_path / "img.png"
        tiny_image(seed=3).save(image)
    sample = Sample("What is shown here?", "A small test picture.", image=image)
    enc = encode(loaded.processor, sample, include_response=True, max_length=512)
    assert enc.response_mask.sum() > 0 and not enc.response_mask[0, : enc.prompt_length].any()
    with torch.no_grad():
        full = loaded.model(**enc.inputs).logits
        xs = capture_inputs(loaded.model, loaded.arch, [enc])
        for layer in loaded.arch.layers:
            xs = run_layer(layer, xs)
        replay = loaded.model.lm_head(final_norm(loaded.arch)(xs[0].hidden))
    torch.testing.assert_close(replay, full, rtol=1e-5, atol=1e-5)


def test_response_only_token_mask(tmp_path):
    loaded = tiny_loaded("llama")
    enc = encode(loaded.processor, Sample("Hi there", "Hello! How can I help?"), include_response=True)
    xs = capture_inputs(loaded.model, loaded.arch, [enc], response_only=True)
    assert torch.equal(xs[0].token_mask, enc.response_mask[0])
    decoded = loaded.tokenizer.decode(enc.inputs["input_ids"][0][enc.response_mask[0]])
    assert decoded.startswith("Hello! How can I help?")


def test_max_length_caps_the_response_and_rejects_long_prompts():
    from hsr.data import DataError

    loaded = tiny_loaded("llama")
    enc = encode(loaded.processor, Sample("Hi", "word " * 200), include_response=True, max_length=40)
    assert enc.length == 40
    with pytest.raises(DataError, match="longer than max_length"):
        encode(loaded.processor, Sample("word " * 100), max_length=20)


@pytest.mark.parametrize("arch_name", MIXED_ATTENTION_ARCHS)
def test_each_layer_gets_its_own_arguments(arch_name):
    """Layers of different attention types get different masks; replaying layer 0's to all is wrong."""
    loaded = tiny_loaded(arch_name)
    enc = encode(loaded.processor, Sample("Tell me a long story about a red fox and a river."), max_length=512)
    assert enc.length > 2 * 4  # longer than the sliding window
    with torch.no_grad():
        full = loaded.model(**enc.inputs).logits
        (x,) = capture_inputs(loaded.model, loaded.arch, [enc])
        assert len(x.layer_kwargs) == loaded.arch.num_layers
        wrong = x.hidden
        for layer in loaded.arch.layers:  # the old behaviour: layer 0's arguments everywhere
            wrong = layer(wrong, **x.layer_kwargs[0])
        wrong = loaded.model.lm_head(final_norm(loaded.arch)(wrong))
    assert (wrong - full).abs().max() > 1e-3


def test_walk_layers_propagates_through_the_layer_as_the_caller_left_it():
    loaded = tiny_loaded("llama")
    enc = encode(loaded.processor, Sample("Hi there", "Hello!"), include_response=True)
    xs = capture_inputs(loaded.model, loaded.arch, [enc])
    seen = []
    with torch.no_grad():
        for step in walk_layers(loaded.arch, xs):
            seen.append((step.index, step.inputs[0].layer))
            if step.index == 0:
                before = step.inputs[0].hidden.clone()
                step.layer.self_attn.o_proj.weight.zero_()  # the next layer must see this change
            else:
                expected = step.inputs[0].hidden
        attn_out_zero = loaded.arch.layers[0].mlp(loaded.arch.layers[0].post_attention_layernorm(before)) + before
    assert seen == [(0, 0), (1, 1)]
    torch.testing.assert_close(expected, attn_out_zero, rtol=1e-5, atol=1e-6)
