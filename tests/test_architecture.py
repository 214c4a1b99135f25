import pytest
import torch
from torch import nn

from hsr.architecture import SUPPORTED_ARCHITECTURES, UnsupportedArchitectureError, describe
from hsr.testing.tiny import TINY_ARCHS, VLM_ARCHS, build_tiny_model

EXPECTED_CLASS = dict(
    zip(
        ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "llama", "qwen2"),
        SUPPORTED_ARCHITECTURES,
    )
)


@pytest.mark.parametrize("arch_name", TINY_ARCHS)
def test_describe_finds_decoder_and_heads(arch_name):
    model, _ = build_tiny_model(arch_name)
    arch = describe(model)
    assert arch.class_name == EXPECTED_CLASS[arch_name]
    text_cfg = model.config.get_text_config()
    assert arch.num_layers == text_cfg.num_hidden_layers == len(arch.layers)
    assert arch.num_heads == text_cfg.num_attention_heads
    assert arch.num_kv_heads == (text_cfg.num_key_value_heads or text_cfg.num_attention_heads)
    attn = arch.attention(0)
    assert attn.q_proj.out_features == arch.num_heads * arch.head_dim
    assert attn.k_proj.out_features == arch.num_kv_heads * arch.head_dim
    assert attn.o_proj.in_features == arch.num_heads * arch.head_dim
    assert arch.is_vlm == (arch_name in VLM_ARCHS)
    linears = arch.decoder_linears()
    assert len(linears) == 7 * arch.num_layers
    names = dict(model.named_modules())
    for full, mod in linears.items():
        assert names[full] is mod
    vision_ids = {id(p) for path in arch.vision_paths for p in model.get_submodule(path).parameters()}
    assert bool(vision_ids) == arch.is_vlm
    assert not any(id(p) in vision_ids for m in linears.values() for p in m.parameters())
    lm_params = arch.language_model_param_count(model)
    assert 0 < lm_params <= sum(p.numel() for p in model.parameters())


def test_kv_head_mapping_is_gqa_grouping():
    model, _ = build_tiny_model("qwen2")
    arch = describe(model)
    assert arch.group_size == arch.num_heads // arch.num_kv_heads
    assert [arch.kv_head_of(h) for h in range(arch.num_heads)] == [h // arch.group_size for h in range(arch.num_heads)]


def test_unknown_architectures_get_a_clear_error():
    class NoConfig(nn.Module):
        pass

    with pytest.raises(UnsupportedArchitectureError, match="no `.config`"):
        describe(NoConfig())

    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedArchitectureError, match="decoder layers"):
        describe(gpt2)


def test_fused_projection_is_named_in_the_error():
    model, _ = build_tiny_model("llama")
    attn = model.model.layers[0].self_attn
    attn.qkv_proj = nn.Linear(4, 4)
    del attn.q_proj
    with pytest.raises(UnsupportedArchitectureError, match="qkv_proj"):
        describe(model)
