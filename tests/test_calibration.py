import pytest
import torch

from hsr.architecture import final_norm
from hsr.calibration import capture_layer0_inputs, run_layer
from hsr.data import Sample, encode
from hsr.testing.tiny import TINY_ARCHS, VLM_ARCHS, tiny_image

from conftest import tiny_loaded


@pytest.mark.parametrize("arch_name", TINY_ARCHS)
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
        xs = capture_layer0_inputs(loaded.model, loaded.arch, [enc])
        for layer in loaded.arch.layers:
            xs = run_layer(layer, xs)
        replay = loaded.model.lm_head(final_norm(loaded.arch)(xs[0].hidden))
    torch.testing.assert_close(replay, full, rtol=1e-5, atol=1e-5)


def test_response_only_token_mask(tmp_path):
    loaded = tiny_loaded("llama")
    enc = encode(loaded.processor, Sample("Hi there", "Hello! How can I help?"), include_response=True)
    xs = capture_layer0_inputs(loaded.model, loaded.arch, [enc], response_only=True)
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
