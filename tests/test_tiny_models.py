"""The offline tiny-model builders: every architecture builds, runs, reloads and is seeded."""

from __future__ import annotations

import pytest
import torch

from hsr.testing.tiny import (
    TINY_ARCHS,
    VLM_ARCHS,
    build_tiny_model,
    build_tiny_tokenizer,
    example_inputs,
    save_tiny_model,
    tiny_image,
)

EXPECTED_CLASS = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
}
GENERATION_PROMPT = "<|im_start|>assistant\n"


def _tokenizer(proc):
    return getattr(proc, "tokenizer", proc)


def _first_attention(model):
    return model.get_decoder().layers[0].self_attn


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def test_arch_lists():
    assert set(VLM_ARCHS) < set(TINY_ARCHS)
    assert set(TINY_ARCHS) - set(VLM_ARCHS) == {"llama", "qwen2"}
    assert set(EXPECTED_CLASS) == set(TINY_ARCHS)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_builds_small_eval_float32_model(arch):
    model, proc = build_tiny_model(arch)
    assert type(model).__name__ == EXPECTED_CLASS[arch]
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert model.config._attn_implementation == "sdpa"
    text = model.config.get_text_config()
    assert text.num_hidden_layers == 2 and text.hidden_size == 64
    assert text.num_attention_heads == 4
    assert text.num_key_value_heads == (4 if arch == "llava" else 2)  # llava is the MHA one
    assert text.vocab_size == len(_tokenizer(proc))
    attn = _first_attention(model)
    has_bias = attn.q_proj.bias is not None and attn.k_proj.bias is not None and attn.v_proj.bias is not None
    assert has_bias == arch.startswith("qwen2")
    if arch in VLM_ARCHS:
        assert hasattr(proc, "image_processor") and hasattr(proc, "tokenizer")
    else:
        assert not hasattr(proc, "image_processor")


@pytest.mark.parametrize("arch", VLM_ARCHS)
def test_forward_with_image(arch):
    model, proc = build_tiny_model(arch)
    inputs = example_inputs(arch, proc)
    ids = inputs["input_ids"]
    assert ids.shape[0] == 1 and ids.shape[1] < 200
    image_id = model.config.image_token_id
    assert int((ids == image_id).sum()) >= 4  # the placeholder was expanded to the image's tokens
    logits = _logits(model, inputs)
    assert logits.shape == (1, ids.shape[1], len(proc.tokenizer))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_text_only_forward(arch):
    model, proc = build_tiny_model(arch)
    inputs = example_inputs(arch, proc, prompt="How do I boil an egg?", with_image=False)
    assert "pixel_values" not in inputs
    logits = _logits(model, inputs)
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(_tokenizer(proc)))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_seed_fixes_weights(arch):
    a = build_tiny_model(arch, seed=0)[0].state_dict()
    b = build_tiny_model(arch, seed=0)[0].state_dict()
    c = build_tiny_model(arch, seed=1)[0].state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("arch", ["llama", "llava", "qwen2_vl"])
