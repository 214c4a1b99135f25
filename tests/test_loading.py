import pytest
import torch

from hsr.loading import ModelLoadError, load_model
from hsr.testing.tiny import save_tiny_model


def test_load_local_vlm_and_text_models(tmp_path):
    vlm = load_model(save_tiny_model("idefics3", tmp_path / "vlm"))
    assert vlm.is_vlm and hasattr(vlm.processor, "image_processor")
    lm = load_model(save_tiny_model("qwen2", tmp_path / "lm"))
    assert not lm.is_vlm and lm.tokenizer is lm.processor
    assert not lm.model.training
    assert lm.model.dtype == torch.float32


def test_input_directory_is_not_modified(tmp_path):
    src = save_tiny_model("llama", tmp_path / "m")
    before = {p.name: p.stat().st_mtime_ns for p in src.iterdir()}
    load_model(src)
    assert {p.name: p.stat().st_mtime_ns for p in src.iterdir()} == before


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "missing", "not found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no config.json"),
        (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is a file"),
        (lambda p: p / "x.gguf", "GGUF file not found"),
    ],
)
def test_bad_paths_get_clear_errors(tmp_path, make, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(make(tmp_path))


def test_bad_dtype(tmp_path):
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        load_model(save_tiny_model("llama", tmp_path / "m"), dtype="float8")


def test_hub_id_offline_gives_actionable_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="Hugging Face Hub"):
        load_model("no-such-org/no-such-model-hsr")


@pytest.mark.slow
def test_load_from_gguf_file():
    from hsr.loading import smollm_gguf_path

    loaded = load_model(smollm_gguf_path())
    assert loaded.arch.num_heads == 9 and loaded.arch.num_kv_heads == 3 and loaded.arch.num_layers == 30


@pytest.mark.parametrize("arch", ["qwen2_vl", "smolvlm"])
def test_saved_video_capable_vlm_reloads_in_fresh_process(tmp_path, arch):
    """A saved Qwen2-VL / SmolVLM folder loads through hsr.loading in a new interpreter."""
    import subprocess
    import sys

    from hsr.testing.tiny import save_tiny_model

    save_tiny_model(arch, tmp_path / arch)
    code = (
        "from hsr.loading import load_model; "
        f"m = load_model({str(tmp_path / arch)!r}); "
        "print(type(m.processor).__name__, m.is_vlm)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "True" in out.stdout


def test_resaved_video_capable_processor_keeps_real_video_processor(tmp_path):
    """Saving a loaded Qwen2-VL again (as prune/realign do) names the real video processor, not the stand-in."""
    import json

    from hsr.testing.tiny import save_tiny_model

    src = save_tiny_model("qwen2_vl", tmp_path / "a")
    before = json.loads((src / "processor_config.json").read_text())["video_processor"]
    load_model(str(src)).processor.save_pretrained(tmp_path / "b")
    after = json.loads((tmp_path / "b" / "processor_config.json").read_text())["video_processor"]
    assert after["video_processor_type"] == before["video_processor_type"] == "Qwen2VLVideoProcessor"
    for key in ("patch_size", "merge_size", "temporal_patch_size"):
        assert after[key] == before[key]
