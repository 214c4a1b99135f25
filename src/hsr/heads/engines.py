"""Engines that compute what ablating heads does to the model's last-position outputs.

Both engines return, per ablated head, the per-prompt KL(p_base || p_ablated) of the next-token
distribution and/or the final normed hidden state of the last prompt token; the scores in
:mod:`hsr.heads.metrics` are computed from these, so they cannot depend on the engine.

* :class:`NaiveEngine` (the reference): one full model forward per head and prompt.
* :class:`FastEngine` (exact): the vision tower and projector run once per prompt (layer-0 inputs
  are captured once), the residual stream entering layer ``l`` is cached so that heads of layer
  ``l`` only run layers ``l..L-1``, and many heads share one batched forward (one batch row per
  head, each row with its own head gate). Only the last position goes through the norm and
  ``lm_head``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..architecture import final_norm, layer_hidden, lm_head, model_device
from ..calibration import LayerInput, capture_inputs, walk_layers
from ..data import Encoded
from ..loading import LoadedModel
from .ablation import gates_for, head_gates

Head = tuple[int, int]
#: ``{layer: [head, ...]}``: which heads to ablate one at a time.
HeadPlan = Mapping[int, Sequence[int]]


def expand_batch(obj: Any, batch: int) -> Any:
    """Broadcast a batch-1 layer kwarg (masks, position ids, rotary cos/sin) to ``batch`` rows.

    Tensors with a leading batch dimension of 1 are expanded (views, no copies); M-RoPE position
    ids ``[3|4, 1, T]`` are expanded along their second dimension; everything else is kept.
    """
    if isinstance(obj, torch.Tensor):
        if obj.dim() == 3 and obj.shape[0] in (3, 4) and obj.shape[1] == 1 and obj.dtype in (torch.long, torch.int):
            return obj.expand(obj.shape[0], batch, obj.shape[2])
        if obj.dim() >= 2 and obj.shape[0] == 1:
            return obj.expand(batch, *obj.shape[1:])
        return obj
    if isinstance(obj, tuple):
        return tuple(expand_batch(o, batch) for o in obj)
    if isinstance(obj, list):
        return [expand_batch(o, batch) for o in obj]
    if isinstance(obj, dict):
        return {k: expand_batch(v, batch) for k, v in obj.items()}
    return obj


@dataclass
class LastPosition:
    """Final normed hidden state ``[B, d]`` (float64) and log-probabilities ``[B, V]`` (float32 or None)."""

    hidden: torch.Tensor
    logp: torch.Tensor | None


@dataclass
class EngineBase:
    """Shared setup: the model, the encoded prompts, the ablation mode and what to record."""

    loaded: LoadedModel
    encoded: Sequence[Encoded]
    mode: str = "zero"
    eps: float = 0.0
    want_kl: bool = True
    want_hidden: bool = True
    batch_heads: int = 16
    progress: Callable[[int], None] = lambda n: None
    base_hidden: torch.Tensor | None = field(default=None, init=False)  # [N, d] float64
    base_logp: torch.Tensor | None = field(default=None, init=False)  # [N, V] float32

    @property
    def arch(self):
        return self.loaded.arch

    @property
    def n_prompts(self) -> int:
        return len(self.encoded)

    def _finish(self, normed_last: torch.Tensor, logits: torch.Tensor | None = None) -> LastPosition:
        """Record what the scores need from the last position (``normed_last``: ``[B, d]``). ``logits``,
        when given, are the model's own output (already soft-capped by it)."""
        logp = None
        if self.want_kl:
            if logits is None:
                logits = self.arch.softcap(lm_head(self.loaded.model)(normed_last))
            logp = torch.log_softmax(logits.float(), dim=-1)
        return LastPosition(normed_last.double(), logp)

    def _record(self, outs: list[list[LastPosition]], n_heads: int) -> dict[str, torch.Tensor]:
        """``outs[prompt][chunk]`` -> ``{"kl": [heads, N], "hidden": [heads, N, d]}``."""
        data: dict[str, torch.Tensor] = {}
        if self.want_kl:
            kl = []
            for n, chunks in enumerate(outs):
                logp = torch.cat([c.logp for c in chunks])
                kl.append(_kl(self.base_logp[n : n + 1], logp))
            data["kl"] = torch.stack(kl, dim=1)
        if self.want_hidden:
            data["hidden"] = torch.stack([torch.cat([c.hidden for c in chunks]) for chunks in outs], dim=1)
        for v in data.values():
            assert v.shape[0] == n_heads
        return data


