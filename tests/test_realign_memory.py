"""Realign holds one matrix's mask at a time, never the whole model's (a quarter of the fp32 model as
``bool``), and the lazy paths give the same results as whole-model dictionaries."""

import json
import logging
import math
import weakref
from collections.abc import Mapping

import numpy as np
import pytest
import torch
from conftest import tiny_loaded
from conftest import with_nonzero_biases as _biased
from safetensors.torch import save_file
from test_realign_restore import UTILITY, _pruned
from test_realign_restore import qwen2_scores  # noqa: F401 (a fixture, shared)

from hsr.io import MaskFile, PackedMasks, count_masked, load_masks, save_masks
from hsr.loading import load_model
from hsr.pruning import MASK_FILE, PruneConfig, prune_model, save_pruned
from hsr.realign import (
    RESTORED_FILE,
    RealignConfig,
    infer_masks,
    load_pruned_masks,
    realign_pruned,
    save_realigned,
)
from hsr.realign.restore import _apply_budget

CONFIGS = {
    "default": RealignConfig(top_h=4),
    "include_mlp": RealignConfig(top_h=4, include_mlp=True),
    "budget": RealignConfig(top_h=4, budget=25),
    "whole_head": RealignConfig(top_h=4, whole_head=True),
}
NM_CONFIGS = {
    "preserve_nm": RealignConfig(top_h=4, preserve_nm=True),
    "preserve_nm_budget": RealignConfig(top_h=4, preserve_nm=True, nm="2:4", budget=10),
}


