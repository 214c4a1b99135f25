"""The head-score registry (issue 20): built-in scores keep their pinned numbers, bit for bit."""

from __future__ import annotations

import json

import pytest
import torch

from heads_pins import CASES, PINS, compute


@pytest.fixture
def one_thread():
    """The pins were made with one thread; another thread count changes the reduction order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name,arch,options", CASES, ids=[c[0] for c in CASES])
def test_scores_keep_their_pinned_bits(name, arch, options, tmp_path, one_thread):
    pins = json.loads(PINS.read_text())
    got = json.loads(json.dumps(compute(arch, options, tmp_path)))  # through JSON, like heads.json
    want = pins["cases"][name]
    if pins["torch"] != torch.__version__:  # another torch may round differently: still within float32 noise
        for a, b in zip(sum(got["scores"], []), sum(want["scores"], [])):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
        return
    assert got == want
