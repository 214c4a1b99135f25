"""Shared fixtures: tiny random models of every supported architecture, built offline."""

from __future__ import annotations

import json

import pytest

from hsr.architecture import describe
from hsr.loading import LoadedModel


def tiny_loaded(arch: str, seed: int = 0, **kw) -> LoadedModel:
    from hsr.testing.tiny import build_tiny_model

    model, proc = build_tiny_model(arch, seed=seed, **kw)
    return LoadedModel(model=model, processor=proc, arch=describe(model), source=f"tiny-{arch}")


@pytest.fixture
def calib_jsonl(tmp_path):
    """A small calibration set with images, in the documented JSONL format."""
    from hsr.testing.tiny import tiny_image

    rows = []
    for i in range(4):
        name = f"img{i}.png"
        tiny_image(seed=i).save(tmp_path / name)
        rows.append({"prompt": f"Describe picture number {i}.", "response": f"It shows shape {i} in color.", "image": name})
    rows.append({"prompt": "How do I boil an egg?", "response": "Put it in boiling water for nine minutes."})
    path = tmp_path / "calib.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def with_nonzero_biases(loaded: LoadedModel) -> LoadedModel:
    """Tiny Qwen2 biases start at zero; give them seeded nonzero values so bias handling is tested."""
    import torch

    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for lin in loaded.arch.decoder_linears(include_mlp=True).values():
            if lin.bias is not None:
                lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.1 + 0.05)
    return loaded
