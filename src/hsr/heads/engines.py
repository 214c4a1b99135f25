"""Engines that compute what ablating heads does to the model's last-position outputs.

Every forward ends in the same readouts (:mod:`hsr.heads.readouts`: the last-position next-token
log-probabilities, the final normed last-token hidden state, or any registered one), computed from the
final normed state of the last prompt token with the same operations in every engine. Per prompt and
ablated head, the engines keep what the scores' stats (:class:`hsr.heads.scores.Stat`) ask for (e.g.
KL(p_base || p_ablated), or the ablated readout itself); the scores reduce those, so they cannot depend
on the engine.

The walk is public, for the approximate engine's estimates and for new engines: :meth:`FastEngine.layer_kwargs`
(what decoder layer ``i`` receives for a prompt), :meth:`FastEngine.forward_layers` (layers under per-row
head gates), :meth:`FastEngine.suffixlayer_kwargs` (kwargs for batched suffix rows), :meth:`FastEngine.walk`
(layer-major over the prefix and every prompt group), :meth:`EngineBase.read` (readouts of a final
normed state) and :meth:`EngineBase.record` (the stats of one batch of heads).

* :class:`NaiveEngine` (the reference): one full model forward per head and prompt.
* :class:`FastEngine` (exact): the vision tower and projector run once per prompt (layer-0 inputs
  are captured once), the residual stream entering layer ``l`` is cached so that heads of layer
  ``l`` only run layers ``l..L-1``, and many heads share one batched forward (one batch row per
  head, each row with its own head gate). Only the last position goes through the norm and
  ``lm_head``. Where exact (:mod:`hsr.heads.rows`), the prompts' shared template prefix runs once
  per head batch and each prompt's own suffix runs on its keys/values, and several prompts'
  suffixes share one forward (rows = heads x prompts, sized by ``max_batch_tokens``). Every pass
  is layer-major (:func:`hsr.calibration.layers_onloaded`): an offloaded layer is loaded once per
  pass for the prefix and all prompt groups, not once per forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..architecture import final_norm, layer_hidden, lm_head, position_ids_batch_dim

from ..placement import model_device
from ..calibration import LayerInput, capture_inputs, layers_onloaded
from ..data import Encoded
from ..loading import LoadedModel
from .ablation import gates_for, head_gates
from .readouts import LAST_HIDDEN, LAST_LOGPROBS, Readout
from .rows import (
    PrefixKV,
    PrefixReplay,
    RowBatch,
    pad_rows,
    common_prefix,
    group_prompts,
    prefix_kwargs,
    suffix_kwargs,
    unsafe_reason,
)

Head = tuple[int, int]
#: ``{layer: [head, ...]}``: which heads to ablate one at a time.
HeadPlan = Mapping[int, Sequence[int]]
#: ``{readout name: [rows, ...]}``: the readouts of some rows of one forward.
Readouts = dict[str, torch.Tensor]


def expand_batch(obj: Any, batch: int) -> Any:
    """Broadcast a batch-1 layer kwarg (masks, position ids, rotary cos/sin) to ``batch`` rows.

    Tensors with a leading batch dimension of 1 are expanded (views, no copies); position ids are
    expanded along their batch dimension (:func:`hsr.architecture.position_ids_batch_dim`: M-RoPE ids
    keep theirs second); everything else is kept.
    """
    if isinstance(obj, torch.Tensor):
        if position_ids_batch_dim(obj) == 1 and obj.shape[1] == 1:
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


def rows_of(readouts: Readouts, index: Any) -> Readouts:
    """The readouts of some rows (``index``: a slice or an index tensor)."""
    return {k: v[index] for k, v in readouts.items()}


@dataclass
class EngineBase:
    """Shared setup: the model, the encoded prompts, the ablation mode and what to record.

    ``stats``: what to keep per prompt and ablated head (:class:`hsr.heads.scores.Stat`; at most one per
    name); ``sets``: the rows of each prompt set among ``encoded`` (default: all harmful).
    """

    loaded: LoadedModel
    encoded: Sequence[Encoded]
    mode: str = "zero"
    eps: float = 0.0
    stats: Sequence[Any] = ()
    sets: Mapping[str, slice] | None = None
    batch_heads: int = 16
    prefix_reuse: bool = True
    max_batch_tokens: int = 0
    keep_streams: bool = False
    progress: Callable[[int], None] = lambda n: None
    #: The unablated readouts ``[N, ...]`` of every prompt (after :meth:`prepare`).
    base: Readouts = field(default_factory=dict, init=False)
    #: The reference model's readouts ``[N, ...]`` (the dense model of a dense/pruned pair, set by the
    #: pair engines of :mod:`hsr.heads.pair_engines`); what stats with ``against="reference"`` compare with.
    reference: Readouts = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.sets is None:
            self.sets = {"harmful": slice(0, len(self.encoded))}
        names = [s.name for s in self.stats]
        if len(set(names)) != len(names):
            raise ValueError(f"two stats share a name: {names}")

    @property
    def arch(self):
        return self.loaded.arch

    @property
    def readouts(self) -> list[Readout]:
        """What every forward reads out: the final hidden state (always, for the approximate engine and
        Sahara) and each stat's readout."""
        out = {LAST_HIDDEN.name: LAST_HIDDEN}
        for stat in self.stats:
            out.setdefault(stat.readout.name, stat.readout)
        return list(out.values())

    @property
    def base_hidden(self) -> torch.Tensor | None:
        """Unablated final normed last-token states ``[N, d]`` (float64)."""
        return self.base.get(LAST_HIDDEN.name)

    @property
    def base_logp(self) -> torch.Tensor | None:
        """Unablated last-position log-probabilities ``[N, V]`` (float32), where a stat reads them."""
        return self.base.get(LAST_LOGPROBS.name)

    def merges(self, n_heads: int, fixed: Sequence[Head] = ()) -> bool:
        """Whether :meth:`run` computes ``n_heads`` heads of several layers in one merged forward
        (their rows then share batches, so their bits depend on each other). Only the fast engine does."""
        return False

    @property
    def n_prompts(self) -> int:
        return len(self.encoded)

    def read(self, normed_last: torch.Tensor, logits: torch.Tensor | None = None) -> Readouts:
        """Every readout of the last position (``normed_last``: the final normed states ``[B, d]``).
        ``logits``, when given, are the model's own output (already soft-capped by it); otherwise they
        are computed here, only where a readout needs them."""
        if logits is None and any(r.needs_logits for r in self.readouts):
            logits = self.arch.softcap(lm_head(self.loaded.model)(normed_last))
        return {r.name: r.read(normed_last, logits if r.needs_logits else None) for r in self.readouts}

    def set_base(self, per_prompt: Sequence[Readouts]) -> None:
        """Keep the unablated readouts of every prompt (one row each) as :attr:`base`."""
        self.base = {k: torch.cat([b[k] for b in per_prompt]) for k in per_prompt[0]}

    def record(self, outs: list[list[Readouts]], n_heads: int) -> dict[str, torch.Tensor]:
        """``outs[prompt][chunk]`` (the readouts of the ablated rows) -> ``{stat: [heads, N, ...]}``: each
        stat's comparison of prompt ``n``'s unablated readout with its ablated rows (or the rows themselves)."""
        data: dict[str, torch.Tensor] = {}
        for stat in self.stats:
            name = stat.readout.name
            against = self.base if stat.against == "base" else self.reference
            if stat.compare is not None and name not in against:
                raise ValueError(f"stat {stat.name!r} compares with the {stat.against} readouts, which this engine lacks")
            per = []
            for n, chunks in enumerate(outs):
                ablated = torch.cat([c[name] for c in chunks])
                per.append(ablated if stat.compare is None else stat.compare(against[name][n : n + 1], ablated))
            data[stat.name] = torch.stack(per, dim=1)
        for v in data.values():
            assert v.shape[0] == n_heads
        return data