def _kl(base_logp: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    from .metrics import kl_divergence

    return kl_divergence(base_logp.expand_as(other), other)


class FastEngine(EngineBase):
    """Exact scores from cached per-layer residual streams and batched per-row head gates."""

    layer0: list[LayerInput]

    @torch.no_grad()
    def prepare(self) -> None:
        """Run the embeddings / vision side once per prompt and compute the unablated outputs."""
        model = self.loaded.model
        self.layer0 = capture_inputs(model, self.arch, self.encoded)
        base = [self.run_from(0, x, {}) for x in self.layer0]
        self.base_hidden = torch.cat([b.hidden for b in base])
        self.base_logp = torch.cat([b.logp for b in base]) if self.want_kl else None

    def run_from(
        self, start: int, x: LayerInput, gates: Mapping[int, torch.Tensor], rows: int = 1
    ) -> LastPosition:
        """Run layers ``start..L-1`` on ``x`` expanded to ``rows`` rows under ``gates``."""
        arch = self.arch
        hidden = x.hidden.expand(rows, *x.hidden.shape[1:]).contiguous()
        with head_gates(arch, gates, self.mode):
            for i in range(start, arch.num_layers):
                hidden = layer_hidden(arch.layers[i](hidden, **expand_batch(self._layer_kwargs(i, x), rows)))
        return self._finish(final_norm(arch)(hidden[:, -1:, :])[:, 0, :])

    @staticmethod
    def _layer_kwargs(i: int, x: LayerInput) -> dict[str, Any]:
        """Layer ``i``'s own keyword arguments for this prompt (masks differ between attention types)."""
        return x.layer_kwargs[i]

    def _layer_gates(self, layer: int, heads: Sequence[int], fixed: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        H = self.arch.num_heads
        row = torch.ones(len(heads), H)
        row[torch.arange(len(heads)), torch.as_tensor(list(heads), dtype=torch.long)] = self.eps
        if layer in fixed:
            row = row * fixed[layer]
        gates = {k: v for k, v in fixed.items() if k > layer}
        gates[layer] = row.to(model_device(self.loaded.model))
        return gates

    @torch.no_grad()
    def run(self, plan: HeadPlan, fixed: Sequence[Head] = ()) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Yield ``(layer, outputs)`` for each planned layer, ablating ``fixed`` heads throughout."""
        arch = self.arch
        fixed_gates = gates_for(arch, fixed, self.eps)
        wanted = sorted(layer for layer, heads in plan.items() if len(heads))
        if not wanted:
            return
        def around(layer: int):  # fixed heads stay ablated while the stream moves on
            return head_gates(arch, {layer: fixed_gates[layer]}, self.mode) if layer in fixed_gates else contextlib.nullcontext()

        for step in walk_layers(arch, self.layer0, stop=wanted[-1] + 1, around=around):
            layer = step.index
            if layer in plan and len(plan[layer]):
                heads = list(plan[layer])
                outs: list[list[LastPosition]] = []
                for x in step.inputs:
                    chunks = []
                    for s in range(0, len(heads), self.batch_heads):
                        chunk = heads[s : s + self.batch_heads]
                        gates = self._layer_gates(layer, chunk, fixed_gates)
                        chunks.append(self.run_from(layer, x, gates, rows=len(chunk)))
                    outs.append(chunks)
                    self.progress(1)
                yield layer, self._record(outs, len(heads))


class NaiveEngine(EngineBase):
    """The reference: a plain full forward of the whole model per ablated head and prompt."""

    @torch.no_grad()
    def forward(self, enc: Encoded) -> LastPosition:
        model = self.loaded.model
        device = model_device(model)
        store: dict[str, torch.Tensor] = {}

        def hook(_mod: nn.Module, _args: tuple, out: Any) -> None:
            store["normed"] = layer_hidden(out)

        handle = final_norm(self.arch).register_forward_hook(hook)
        try:
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in enc.inputs.items()}
            out = model(**inputs, use_cache=False)
        finally:
            handle.remove()
        return self._finish(store["normed"][:, -1, :], out.logits[:, -1, :])

    def prepare(self) -> None:
        base = [self.forward(enc) for enc in self.encoded]
        self.base_hidden = torch.cat([b.hidden for b in base])
        self.base_logp = torch.cat([b.logp for b in base]) if self.want_kl else None

    def run(self, plan: HeadPlan, fixed: Sequence[Head] = ()) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        for layer in sorted(plan):
            heads = list(plan[layer])
            if not heads:
                continue
            outs: list[list[LastPosition]] = [[] for _ in self.encoded]
            for n, enc in enumerate(self.encoded):
                for head in heads:
                    group = list(dict.fromkeys([*fixed, (layer, head)]))
                    with head_gates(self.arch, gates_for(self.arch, group, self.eps), self.mode):
                        outs[n].append(self.forward(enc))
                self.progress(1)
            yield layer, self._record(outs, len(heads))