class _Alive:
    """Counts the tensors handed out that are still referenced: the most alive at once is how many
    matrices' masks a caller held together."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref] = []
        self.most = 0
        self.handed = 0

    def track(self, t: torch.Tensor) -> torch.Tensor:
        self.refs = [r for r in self.refs if r() is not None]
        self.refs.append(weakref.ref(t))
        self.most = max(self.most, len(self.refs))
        self.handed += 1
        return t


class CountingMasks(Mapping):
    """Masks handed out as fresh tensors, one per read, tracked by an :class:`_Alive`."""

    def __init__(self, masks: dict[str, torch.Tensor], alive: _Alive) -> None:
        self._masks, self.alive = masks, alive

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.alive.track(self._masks[name].clone())

    def __iter__(self):
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)


def _heads(arch):
    return [(layer, h) for h in range(arch.num_heads) for layer in range(arch.num_layers)]


def _same(a, b) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def _run(masks, scores, config, sparsity, tmp_path, label):
    dense = _biased(tiny_loaded("qwen2"))
    pruned, _ = _pruned("qwen2", sparsity)
    result = realign_pruned(dense, pruned, masks, _heads(dense.arch), *scores, config)
    out = save_realigned(tmp_path / label, pruned, result)
    return result, out, pruned


@pytest.mark.parametrize("name", [*CONFIGS, *NM_CONFIGS])
def test_realign_holds_one_mask_at_a_time_and_matches_plain_dicts(name, qwen2_scores, tmp_path):
    config, sparsity = (CONFIGS[name], "0.5") if name in CONFIGS else (NM_CONFIGS[name], "2:4")
    _, masks = _pruned("qwen2", sparsity)
    alive = _Alive()
    lazy, lazy_out, lazy_model = _run(CountingMasks(masks, alive), qwen2_scores, config, sparsity, tmp_path, "lazy")
    assert alive.handed >= 2 * len(masks) and len(masks) >= 10  # every mask was read, more than a few exist
    assert alive.most <= 2, f"{alive.most} of {len(masks)} masks held at once"
    plain, plain_out, plain_model = _run(masks, qwen2_scores, config, sparsity, tmp_path, "plain")
    assert lazy.summary == plain.summary and lazy.summary["restored_params"] > 0
    assert _same(lazy.restored, plain.restored) and _same(lazy.masks_after, plain.masks_after)
    assert _same(lazy_model.model.state_dict(), plain_model.model.state_dict())
    for f in (MASK_FILE, RESTORED_FILE):
        assert (lazy_out / f).read_bytes() == (plain_out / f).read_bytes()
    if config.preserve_nm:
        assert lazy.summary["repruned_params"] > 0


def test_masks_read_from_the_mask_file_one_at_a_time(qwen2_scores, tmp_path, monkeypatch):
    """load_pruned_masks, realign_pruned and save_realigned read one mask of the file at a time."""
    loaded = _biased(tiny_loaded("qwen2"))
    pruned_dir = save_pruned(tmp_path / "pruned", loaded, prune_model(loaded, UTILITY, PruneConfig(), progress=False))
    alive = _Alive()
    read = MaskFile.__getitem__
    monkeypatch.setattr(MaskFile, "__getitem__", lambda self, name: alive.track(read(self, name)))
    dense, pruned = _biased(tiny_loaded("qwen2")), load_model(pruned_dir)
    masks = load_pruned_masks(pruned_dir, dense.model, pruned.model)
    assert masks.source == "mask file" and alive.most <= 2
    result = realign_pruned(dense, pruned, masks, _heads(dense.arch), *qwen2_scores, RealignConfig(top_h=4))
    out = save_realigned(tmp_path / "realigned", pruned, result)
    assert alive.handed >= 2 * len(masks) >= 20 and alive.most <= 2
    handed = alive.handed
    assert torch.equal(result.masks_after[next(iter(masks))], masks[next(iter(masks))])  # read again when used
    assert alive.handed == handed + 2
    monkeypatch.undo()
    saved, before = load_masks(out / MASK_FILE), load_masks(pruned_dir / MASK_FILE)
    restored = load_masks(out / RESTORED_FILE)
    assert list(saved) == list(before)
    for name, mask in saved.items():
        assert torch.equal(mask, before[name] & ~restored.get(name, torch.zeros_like(mask)))
    assert result.summary["pruned_params_after"] == count_masked(saved) == count_masked(before) - count_masked(restored)


def test_inferred_masks_are_held_packed(caplog):
    dense, pruned = _biased(tiny_loaded("qwen2")), _biased(tiny_loaded("qwen2"))
    with caplog.at_level(logging.WARNING):
        masks = load_pruned_masks(None, dense.model, pruned.model)
    assert masks.source == "inferred" and "nothing can be restored" in caplog.text and count_masked(masks) == 0
    assert isinstance(infer_masks(dense.model, pruned.model), PackedMasks)


def test_save_masks_writes_the_bytes_of_safetensors_save_file(tmp_path):
    """Streamed one matrix at a time, the file is what save_file would write for the packed tensors."""
    g = torch.Generator().manual_seed(0)
    masks = {f"model.layers.{i}.{rel}": torch.rand(5 + i, 11, generator=g) < 0.4
             for i in (3, 10, 0) for rel in ("self_attn.q_proj", "mlp.up_proj")}
    masks["empty"] = torch.zeros(0, 4, dtype=torch.bool)
    packed = PackedMasks()
    for name, mask in masks.items():
        packed[name] = mask
    reference = tmp_path / "reference.safetensors"
    shapes = json.dumps({k: list(v.shape) for k, v in masks.items()}, sort_keys=True)
    save_file({k: torch.from_numpy(np.packbits(v.numpy().reshape(-1))) for k, v in masks.items()}, str(reference),
              metadata={"shapes": shapes})
    for label, source in (("dict", masks), ("packed", packed)):
        save_masks(source, tmp_path / f"{label}.safetensors")
        assert (tmp_path / f"{label}.safetensors").read_bytes() == reference.read_bytes(), label
    back = load_masks(reference)
    assert sorted(back) == sorted(masks) and all(torch.equal(back[k], masks[k]) for k in masks)
    assert count_masked(packed) == count_masked(masks) == sum(int(m.sum()) for m in masks.values())


def _budget_reference(restore: dict, safety: dict, budget: int) -> dict:
    """The whole-table budget (before realign went matrix by matrix): one stable sort of every candidate."""
    names = list(restore)
    idx = [restore[n].reshape(-1).nonzero().squeeze(1) for n in names]
    vals = torch.cat([torch.nan_to_num(safety[n].reshape(-1)[i], nan=-math.inf) for n, i in zip(names, idx)])
    owner = torch.cat([torch.full_like(i, k) for k, i in enumerate(idx)])
    keep = torch.sort(vals, descending=True, stable=True).indices[:budget]
    out = {n: torch.zeros_like(restore[n]) for n in names}
    for k, n in enumerate(names):
        out[n].view(-1)[torch.cat(idx)[keep[owner[keep] == k]]] = True
    return out


@pytest.mark.parametrize("budget", [0, 1, 7, 20, 41, 1000])
def test_budget_from_restored_scores_equals_one_global_sort(budget):
    """Ties (scores drawn from 4 values), NaN and infinities: the threshold pass keeps what the sort kept."""
    g = torch.Generator().manual_seed(budget)
    restore = {f"m{i}": torch.rand(6, 8, generator=g) < 0.3 for i in range(4)}
    safety = {n: torch.randint(0, 4, (6, 8), generator=g).float() for n in restore}
    safety["m1"][0, :4] = torch.tensor([math.nan, math.inf, -math.inf, math.nan])
    restore["m1"][0, :4] = True
    packed = PackedMasks()
    for n, r in restore.items():
        packed[n] = r
    kept = {n: torch.nan_to_num(safety[n][restore[n]], nan=-math.inf) for n in restore}
    got = _apply_budget(packed, kept, budget)
    want = _budget_reference(restore, safety, budget)
    assert _same(dict(got.items()), want)
    assert sum(int(r.sum()) for r in want.values()) == min(budget, sum(int(r.sum()) for r in restore.values()))


def test_summary_counts_match_the_masks(qwen2_scores, tmp_path):
    _, masks = _pruned("qwen2", "2:4")
    result, _, _ = _run(masks, qwen2_scores, NM_CONFIGS["preserve_nm"], "2:4", tmp_path, "nm")
    s = result.summary
    assert s["pruned_params_before"] == sum(int(m.sum()) for m in masks.values())
    assert s["pruned_params_after"] == sum(int(m.sum()) for m in result.masks_after.values())
    assert s["pruned_params_after"] == s["pruned_params_before"] - s["restored_weights"] + s["repruned_params"]
