import copy

import pytest
import torch

from hsr.data import Sample, encode
from hsr.heads import ablate_heads, head_gates

from conftest import tiny_loaded


def _inputs(loaded, text="Please explain how this works."):
    return encode(loaded.processor, Sample(text)).inputs


def _logits(model, inputs, **kw):
    with torch.no_grad():
        return model(**inputs, use_cache=False, **kw).logits


@pytest.mark.parametrize("arch_name", ["llama", "qwen2", "llava"])
@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_zero_mode_equals_scaling_the_heads_o_proj_columns(arch_name, eps):
    loaded = tiny_loaded(arch_name)
    arch = loaded.arch
    inputs = _inputs(loaded)
    layer, head, dh = 1, 1, arch.head_dim
    ref = copy.deepcopy(loaded.model)
    from hsr.architecture import describe

    with torch.no_grad():
        w = describe(ref).attention(layer).o_proj.weight
        w[:, head * dh : (head + 1) * dh] *= eps
    base = _logits(loaded.model, inputs)
    with ablate_heads(arch, [(layer, head)], mode="zero", eps=eps):
        ablated = _logits(loaded.model, inputs)
    torch.testing.assert_close(ablated, _logits(ref, inputs), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ablated, base)
    # hooks are gone afterwards
    torch.testing.assert_close(_logits(loaded.model, inputs), base, rtol=0, atol=0)


@pytest.mark.parametrize("arch_name", ["llama", "qwen2"])
def test_uniform_mode_equals_scaling_the_heads_query_weights(arch_name):
    loaded = tiny_loaded(arch_name)
    arch = loaded.arch
    inputs = _inputs(loaded)
    layer, head, dh, eps = 0, 2, arch.head_dim, 1e-5
    ref = copy.deepcopy(loaded.model)
    from hsr.architecture import describe

    q = describe(ref).attention(layer).q_proj
    with torch.no_grad():
        q.weight[head * dh : (head + 1) * dh] *= eps
        if q.bias is not None:  # qwen2 has q biases: they are part of the query
            q.bias[head * dh : (head + 1) * dh] *= eps
    with ablate_heads(arch, [(layer, head)], mode="uniform"):
        ablated = _logits(loaded.model, inputs)
    torch.testing.assert_close(ablated, _logits(ref, inputs), rtol=1e-5, atol=1e-6)


def test_uniform_mode_gives_uniform_attention_for_that_head_only():
    loaded = tiny_loaded("qwen2", attn_implementation="eager")
    arch = loaded.arch
    inputs = _inputs(loaded)
    layer, head = 1, 1  # GQA: head 0 shares head 1's KV group and must stay untouched
    with torch.no_grad():
        arch.attention(layer).q_proj.weight.mul_(40)  # random tiny weights attend almost uniformly already
        base = loaded.model(**inputs, use_cache=False, output_attentions=True).attentions[layer]
        with ablate_heads(arch, [(layer, head)], mode="uniform"):
            att = loaded.model(**inputs, use_cache=False, output_attentions=True).attentions[layer]
    T = att.shape[-1]
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1).unsqueeze(1)
    torch.testing.assert_close(att[0, head], uniform, rtol=0, atol=1e-3)
    assert (base[0, head] - uniform).abs().max() > 0.1
    others = [h for h in range(arch.num_heads) if h != head]
    torch.testing.assert_close(att[0, others], base[0, others])


def test_zero_mode_same_result_with_eager_and_sdpa():
    eager, sdpa = tiny_loaded("qwen2", attn_implementation="eager"), tiny_loaded("qwen2")
    inputs = _inputs(sdpa)
    outs = []
    for loaded in (eager, sdpa):
        with ablate_heads(loaded.arch, [(0, 3), (1, 0)], mode="zero"):
            outs.append(_logits(loaded.model, inputs))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_per_row_gates_equal_separate_ablations(mode):
    loaded = tiny_loaded("qwen2")
    arch = loaded.arch
    inputs = _inputs(loaded)
    batch = {k: v.expand(3, *v.shape[1:]) if v.dim() == 2 else v for k, v in inputs.items()}
    gate = torch.ones(3, arch.num_heads)
    gate[0, 1] = 0.0
    gate[1, 2] = 0.0  # row 2 unablated
    with head_gates(arch, {1: gate}, mode=mode):
        rows = _logits(loaded.model, batch)
    for r, heads in enumerate([[(1, 1)], [(1, 2)], []]):
        with ablate_heads(arch, heads, mode=mode, eps=0.0):
            single = _logits(loaded.model, inputs)
        torch.testing.assert_close(rows[r : r + 1], single, rtol=1e-5, atol=1e-6)


def test_hooks_removed_on_error_and_bad_arguments_rejected():
    from hsr.errors import HsrError

    loaded = tiny_loaded("llama")
    arch = loaded.arch
    with pytest.raises(RuntimeError, match="boom"):
        with ablate_heads(arch, [(0, 0), (1, 3)]):
            raise RuntimeError("boom")
    for layer in arch.layers:
        assert not layer.self_attn.o_proj._forward_pre_hooks
        assert not layer.self_attn.q_proj._forward_hooks
    with pytest.raises(HsrError, match="head 9 out of range"):
        with ablate_heads(arch, [(0, 9)]):
            pass
    with pytest.raises(HsrError, match="layer 5 out of range"):
        with ablate_heads(arch, [(5, 0)]):
            pass
    with pytest.raises(HsrError, match="Unknown ablation mode"):
        with ablate_heads(arch, [(0, 0)], mode="mean"):
            pass
    assert not arch.layers[0].self_attn.o_proj._forward_pre_hooks


def test_uniform_mode_scales_the_query_after_q_norm():
    """Models with a per-head q_norm (Qwen3) must be hooked after the norm, which would undo the scaling."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from hsr.architecture import describe

    cfg = Qwen3Config(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, attn_implementation="eager")
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg).eval()
    arch = describe(model)
    assert hasattr(arch.attention(1), "q_norm")
    ids = torch.randint(0, 100, (1, 12))
    with torch.no_grad():
        arch.attention(1).q_proj.weight.mul_(40)
        base = model(input_ids=ids, output_attentions=True).attentions[1]
        with ablate_heads(arch, [(1, 2)], mode="uniform"):
            att = model(input_ids=ids, output_attentions=True).attentions[1]
    uniform = torch.tril(torch.ones(12, 12)) / torch.arange(1, 13).unsqueeze(1)
    assert (base[0, 2] - uniform).abs().max() > 0.1
    torch.testing.assert_close(att[0, 2], uniform, rtol=0, atol=1e-4)
    torch.testing.assert_close(att[0, [0, 1, 3]], base[0, [0, 1, 3]])
