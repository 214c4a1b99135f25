"""Exact head scores as independent work units, so one process or several give the same bits.

A work unit is one layer's chunk of at most ``batch_heads`` heads: exactly what the fast engine
runs as one batched forward (one row per head). Units, not whole layers, are what processes
share, for two reasons:

* Bit-identity. Floating-point results depend on batch composition (a head's row computed in
  a batch of 16 and in a batch of 3 may differ in the last bit), so each unit is always computed
  alone: every engine call gets at most one unit per layer, in one process or in many. The one
  exception, the fast engine's merged forward (a few heads spread over many layers, all in one
  batch), is decided from the whole plan: such a round of units is one :class:`WorkItem`, made the
  same way whatever the number of processes and whatever the checkpoint already holds, and runs
  whole in one process. A head's score therefore depends only on the plan, never on which process
  ran it or what else that process ran. (Bits are the same for the same number of threads per
  process; a different thread count changes the reduction order of the matrix products.)
* Balance. In the fast engine a unit of layer ``l`` costs about ``(L - l) * heads`` layer-rows
  (it runs layers ``l..L-1``), so whole layers differ in cost by a factor ``L``; units are spread
  longest-first onto the least-loaded process (:func:`hsr.distributed.balance`), which also
  splits a model with fewer layers than processes.

Each finished unit is saved to the checkpoint under a name that does not depend on the process
or on how many there are, so an interrupted run resumes with any number of processes. Rank 0
decides what is already done (and reads it), the other ranks compute their share of the rest,
and every rank ends with all scores (Sahara's greedy search needs them everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Iterator

import torch

from ..distributed import SINGLE, Dist
from .checkpoint import LayerCheckpoint
from .engines import EngineBase, Head, HeadPlan, NaiveEngine
from .scores import HeadScore, ScoreContext


@dataclass(frozen=True)
class Unit:
    """Heads ``heads`` of ``layer``: chunk ``part`` of the ``parts`` chunks of that layer's plan."""

    layer: int
    part: int
    parts: int
    heads: tuple[int, ...]

    def checkpoint_part(self) -> int | None:
        """A whole layer keeps the one-file-per-layer checkpoint name."""
        return None if self.parts == 1 else self.part


def plan_units(plan: HeadPlan, batch_heads: int) -> list[Unit]:
    """The units of ``plan``: each layer's heads cut into consecutive chunks of ``batch_heads``."""
    units = []
    for layer in sorted(plan):
        heads = list(plan[layer])
        chunks = [tuple(heads[s : s + batch_heads]) for s in range(0, len(heads), batch_heads)]
        units.extend(Unit(layer, p, len(chunks), c) for p, c in enumerate(chunks))
    return units


def unit_cost(engine: EngineBase, unit: Unit) -> float:
    """Layer-rows the unit costs: the naive engine runs every layer, the fast one layers ``l..L-1``."""
    layers = engine.arch.num_layers if isinstance(engine, NaiveEngine) else engine.arch.num_layers - unit.layer
    return float(layers * len(unit.heads))


def engine_rounds(units: list[Unit]) -> Iterator[list[Unit]]:
    """Groups of units for one engine call each, with at most one unit per layer (see module doc)."""
    by_layer: dict[int, list[Unit]] = {}
    for u in units:
        by_layer.setdefault(u.layer, []).append(u)
    for k in range(max((len(v) for v in by_layer.values()), default=0)):
        yield [v[k] for _, v in sorted(by_layer.items()) if k < len(v)]


@dataclass(frozen=True)
class WorkItem:
    """What one process computes in one go: one unit alone, or a round of units merged into one forward."""

    units: tuple[Unit, ...]
    merged: bool

    def heads(self) -> int:
        return sum(len(u.heads) for u in self.units)


def work_items(engine: EngineBase, units: list[Unit], fixed: Any = ()) -> list[WorkItem]:
    """The plan's work items: a round the engine merges stays whole, any other round splits into units.

    Made from all of the plan's units (never from a process's share or from what is still to do),
    so the batches a head's row shares are the same in every run of the same plan.
    """
    items = []
    for group in engine_rounds(units):
        if len(group) > 1 and engine.merges(sum(len(u.heads) for u in group), fixed):
            items.append(WorkItem(tuple(group), True))
        else:
            items.extend(WorkItem((u,), False) for u in group)
    return items


def item_cost(engine: EngineBase, item: WorkItem) -> float:
    return sum(unit_cost(engine, u) for u in item.units)


