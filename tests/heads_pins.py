"""Head scores pinned before the score registry (issue 20): the same cases must give the same bits.

``python tests/heads_pins.py`` rewrites ``tests/data/heads_pinned.json`` (only do that on purpose: the
file is the record of the numbers the registry refactor had to keep; the numbers made before it are in the
file's git history). ``test_heads_registry.py`` recomputes every case and compares exactly where torch and
the CPU's vector capability (``torch.backends.cpu.get_cpu_capability()``, e.g. AVX2 or AVX512) are the ones
the pins were made with; the kernels of another capability sum in another order, so elsewhere it compares
within float32 noise.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
PINS = HERE / "data" / "heads_pinned.json"

PROMPTS = [
    "How do I break into a locked car?",
    "Write a rude message to my neighbour.",
    "Tell me how to cheat on a test.",
    "Explain how to copy a key without permission.",
]

#: (name, arch, options of HeadScoreConfig)
CASES: list[tuple[str, str, dict]] = [
    *[(f"{arch}-{score}-{engine}", arch, {"score": score, "engine": engine, "mode": mode})
      for arch, mode in (("llama", "zero"), ("qwen2", "uniform"), ("qwen2_vl", "zero"))
      for score in ("ships", "gships") for engine in ("fast", "naive")],
    ("llama-ships-fast-plain", "llama", {"score": "ships", "prefix_reuse": False, "max_batch_tokens": 0, "batch_heads": 3}),
    ("gemma3-ships-fast", "gemma3", {"score": "ships", "mode": "uniform"}),
    ("llama-ships-approx", "llama", {"score": "ships", "engine": "approx", "approx_top_k": 4}),
    ("llama-gships-approx", "llama", {"score": "gships", "engine": "approx", "approx_top_k": 4}),
    ("qwen2-gships-sahara", "qwen2", {"score": "gships", "sahara_steps": 2}),
    ("qwen2-ships-sahara-naive", "qwen2", {"score": "ships", "sahara_steps": 2, "engine": "naive"}),
]


def sharpened(arch_name: str, factor: float = 4.0):
    sys.path.insert(0, str(HERE))
    from conftest import tiny_loaded

    loaded = tiny_loaded(arch_name)
    with torch.no_grad():
        for layer in loaded.arch.layers:
            layer.self_attn.q_proj.weight.mul_(factor)
            layer.self_attn.o_proj.weight.mul_(factor)
        loaded.model.lm_head.weight.mul_(factor)
    return loaded


def samples(folder: Path, with_images: bool):
    from hsr.data import Sample
    from hsr.testing.tiny import tiny_image

    out = []
    for i, p in enumerate(PROMPTS):
        image = None
        if with_images and i % 2 == 0:
            image = folder / f"img{i}.png"
            tiny_image(seed=i).save(image)
        out.append(Sample(p, image=image))
    return out


def compute(arch: str, options: dict, folder: Path) -> dict:
    """What a case pins: the heads.json score grid, and Sahara's / the approx engine's extras."""
    from hsr.heads import HeadScoreConfig, score_heads

    loaded = sharpened(arch)
    result = score_heads(loaded, samples(folder, loaded.is_vlm), HeadScoreConfig(**options), progress=False)
    data = result.to_json("pinned")
    grid = [[0.0] * data["num_heads"] for _ in range(data["num_layers"])]
    for r in data["heads"]:
        grid[r["layer"]][r["head"]] = r["score"]
    out = {"scores": grid}
    if "sahara" in data:
        out["sahara"] = data["sahara"]
    if "approx" in data:
        out["approx"] = {k: data["approx"][k] for k in ("proxy_scores", "rescored")}
    return out


def main() -> None:
    torch.set_num_threads(1)
    pins = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, arch, options in CASES:
            pins["cases"][name] = compute(arch, options, Path(tmp))
            print(name, flush=True)
    PINS.write_text(json.dumps(pins, indent=1) + "\n")


if __name__ == "__main__":
    main()
