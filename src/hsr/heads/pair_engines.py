"""Engines for scores of a dense/pruned pair: what putting one head's dense weights back does to the pruned model.

Both engines score the pruned model (``loaded``); the dense model only supplies the restored slices
(:func:`hsr.heads.restoring.restored_head`) and, once per prompt, its own readouts, kept as the engine's
:attr:`~hsr.heads.engines.EngineBase.reference` (what stats with ``against="reference"`` compare with).

* :class:`PairNaiveEngine` (the reference): per head, restore its slices, one full forward per prompt.
* :class:`PairFastEngine` (exact, about the cost of Ships in the fast engine): the pruned model's
  residual stream entering layer ``l`` is cached as the fast engine caches it (one shared walk of
  the layers below), then per head of layer ``l`` only layer ``l`` runs with that head's slices
  restored, and layers ``l+1..L-1`` run batched over the heads (one batch row per head, each row
  on its own stream), with the fast engine's shared-prefix reuse and prompt batching where they are exact.

What they do not do: fixed heads (Sahara's groups), the merged forward of the approximate engine,
several processes and offloaded models; :func:`check_pair_run` refuses those up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch

from ..architecture import lm_head
from ..errors import ConfigError
from ..loading import LoadedModel
from ..placement import is_offloaded
from ..realign.external import ModelMismatchError, check_compatible
from .engines import FastEngine, Head, HeadPlan, NaiveEngine, Readouts, Stream
from .restoring import restored_head


def check_pair(dense: LoadedModel, pruned: LoadedModel) -> None:
    """Refuse a dense model that is not the pruned model's dense counterpart in shape (architecture, head
    geometry, every decoder linear, vocabulary), naming the first difference."""
    check_compatible(dense.model, pruned.model)
    shapes = [tuple(lm_head(m).weight.shape) for m in (dense.model, pruned.model)]
    if shapes[0] != shapes[1]:
        raise ModelMismatchError(f"Dense and pruned {pruned.arch.class_name} differ in lm_head: {shapes[0]} vs {shapes[1]}.")


def check_pair_run(dense: LoadedModel, pruned: LoadedModel, distributed: bool) -> None:
    """What the pair engines cannot do yet, refused before any model work."""
    if distributed:
        raise ConfigError("Head score 'pair' runs in one process only (torchrun / accelerate launch are not supported "
                          "for dense/pruned pairs yet).")
    if is_offloaded(dense.model) or is_offloaded(pruned.model):
        raise ConfigError("Head score 'pair' needs both models resident on their device (no --max-memory / "
                          "--offload-folder offload yet): it writes dense slices into the pruned model's layers.")
    check_pair(dense, pruned)


def reference_readouts(dense: LoadedModel, encoded: Sequence[Any], stats: Sequence[Any]) -> Readouts:
    """The dense model's unablated readouts ``[N, ...]`` of every prompt, one full forward each (computed once)."""
    engine = NaiveEngine(dense, encoded, stats=stats)
    dense.model.eval()
    engine.prepare()
    return engine.base


def refuse_fixed(fixed: Sequence[Head]) -> None:
    if fixed:
        raise ConfigError("Head score 'pair' restores one head at a time; it takes no fixed ablated heads (Sahara).")


def stack_streams(streams: Sequence[Stream]) -> Stream:
    """One stream with one row per input stream (each ``[1, ...]``), in order."""
    prefix = None if streams[0].prefix is None else torch.cat([s.prefix for s in streams])
    suffix = [torch.cat([s.suffix[n] for s in streams]) for n in range(len(streams[0].suffix))]
    return Stream(prefix, suffix)


@dataclass
class PairFastEngine(FastEngine):
    """Exact pair scores from the cached residual streams of the pruned model (see the module doc)."""

    dense: LoadedModel | None = None

    def prepare(self) -> None:
        super().prepare()  # the pruned model: layer-0 inputs, its unablated readouts as ``base``
        self.reference = reference_readouts(self.dense, self.encoded, self.stats)

    def merges(self, n_heads: int, fixed: Sequence[Head] = ()) -> bool:
        return False

    def restored_streams(self, layer: int, heads: Sequence[int], stream: Stream) -> Stream:
        """The streams entering ``layer + 1``, one row per head of ``heads``, each computed by ``layer``
        with that head's dense slices restored (and the pruned weights put back after)."""
        rows = []
        for head in heads:
            with restored_head(self.dense.arch, self.arch, layer, head):
                rows.append(self.advance(layer, stream, None))
        return stack_streams(rows)

    @torch.no_grad()
    def run(self, plan: HeadPlan, fixed: Sequence[Head] = (), merge: bool = True
            ) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Yield ``(layer, outputs)`` for each planned layer, heads restored one at a time."""
        refuse_fixed(fixed)
        wanted = sorted(layer for layer, heads in plan.items() if len(heads))
        if not wanted:
            return
        first, stream = self.stream_at(wanted[0], {})
        for layer in range(first, wanted[-1] + 1):
            if layer in plan and len(plan[layer]):
                yield layer, self.layer_outputs(list(plan[layer]), lambda chunk: self.run_rows(
                    layer + 1, self.restored_streams(layer, chunk, stream), {}, len(chunk)))
            if layer < wanted[-1]:
                stream = self.advance(layer, stream, None)
                if self.keep_streams:
                    self.streams[layer + 1] = stream


@dataclass
class PairNaiveEngine(NaiveEngine):
    """The reference: per head, its dense slices restored in the pruned model, one full forward per prompt."""

    dense: LoadedModel | None = None

    def prepare(self) -> None:
        super().prepare()
        self.reference = reference_readouts(self.dense, self.encoded, self.stats)

    @torch.no_grad()
    def run(self, plan: HeadPlan, fixed: Sequence[Head] = (), merge: bool = True
            ) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        refuse_fixed(fixed)
        for layer in sorted(plan):
            heads = list(plan[layer])
            if not heads:
                continue
            outs: list[list[Readouts]] = [[] for _ in self.encoded]
            for head in heads:
                with restored_head(self.dense.arch, self.arch, layer, head):
                    for n, enc in enumerate(self.encoded):
                        outs[n].append(self.forward(enc))
            self.progress(self.n_prompts)
            yield layer, self.record(outs, len(heads))


def pair_engine_class(engine: str) -> type:
    """The pair engine for ``HeadScoreConfig.engine`` (``fast`` or ``naive``)."""
    classes: Mapping[str, type] = {"fast": PairFastEngine, "naive": PairNaiveEngine}
    if engine not in classes:
        raise ConfigError(f"Head score 'pair' runs on engine fast or naive, not {engine!r}.")
    return classes[engine]
