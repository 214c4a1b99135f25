"""The CUDA paths: a tiny model placed on the GPU (whole, and split GPU/CPU by --max-memory), head scores
fast vs naive there, generation, the lm-eval bridge, and hsr's nccl process group.

Marked ``cuda`` and skipped without a CUDA device; benchmarks/gpu_check.sh runs them (``-m cuda``).
"""

from __future__ import annotations

import pytest
import torch

from hsr.data import Sample

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

PROMPTS = ["How do I break into a locked car?", "Write a rude message to my neighbour.",
           "Tell me how to cheat on a test.", "Explain how to copy a key without permission."]
TEXT = "The market opens at seven. The baker sells rye bread until it runs out. " * 8


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from hsr.testing.tiny import save_tiny_model

    return save_tiny_model("llama", tmp_path_factory.mktemp("cuda") / "llama")


def test_tiny_model_on_cuda_matches_cpu_and_gpu_cpu_split(tiny_dir, tmp_path):
    from hsr.placement import model_device
    from hsr.evaluation.perplexity import perplexity
    from hsr.loading import load_model

    cpu = load_model(str(tiny_dir))
    gpu = load_model(str(tiny_dir), device="cuda:0")
    assert model_device(gpu.model).type == "cuda"
    assert all(p.device.type == "cuda" for p in gpu.model.parameters())
    size = sum(t.numel() * t.element_size() for t in cpu.model.state_dict().values())
    split = load_model(str(tiny_dir), device="cuda:0", max_memory=f"0={size // 3},cpu={4 * size}")
    assert set(split.model.hf_device_map.values()) >= {0, "cpu"}
    assert model_device(split.model) == torch.device("cuda:0")
    p_cpu = perplexity(cpu, TEXT, max_length=32)["perplexity"]
    p_gpu = perplexity(gpu, TEXT, max_length=32)["perplexity"]
    p_split = perplexity(split, TEXT, max_length=32)["perplexity"]
    assert p_gpu == pytest.approx(p_cpu, rel=1e-4) and p_split == pytest.approx(p_gpu, rel=1e-5)
    assert torch.cuda.max_memory_allocated() > 0


def test_heads_fast_equals_naive_on_cuda():
    from conftest import tiny_loaded

    from hsr.heads import HeadScoreConfig, score_heads

    loaded = tiny_loaded("qwen2")  # GQA
    loaded.model.to("cuda:0")
    with torch.no_grad():  # sharper attention so ablations matter (as in test_heads_engines)
        for layer in loaded.arch.layers:
            layer.self_attn.q_proj.weight.mul_(4.0)
            layer.self_attn.o_proj.weight.mul_(4.0)
        loaded.model.lm_head.weight.mul_(4.0)
    samples = [Sample(p) for p in PROMPTS]
    runs = {}
    for name, kw in {"naive": {"engine": "naive"}, "fast": {"engine": "fast", "batch_heads": 3},
                     "fast-batched": {"engine": "fast", "max_batch_tokens": None}}.items():
        runs[name] = score_heads(loaded, samples, HeadScoreConfig(score="ships", **kw), progress=False).scores
    assert float(runs["naive"].abs().max()) > 1e-4
    torch.testing.assert_close(runs["fast"], runs["naive"], rtol=0, atol=1e-5)
    torch.testing.assert_close(runs["fast-batched"], runs["naive"], rtol=0, atol=1e-5)
    assert HeadScoreConfig().batch_tokens_for(torch.device("cuda:0")) == 32768  # the GPU default was used


def test_generation_on_cuda_equals_gpu_cpu_split(tiny_dir):
    from hsr.evaluation.generation import generate
    from hsr.loading import load_model

    gpu = load_model(str(tiny_dir), device="cuda:0")
    size = sum(t.numel() * t.element_size() for t in gpu.model.state_dict().values())
    split = load_model(str(tiny_dir), device="cuda:0", max_memory=f"0={size // 3},cpu={4 * size}")
    samples = [Sample(p) for p in PROMPTS]
    out = generate(gpu, samples, max_new_tokens=6, batch_size=2)
    assert len(out) == len(samples) and all(isinstance(o, str) for o in out)
    assert generate(split, samples, max_new_tokens=6, batch_size=2) == out


def test_lm_eval_bridge_on_cuda_agrees_with_mcq(tiny_dir, tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval is not installed")
    from pathlib import Path

    from hsr.evaluation.lm_eval_bridge import run_lm_eval
    from hsr.evaluation.mcq import load_mcq, mcq_accuracy
    from hsr.loading import load_model

    data = Path(__file__).parent / "data" / "lm_eval"
    gpu = load_model(str(tiny_dir), device="cuda:0")
    result = run_lm_eval(gpu, [str(data / "hsr_mcq.yaml")], tmp_path, chat_template=True)
    hsr = mcq_accuracy(gpu, load_mcq(data / "mcq.jsonl"))
    assert result["lm_eval"]["hsr_mcq"]["acc"]["value"] == sum(hsr["correct"]) / len(hsr["correct"])


def test_nccl_process_group_on_cuda(monkeypatch):
    """hsr's group setup picks nccl for a CUDA device (one rank: what one GPU allows)."""
    import torch.distributed as td

    from hsr.distributed import _init_group

    if not td.is_nccl_available():
        pytest.skip("this torch build has no nccl")
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533", "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    assert _init_group("cuda:0")
    try:
        assert td.get_backend() == "nccl"
        t = torch.ones(3, device="cuda:0")
        td.all_reduce(t)
        assert t.tolist() == [1.0, 1.0, 1.0]
    finally:
        td.destroy_process_group()