def layer_scores(engine: EngineBase, data: dict[str, torch.Tensor], score: HeadScore, options: Any) -> torch.Tensor:
    """Scores of one batch of heads from the engine's stats (``data``, as :meth:`EngineBase.record` makes them)."""
    return score.reduce(data, ScoreContext(engine.base, engine.sets, options, engine.reference))


def _unit_scores(engine: EngineBase, unit: Unit, data: dict[str, torch.Tensor], score: HeadScore, options: Any
                 ) -> dict[Head, float]:
    values = layer_scores(engine, data, score, options).tolist()
    return {(unit.layer, h): v for h, v in zip(unit.heads, values)}


def _cached(engine: EngineBase, items: list[WorkItem], score: HeadScore, options: Any, checkpoint: LayerCheckpoint | None,
            tag: str) -> tuple[dict[Head, float], list[WorkItem]]:
    """Scores of the units already in ``checkpoint`` and the items with a unit still to compute."""
    done: dict[Head, float] = {}
    todo = []
    for item in items:
        missing = False
        for u in item.units:
            saved = checkpoint.load(tag, u.layer, u.checkpoint_part()) if checkpoint else None
            if saved is not None and saved["heads"].tolist() == list(u.heads):
                done.update(_unit_scores(engine, u, saved, score, options))
            else:
                missing = True
        if missing:
            todo.append(item)
    return done, todo


def _save(checkpoint: LayerCheckpoint, tag: str, unit: Unit, data: dict[str, torch.Tensor]) -> None:
    part = unit.checkpoint_part()
    if part is None:
        checkpoint.save(tag, unit.layer, data)
    else:
        checkpoint.save(tag, unit.layer, data, part=part)


def _calls(items: list[WorkItem]) -> Iterator[tuple[list[Unit], bool]]:
    """Engine calls for ``items``: each merged item alone; the single units by rounds (one per layer)."""
    for item in items:
        if item.merged:
            yield list(item.units), True
    singles = [u for item in items if not item.merged for u in item.units]
    for group in engine_rounds(singles):
        yield group, False


def compute_units(engine: EngineBase, items: list[WorkItem], score: HeadScore, options: Any, checkpoint: LayerCheckpoint | None,
                  tag: str, fixed: Any = (), cached: Collection[Head] = ()) -> dict[Head, float]:
    """Run ``items``, saving each unit to ``checkpoint`` as it finishes; a unit whose heads are all
    ``cached`` (a merged item's finished part) is recomputed with its round but not written again."""
    out: dict[Head, float] = {}
    for group, merged in _calls(items):
        by_layer = {u.layer: u for u in group}
        for layer, data in engine.run({u.layer: list(u.heads) for u in group}, fixed=fixed, merge=merged):
            unit = by_layer[layer]
            data["heads"] = torch.tensor(unit.heads, dtype=torch.long)
            if checkpoint and not all((unit.layer, h) in cached for h in unit.heads):
                _save(checkpoint, tag, unit, data)
            out.update(_unit_scores(engine, unit, data, score, options))
    return out


def sharded_exact_scores(engine: EngineBase, plan: HeadPlan, score: HeadScore, options: Any,
                         checkpoint: LayerCheckpoint | None = None, tag: str = "main", fixed: Any = (),
                         dist: Dist = SINGLE, bar: Any = None) -> dict[Head, float]:
    """Exact scores of the planned heads, split over ``dist``'s processes; every rank gets them all.

    ``bar`` (a tqdm bar, shown on rank 0 only) has its total raised by this rank's share.
    """
    units = plan_units(plan, max(1, int(engine.batch_heads)))
    items = work_items(engine, units, fixed)
    done, todo = (_cached(engine, items, score, options, checkpoint, tag) if dist.is_main else ({}, []))
    done, todo = dist.broadcast_object((done, todo))
    mine = dist.shard(todo, cost=lambda item: item_cost(engine, item))
    if bar is not None:
        n = engine.n_prompts
        todo_units = sum(len(item.units) for item in todo)
        bar.total = (bar.total or 0) + n * (sum(len(item.units) for item in mine) + (len(units) - todo_units if dist.is_main else 0))
        bar.update(n * (len(units) - todo_units) if dist.is_main else 0)
        bar.refresh()
    computed = compute_units(engine, mine, score, options, checkpoint, tag, fixed, done)
    for part in dist.all_gather_object(computed):
        done.update(part)
    return {(u.layer, h): done[u.layer, h] for u in units for h in u.heads}