@dataclass
class RowGroup:
    """Suffix rows sharing one forward: their batch layout, hidden states, layer kwargs and per-row gates."""

    batch: RowBatch
    hidden: torch.Tensor
    kwargs_of: Callable[[int], dict]
    gates: Mapping[int, torch.Tensor]


@dataclass
class Stream:
    """The residual stream entering one layer: the shared prefix ``[1, P, d]`` (None when not reused)
    and each prompt's own tokens ``[1, S_n, d]``. A stream may also hold one row per batch row
    (``[R, P, d]`` and ``[R, S_n, d]``, e.g. one per restored head of the pair engines): :meth:`FastEngine.walk`
    with ``rows=R`` then runs each row on its own states instead of copying one."""

    prefix: torch.Tensor | None
    suffix: list[torch.Tensor]


class FastEngine(EngineBase):
    """Exact scores from cached per-layer residual streams and batched per-row head gates.

    With ``prefix_reuse`` the prompts' shared template prefix runs once per head batch and only each
    prompt's suffix runs on top of its keys/values; with ``max_batch_tokens > 0`` several prompts'
    suffixes share a forward (rows = heads x prompts). Both are used only where exact
    (:func:`hsr.heads.rows.unsafe_reason`); ``reuse_note`` says why not otherwise.
    """

    layer0: list[LayerInput]
    prefix_len: int = 0
    rows_ok: bool = False
    reuse_note: str | None = None

    def layer_kwargs(self, i: int, x: LayerInput) -> dict[str, Any]:
        """The kwargs decoder layer ``i`` gets for prompt ``x`` (its own: masks differ between attention types)."""
        return x.layer_kwargs[i]

    @torch.no_grad()
    def prepare(self) -> None:
        """Run the embeddings / vision side once per prompt and compute the unablated outputs."""
        self.layer0 = capture_inputs(self.loaded.model, self.arch, self.encoded)
        self._setup_rows()
        self.streams: dict[int, Stream] = {0: self._initial_stream()}
        self.set_base(self.run_rows(0, self.streams[0], {}, 1))

    def _setup_rows(self) -> None:
        """Decide whether prefix reuse and prompt batching are exact here, and the prefix length."""
        L = self.arch.num_layers
        per_layer = [[self.layer_kwargs(i, x) for x in self.layer0] for i in range(L)]
        self.reuse_note = unsafe_reason(self.arch, [kw for layer in per_layer for kw in layer])
        self.rows_ok = self.reuse_note is None
        self.prefix_len = 0
        if self.rows_ok and self.prefix_reuse:
            self.prefix_len = min(common_prefix(self.layer0, kws) for kws in per_layer)
        self.lengths = [x.hidden.shape[1] - self.prefix_len for x in self.layer0]
        self._group_cache: dict[int, list[list[int]]] = {}

    def _initial_stream(self) -> Stream:
        P = self.prefix_len
        prefix = self.layer0[0].hidden[:, :P] if P else None
        return Stream(prefix, [x.hidden[:, P:] for x in self.layer0])

    def _groups(self, heads: int) -> list[list[int]]:
        if heads not in self._group_cache:
            budget = self.max_batch_tokens if self.rows_ok else 0
            self._group_cache[heads] = group_prompts(self.lengths, heads, budget)
        return self._group_cache[heads]

    def forward_layers(self, start: int, stop: int, hidden: torch.Tensor, kwargs_of: Callable[[int], dict], gates: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Layers ``start..stop-1`` on ``hidden`` under ``gates``."""
        with head_gates(self.arch, gates, self.mode):
            for i in range(start, stop):
                hidden = layer_hidden(self.arch.layers[i](hidden, **kwargs_of(i)))
        return hidden

    def suffix_layer_kwargs(self, batch: RowBatch, cache: PrefixKV | PrefixReplay | None, prefix_len: int | None = None
                       ) -> Callable[[int], dict]:
        """Layer kwargs for a suffix batch (tokens from ``prefix_len``, default the engine's prefix length);
        the captured ones themselves on the fallback path."""
        P = self.prefix_len if prefix_len is None else prefix_len
        if not self.rows_ok:
            assert len(batch.prompts) == 1 and P == 0
            x = self.layer0[batch.prompts[0]]
            return lambda i: expand_batch(self.layer_kwargs(i, x), batch.rows)
        dtype = self.layer0[0].hidden.dtype
        memo: dict[tuple[int, ...], dict] = {}

        def kwargs_of(i: int) -> dict:
            per = [self.layer_kwargs(i, self.layer0[n]) for n in batch.prompts]
            key = tuple(id(kw) for kw in per)
            if key not in memo:
                memo[key] = suffix_kwargs(lambda n: per[batch.prompts.index(n)], batch, P, cache, dtype)
            return memo[key]

        return kwargs_of

    def _prefix_kwargs(self, rows: int, cache: PrefixKV) -> Callable[[int], dict]:
        """Layer kwargs for the shared prefix on ``rows`` rows, recording its keys/values into ``cache``."""
        x0, P, dtype = self.layer0[0], self.prefix_len, self.layer0[0].hidden.dtype
        memo: dict[int, dict] = {}

        def kwargs_of(i: int) -> dict:
            kw = self.layer_kwargs(i, x0)
            if id(kw) not in memo:
                memo[id(kw)] = prefix_kwargs(kw, P, rows, cache, dtype)
            return memo[id(kw)]

        return kwargs_of

    def _group(self, prompts: list[int], stream: Stream, gates: Mapping[int, torch.Tensor], rows: int,
               cache: PrefixKV | None) -> RowGroup:
        """One forward's worth of suffix rows (``rows`` per prompt, prompt-major) entering ``stream``'s layer."""
        batch = RowBatch(prompts, [self.lengths[n] for n in prompts], rows)
        parts = [stream.suffix[n] for n in prompts]
        if parts[0].shape[0] == rows and rows > 1:  # one row per batch row already (prompt-major once stacked)
            hidden = parts[0] if len(prompts) == 1 else pad_rows(parts, batch.width, 1)
        elif len(prompts) == 1:
            hidden = parts[0].expand(rows, *parts[0].shape[1:])
        else:
            hidden = pad_rows(parts, batch.width, rows)
        tiled = {k: v.repeat(len(prompts), 1) if v.dim() == 2 else v for k, v in gates.items()}
        kv = cache.replay(len(prompts)) if cache is not None else None
        return RowGroup(batch, hidden.contiguous(), self.suffix_layer_kwargs(batch, kv), tiled)

    def walk(
        self, start: int, stop: int, stream: Stream, gates: Mapping[int, torch.Tensor], rows: int
    ) -> tuple[torch.Tensor | None, list[RowGroup]]:
        """Layers ``start..stop-1`` on ``rows`` rows per prompt, layer-major: each layer (materialized once
        when offloaded, :func:`hsr.calibration.layers_onloaded`) runs the shared prefix, recording its
        keys/values, then every prompt group's suffix rows on top of them. Returns the prefix rows and
        the groups."""
        cache = PrefixKV() if stream.prefix is not None else None
        prefix = None
        if cache is not None:
            prefix = stream.prefix.expand(rows, *stream.prefix.shape[1:]).contiguous()
            prefix_kw = self._prefix_kwargs(rows, cache)
        groups = [self._group(g, stream, gates, rows, cache) for g in self._groups(rows)]
        for i in layers_onloaded(self.arch, start, stop):
            if prefix is not None:
                prefix = self.forward_layers(i, i + 1, prefix, prefix_kw, gates)
            for g in groups:
                g.hidden = self.forward_layers(i, i + 1, g.hidden, g.kwargs_of, g.gates)
            if cache is not None:
                cache.drop(i)
        return prefix, groups

    def layer_outputs(self, heads: list[int], run_chunk: Callable[[list[int]], list[Readouts]]) -> dict[str, torch.Tensor]:
        """One layer's recorded outputs: ``run_chunk`` runs each chunk of :attr:`batch_heads` heads and
        returns one readout per prompt (rows = the chunk's heads); the chunks are stacked per prompt."""
        outs: list[list[Readouts]] = [[] for _ in range(self.n_prompts)]
        for s in range(0, len(heads), self.batch_heads):
            for n, r in enumerate(run_chunk(heads[s : s + self.batch_heads])):
                outs[n].append(r)
        self.progress(self.n_prompts)
        return self.record(outs, len(heads))

    def run_rows(self, start: int, stream: Stream, gates: Mapping[int, torch.Tensor], rows: int) -> list[Readouts]:
        """Run layers ``start..L-1`` on every prompt with ``rows`` rows each; per-prompt readouts."""
        _, groups = self.walk(start, self.arch.num_layers, stream, gates, rows)
        outs: list[Readouts | None] = [None] * self.n_prompts
        for g in groups:
            hidden, batch = g.hidden, g.batch
            ends = torch.as_tensor(batch.lengths, device=hidden.device).repeat_interleave(rows) - 1
            last = hidden[torch.arange(batch.rows, device=hidden.device), ends]
            res = self.read(final_norm(self.arch)(last[:, None, :])[:, 0, :])
            for j, n in enumerate(batch.prompts):
                sl = slice(j * rows, (j + 1) * rows)
                outs[n] = rows_of(res, sl)
        return outs  # type: ignore[return-value]

    def advance(self, layer: int, stream: Stream, gate: torch.Tensor | None) -> Stream:
        """The stream entering ``layer + 1`` (``gate``: the fixed ablation of ``layer``, if any)."""
        prefix, groups = self.walk(layer, layer + 1, stream, {layer: gate} if gate is not None else {}, 1)
        suffix: list[torch.Tensor] = [stream.suffix[0]] * self.n_prompts
        for g in groups:
            for j, n in enumerate(g.batch.prompts):
                suffix[n] = g.hidden[j : j + 1, : g.batch.lengths[j]]
        return Stream(prefix, suffix)

    def _layer_gates(self, layer: int, heads: Sequence[int], fixed: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        H = self.arch.num_heads
        row = torch.ones(len(heads), H)
        row[torch.arange(len(heads)), torch.as_tensor(list(heads), dtype=torch.long)] = self.eps
        if layer in fixed:
            row = row * fixed[layer]
        gates = {k: v for k, v in fixed.items() if k > layer}
        gates[layer] = row.to(model_device(self.loaded.model))
        return gates

    def stream_at(self, layer: int, fixed_gates: Mapping[int, torch.Tensor]) -> tuple[int, Stream]:
        """The nearest kept stream at or below ``layer`` (only unablated streams are kept)."""
        if fixed_gates:
            return 0, self.streams[0]
        below = max(k for k in self.streams if k <= layer)
        return below, self.streams[below]

    def stream_to(self, layer: int) -> Stream:
        """The unablated stream entering ``layer``, advanced one layer at a time from the nearest kept one.

        Every kept stream is made this way, so the result has the same bits whichever streams an
        earlier plan happened to keep: a plan's scores never depend on what ran before it.
        """
        below, stream = self.stream_at(layer, {})
        for i in range(below, layer):
            stream = self.advance(i, stream, None)
            if self.keep_streams:
                self.streams[i + 1] = stream
        return stream

    def merges(self, n_heads: int, fixed: Sequence[Head] = ()) -> bool:
        return not fixed and MergedRows(self).fits(n_heads)

    @torch.no_grad()
    def run(self, plan: HeadPlan, fixed: Sequence[Head] = (), merge: bool = True
            ) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Yield ``(layer, outputs)`` for each planned layer, ablating ``fixed`` heads throughout.

        With ``merge`` (and a plan that :meth:`merges`), all planned heads run in one layer-major
        forward; otherwise each layer's chunks of ``batch_heads`` run alone.
        """
        fixed_gates = gates_for(self.arch, fixed, self.eps)
        wanted = sorted(layer for layer, heads in plan.items() if len(heads))
        if not wanted:
            return
        if merge and self.merges(sum(len(plan[layer]) for layer in wanted), fixed):
            yield from MergedRows(self).run(plan)
            return
        first, stream = self.stream_at(wanted[0], fixed_gates)
        for layer in range(first, wanted[-1] + 1):
            if layer in plan and len(plan[layer]):
                yield layer, self.layer_outputs(list(plan[layer]), lambda chunk: self.run_rows(
                    layer, stream, self._layer_gates(layer, chunk, fixed_gates), len(chunk)))
            if layer < wanted[-1]:
                stream = self.advance(layer, stream, fixed_gates.get(layer))
                if self.keep_streams and not fixed_gates:
                    self.streams[layer + 1] = stream


class MergedRows:
    """Layer-major scoring of a few heads spread over many layers (the approximate engine's rescoring):
    one unablated row walks the stack, and at each planned layer copies of it join as that layer's
    ablated rows, so every layer runs once for all rows that pass through it, in one forward."""

    def __init__(self, engine: FastEngine) -> None:
        self.engine = engine
        self.P = engine.prefix_len
        self.lengths = engine.lengths
        self.width = max(self.lengths)

    def fits(self, n_heads: int) -> bool:
        """Whether all rows (one per head plus the unablated one) x all prompts fit the token budget."""
        e = self.engine
        return e.rows_ok and (1 + n_heads) * (e.n_prompts * self.width + self.P) <= e.max_batch_tokens

    def _layer(self, i: int, prefix: torch.Tensor | None, suffix: torch.Tensor, gate: torch.Tensor | None):
        """Run layer ``i`` on rows ``[R, P, d]`` and ``[N, R, W, d]`` under the per-row ``gate`` ``[R, H]``."""
        e, (N, R) = self.engine, suffix.shape[:2]
        gates = {i: gate} if gate is not None else {}
        cache = None
        if prefix is not None:
            prefix, cache = self._prefix(i, prefix, gates)
        batch = RowBatch(list(range(N)), self.lengths, R)
        tiled = {k: v.repeat(N, 1) for k, v in gates.items()}
        kv = cache.replay(N) if cache is not None else None
        out = e.forward_layers(i, i + 1, suffix.reshape(N * R, *suffix.shape[2:]), e.suffix_layer_kwargs(batch, kv), tiled)
        return prefix, out.reshape(N, R, *out.shape[1:])

    def _prefix(self, i: int, prefix: torch.Tensor, gates: Mapping[int, torch.Tensor]) -> tuple[torch.Tensor, PrefixKV]:
        e = self.engine
        cache = PrefixKV()
        kw = prefix_kwargs(e.layer_kwargs(i, e.layer0[0]), self.P, prefix.shape[0], cache, prefix.dtype)
        return e.forward_layers(i, i + 1, prefix, lambda _i: kw, gates), cache

    @torch.no_grad()
    def run(self, plan: HeadPlan) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Yield ``(layer, outputs)`` like :meth:`FastEngine.run` (no fixed heads)."""
        e, H = self.engine, self.engine.arch.num_heads
        layers = sorted(layer for layer, heads in plan.items() if len(heads))
        first, stream = layers[0], e.stream_to(layers[0])
        prefix = stream.prefix
        suffix = pad_rows(list(stream.suffix), self.width, 1)[:, None]  # [N, 1, W, d]
        owners: list[tuple[int, int]] = [(-1, -1)]  # (layer, head) per row; row 0 is unablated
        for i in layers_onloaded(e.arch, first):
            gate = None
            if i in plan and len(plan[i]):
                heads = list(plan[i])
                prefix = None if prefix is None else torch.cat([prefix, prefix[:1].expand(len(heads), -1, -1)])
                suffix = torch.cat([suffix, suffix[:, :1].expand(-1, len(heads), -1, -1)], dim=1)
                owners += [(i, h) for h in heads]
                gate = torch.ones(len(owners), H, device=suffix.device)
                gate[torch.arange(len(owners) - len(heads), len(owners)), torch.as_tensor(heads)] = e.eps
            prefix, suffix = self._layer(i, prefix, suffix, gate)
        yield from self._collect(plan, layers, owners, suffix)

    def _collect(self, plan: HeadPlan, layers: list[int], owners: list[tuple[int, int]], suffix: torch.Tensor):
        e, N = self.engine, self.engine.n_prompts
        ends = torch.as_tensor(self.lengths, device=suffix.device) - 1
        last = suffix[torch.arange(N, device=suffix.device), :, ends]  # [N, R, d]
        res = e.read(final_norm(e.arch)(last.reshape(-1, 1, last.shape[-1]))[:, 0, :])
        R = len(owners)
        for layer in layers:
            rows = [r for r, (l, _h) in enumerate(owners) if l == layer]
            outs = []
            for n in range(N):
                idx = torch.as_tensor([n * R + r for r in rows])
                outs.append([rows_of(res, idx)])
            e.progress(N)
            yield layer, e.record(outs, len(rows))


class NaiveEngine(EngineBase):
    """The reference: a plain full forward of the whole model per ablated head and prompt."""

    @torch.no_grad()
    def forward(self, enc: Encoded) -> Readouts:
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
        return self.read(store["normed"][:, -1, :], out.logits[:, -1, :])

    def prepare(self) -> None:
        self.set_base([self.forward(enc) for enc in self.encoded])

    def run(self, plan: HeadPlan, fixed: Sequence[Head] = (), merge: bool = True
            ) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        for layer in sorted(plan):
            heads = list(plan[layer])
            if not heads:
                continue
            outs: list[list[Readouts]] = [[] for _ in self.encoded]
            for n, enc in enumerate(self.encoded):
                for head in heads:
                    group = list(dict.fromkeys([*fixed, (layer, head)]))
                    with head_gates(self.arch, gates_for(self.arch, group, self.eps), self.mode):
                        outs[n].append(self.forward(enc))
                self.progress(1)
            yield layer, self.record(outs, len(heads))