def test_eager_attention_matches_sdpa(arch):
    sdpa, proc = build_tiny_model(arch)
    eager, _ = build_tiny_model(arch, attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"
    inputs = example_inputs(arch, proc)
    torch.testing.assert_close(_logits(eager, inputs), _logits(sdpa, inputs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_save_and_reload_with_auto_classes(arch, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = save_tiny_model(arch, tmp_path / arch, seed=3)
    assert out == tmp_path / arch
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    model, proc = build_tiny_model(arch, seed=3)
    if arch in VLM_ARCHS:
        reloaded = AutoModelForImageTextToText.from_pretrained(out)
        reproc = AutoProcessor.from_pretrained(out)
        assert type(reproc).__name__ == type(proc).__name__
    else:
        reloaded = AutoModelForCausalLM.from_pretrained(out)
        reproc = AutoTokenizer.from_pretrained(out)
    assert type(reloaded).__name__ == EXPECTED_CLASS[arch]
    reloaded.eval()
    # The reloaded processor applies the chat template and expands the image as before.
    inputs, reinputs = example_inputs(arch, proc), example_inputs(arch, reproc)
    assert inputs.keys() == reinputs.keys()
    for key in inputs:
        assert torch.equal(inputs[key], reinputs[key]), key
    torch.testing.assert_close(_logits(reloaded, reinputs), _logits(model, inputs), rtol=0, atol=0)
    text = "I'm sorry, I cannot help with that. Prices rose 12345% in 2024!"
    assert _tokenizer(reproc)(text)["input_ids"] == _tokenizer(proc)(text)["input_ids"]


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_chat_template_text_only(arch):
    _, proc = build_tiny_model(arch)
    contents = ["How do I boil an egg?"]
    if arch in VLM_ARCHS:
        contents.append([{"type": "text", "text": "How do I boil an egg?"}])
    for content in contents:
        for target in {id(proc): proc, id(_tokenizer(proc)): _tokenizer(proc)}.values():
            msgs = [{"role": "user", "content": content}]
            prompt = target.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            assert prompt == "<|im_start|>user\nHow do I boil an egg?<|im_end|>\n" + GENERATION_PROMPT
            bare = target.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
            assert not bare.endswith(GENERATION_PROMPT)
            reply = "Boil it." if isinstance(content, str) else [{"type": "text", "text": "Boil it."}]
            full = target.apply_chat_template(msgs + [{"role": "assistant", "content": reply}], tokenize=False)
            assert full == prompt + "Boil it.<|im_end|>\n"


@pytest.mark.parametrize("arch", VLM_ARCHS)
def test_chat_template_renders_the_image_placeholder(arch):
    _, proc = build_tiny_model(arch)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    token = "<|image_pad|>" if arch.startswith("qwen2") else "<image>"
    assert text.count(token) == 1 and text.endswith("Hi<|im_end|>\n" + GENERATION_PROMPT)


def test_tokenizer_vocab_specials_and_round_trip():
    tok = build_tiny_tokenizer()
    assert 400 <= len(tok) <= 1000
    assert tok.pad_token_id is not None and tok.eos_token == "<|im_end|>"
    for special in ("<|im_start|>", "<|im_end|>", "<image>", "<|image_pad|>", "<|vision_start|>",
                    "<fake_token_around_image>", "<global-img>", "<row_1_col_1>", "<row_6_col_6>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1, special
    text = "I'm sorry, I cannot help with that."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(text) / 2  # BPE learned real merges
    assert tok.decode(ids) == text
    assert tok.decode(tok("Ünïcödé 日本 42", add_special_tokens=False)["input_ids"]) == "Ünïcödé 日本 42"
    # Fresh wrapper objects around one cached BPE: mutating one leaves the next untouched.
    tok.padding_side = "right"
    tok.add_tokens(["<extra>"])
    again = build_tiny_tokenizer()
    assert again is not tok and again.padding_side == "left" and len(again) == len(tok) - 1


def test_tiny_image_is_deterministic():
    a, b, c = tiny_image(0), tiny_image(0), tiny_image(1)
    assert a.mode == "RGB" and a.size == (64, 64) and tiny_image(size=40).size == (40, 40)
    assert a.tobytes() == b.tobytes() != c.tobytes()


def test_unknown_arch_is_rejected():
    with pytest.raises(ValueError, match="Unknown tiny architecture"):
        build_tiny_model("gpt2")


def test_video_stand_in_refuses_videos():
    from hsr.testing.tiny import install_no_video_processor_workaround

    _, proc = build_tiny_model("qwen2_vl")
    if not install_no_video_processor_workaround():
        pytest.skip("torchvision is installed: the real video processor is used")
    with pytest.raises(RuntimeError, match="torchvision"):
        proc.video_processor([torch.zeros(2, 3, 32, 32)])


def test_runtime_modules_never_import_the_test_fixtures():
    """hsr.testing is for tests and benchmarks: importing every runtime module must not pull it in."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, hsr\n"
        "for m in pkgutil.walk_packages(hsr.__path__, 'hsr.'):\n"
        "    if not m.name.startswith('hsr.testing') and m.name != 'hsr.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.startswith('hsr.testing.')))\n"  # walk_packages imports the package
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
