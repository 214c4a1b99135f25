"""Shared-prefix reuse and (head, prompt) row batching for the fast engine, kept exact.

Every chat prompt starts with the same template prefix (system prompt, role tokens). Attention is
causal, so the prefix's states under a given ablation do not depend on what follows: the engine
runs the prefix once per ablated-head batch, keeps its keys/values (:class:`PrefixKV`) and runs
only each prompt's own suffix on top of them. Suffixes of several prompts can share one forward:
they are right-padded, which needs no padding mask under causal attention (a real token never
sees a later pad), and each row gets its own slice of the captured rotary embeddings, so M-RoPE
layouts (images, video) stay exactly those of the full forward.

Reuse is only used when it is provably exact (see :func:`unsafe_reason`); otherwise the engine
falls back to the plain per-prompt path with the captured layer kwargs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..architecture import ArchInfo
from ..calibration import LayerInput

#: Layer kwargs whose tensors are understood (sliced along the sequence, or rebuilt); any other
#: tensor-valued kwarg makes reuse unsafe.
_KNOWN = {"attention_mask", "position_embeddings", "position_ids", "cache_position"}
_CACHE_KEYS = ("cache", "past_key_values")


class PrefixKV:
    """Stand-in for a transformers ``Cache`` on the shared prefix's forward: records the prefix's
    keys/values per layer (the suffixes read them through :meth:`replay`)."""

    def __init__(self) -> None:
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        self.kv[layer_idx] = (key, value)
        return key, value

    def replay(self, repeat: int, interleave: bool = False) -> PrefixReplay:
        """A cache for forwards whose rows see the recorded rows repeated ``repeat`` times: tiled (the
        recorded rows are a prompt's heads and the batch is prompt-major) or, with ``interleave``, each
        recorded row for ``repeat`` consecutive rows (the recorded rows are prompts, each with
        ``repeat`` rows)."""
        return PrefixReplay(self, repeat, interleave)

    def drop(self, layer_idx: int) -> None:
        """Forget a layer's keys/values once every suffix has run that layer."""
        self.kv.pop(layer_idx, None)


class PrefixReplay:
    """Stand-in for a transformers ``Cache`` on a suffix forward: prepends the recorded prefix keys/values
    (tiled to the batch's rows) without ever growing. Only the current layer's tiles are kept, so the
    prefix may be recorded layer by layer while the suffixes follow it (layer-major walks)."""

    def __init__(self, source: PrefixKV, repeat: int, interleave: bool = False) -> None:
        self.source, self.repeat, self.interleave = source, repeat, interleave
        self.tiled: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def _tile(self, t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(self.repeat, 0) if self.interleave else t.repeat(self.repeat, 1, 1, 1)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        if self.tiled is None or self.tiled[0] != layer_idx:
            k, v = self.source.kv[layer_idx]
            self.tiled = (layer_idx, self._tile(k), self._tile(v))
        _, pk, pv = self.tiled
        return torch.cat([pk, key], dim=-2), torch.cat([pv, value], dim=-2)


def _is_causal_mask(mask: torch.Tensor) -> bool:
    """True when a captured 4D mask is plain causal (no padding, no window)."""
    T = mask.shape[-1]
    allowed = mask if mask.dtype == torch.bool else mask == 0
    tril = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()
    return mask.shape[-2] == T and bool((allowed == tril).all())


def unsafe_reason(arch: ArchInfo, layer_kwargs: Sequence[dict[str, Any]]) -> str | None:
    """Why prefix reuse / row batching might not be exact for this model (None: it is exact).

    ``layer_kwargs``: every kwargs dict any decoder layer receives (all layers, all prompts).
    """
    if arch.attn_implementation not in ("sdpa", "eager"):
        return f"attention implementation {arch.attn_implementation!r}"
    if not arch.plain_causal:
        return "layers with sliding-window or local attention"
    for kw in layer_kwargs:
        for key, value in kw.items():
            if key in _CACHE_KEYS or key in _KNOWN or not _has_tensor(value):
                continue
            return f"layer kwarg {key!r} is not understood"
        mask = kw.get("attention_mask")
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dim() != 4 or not _is_causal_mask(mask)):
            return "attention mask is not plain causal"
    return None


def _has_tensor(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_has_tensor(o) for o in obj)
    if isinstance(obj, dict):
        return any(_has_tensor(o) for o in obj.values())
    return False


def _dims(t: torch.Tensor) -> tuple[int, int]:
    """(token dim, row dim) of a position tensor: rotary cos/sin ``[..., rows, T, d]`` or ids ``[..., rows, T]``."""
    return (-2, -3) if t.dtype.is_floating_point else (-1, -2)


def _positions(kw: dict[str, Any]) -> list[torch.Tensor]:
    """One prompt's per-token position tensors (rotary cos/sin, position ids), 2D or more."""
    out = [t for t in kw.get("position_embeddings") or ()]
    out += [kw[k] for k in ("position_ids", "cache_position") if isinstance(kw.get(k), torch.Tensor)]
    return [t for t in out if t.dim() >= 2]


def _by_token(t: torch.Tensor, P: int) -> torch.Tensor:
    """The first ``P`` tokens of a position tensor as ``[P, rest]``."""
    return t.narrow(_dims(t)[0], 0, P).movedim(_dims(t)[0], 0).reshape(P, -1)


def common_prefix(inputs: Sequence[LayerInput], kwargs: Sequence[dict[str, Any]]) -> int:
    """Tokens shared by every prompt: identical layer-0 inputs and identical positions.

    At least one token of each prompt is left to its suffix (its last token is what is scored).
    """
    if len(inputs) < 2:
        return 0
    first = inputs[0].hidden[0]
    P = min(x.hidden.shape[1] for x in inputs) - 1
    for x in inputs[1:]:
        same = (x.hidden[0, :P] == first[:P]).all(-1)
        P = min(P, int(same.long().cumprod(0).sum()))
    pos0 = _positions(kwargs[0])
    for kw in kwargs[1:]:
        other = _positions(kw)
        if len(other) != len(pos0) or P == 0:
            return 0
        for a, b in zip(pos0, other):
            tok = a.dim() + _dims(a)[0]
            if a.dtype != b.dtype or [*a.shape[:tok], *a.shape[tok + 1 :]] != [*b.shape[:tok], *b.shape[tok + 1 :]]:
                return 0
            same = (_by_token(a, P) == _by_token(b, P)).all(-1)
            P = min(P, int(same.long().cumprod(0).sum()))
    return max(P, 0)


def pad_rows(parts: list[torch.Tensor], width: int, heads: int) -> torch.Tensor:
    """Right-pad each prompt's slice with zeros to ``width`` tokens, stack prompts on the row axis and
    tile every prompt ``heads`` times (prompt-major rows)."""
    tok, row = _dims(parts[0])
    padded = []
    for p in parts:
        extra = width - p.shape[tok]
        if extra:
            shape = list(p.shape)
            shape[tok] = extra
            p = torch.cat([p, p.new_zeros(shape)], dim=tok)
        padded.append(p)
    return torch.cat(padded, dim=row).repeat_interleave(heads, dim=row)


@dataclass
class RowBatch:
    """One forward's rows: ``prompts`` (in row order, prompt-major) x ``heads`` rows each."""

    prompts: list[int]
    lengths: list[int]  # suffix length per prompt
    heads: int

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.heads

    @property
    def width(self) -> int:
        return max(self.lengths)


def in_mask_format(allowed: torch.Tensor, captured: Any, dtype: torch.dtype) -> torch.Tensor:
    """A boolean ``allowed`` mask in the captured mask's format: boolean, or additive float (0 where
    allowed, the dtype's most negative value elsewhere)."""
    if isinstance(captured, torch.Tensor) and captured.dtype == torch.bool:
        return allowed
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def _mask(kw: dict[str, Any], P: int, S: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """Causal mask of ``S`` suffix queries over ``P + S`` keys, in the captured mask's format."""
    captured = kw.get("attention_mask")
    if P == 0 and captured is None:
        return None  # square and causal: sdpa's is_causal path, as in the full forward
    allowed = torch.ones(S, P + S, dtype=torch.bool, device=device).tril(P)[None, None]
    return in_mask_format(allowed, captured, dtype)


def row_kwargs(per: Sequence[dict[str, Any]], starts: Sequence[int], lengths: Sequence[int], heads: int) -> dict[str, Any]:
    """Layer kwargs (no mask, no cache) for rows holding tokens ``starts[n] .. starts[n] + lengths[n] - 1`` of
    each prompt ``n`` (``per[n]``: its captured kwargs), right-padded to the longest and tiled ``heads``
    times per prompt (prompt-major): each row gets its own prompt's rotary tables and position ids (M-RoPE
    included); other kwargs are taken as captured."""
    W = max(lengths)
    out = {k: v for k, v in per[0].items() if k not in _KNOWN and k not in _CACHE_KEYS}

    def sliced(kw_t: torch.Tensor, start: int, S: int) -> torch.Tensor:
        return kw_t.narrow(_dims(kw_t)[0], start, S)

    emb = per[0].get("position_embeddings")
    if emb is not None:
        out["position_embeddings"] = tuple(
            pad_rows([sliced(kw["position_embeddings"][j], a, S) for kw, a, S in zip(per, starts, lengths)], W, heads)
            for j in range(len(emb))
        )
    for key in ("position_ids", "cache_position"):
        t = per[0].get(key)
        if isinstance(t, torch.Tensor) and t.dim() == 1:  # shared by the rows; only a cache would read it
            first = max(starts)
            out[key] = torch.arange(first, first + W, device=t.device, dtype=t.dtype)
        elif isinstance(t, torch.Tensor):
            out[key] = pad_rows([sliced(kw[key], a, S) for kw, a, S in zip(per, starts, lengths)], W, heads)
        elif key in per[0]:
            out[key] = t
    return out


def suffix_kwargs(
    kwargs: Callable[[int], dict[str, Any]], batch: RowBatch, P: int, cache: Any, dtype: torch.dtype
) -> dict[str, Any]:
    """Layer kwargs for ``batch``'s rows: each prompt's positions ``P..T-1``, right-padded, tiled per head.

    ``kwargs(n)``: the captured layer kwargs of prompt ``n``; ``cache``: what the layers' attention
    reads and writes keys/values through (a :class:`PrefixReplay`, a recording :class:`PrefixKV`, or None).
    """
    per = [kwargs(n) for n in batch.prompts]
    out = row_kwargs(per, [P] * len(per), batch.lengths, batch.heads)
    emb = per[0].get("position_embeddings")
    device = emb[0].device if emb is not None else torch.device("cpu")
    out["attention_mask"] = _mask(per[0], P, batch.width, dtype, device)
    out["cache"] = cache
    return out


def prefix_kwargs(kw: dict[str, Any], P: int, rows: int, cache: PrefixKV, dtype: torch.dtype) -> dict[str, Any]:
    """Layer kwargs for the shared prefix (tokens ``0..P-1``) on ``rows`` rows, recording its keys/values."""
    return suffix_kwargs(lambda _n: kw, RowBatch(prompts=[0], lengths=[P], heads=rows), 0, cache, dtype)


def group_prompts(lengths: Sequence[int], heads: int, max_batch_tokens: int) -> list[list[int]]:
    """Group prompts so that ``heads x prompts x longest suffix <= max_batch_tokens`` (0: one per group).

    Prompts are sorted by length first, so padding stays small.
    """
    if max_batch_tokens <= 0:
        return [[n] for n in range(len(lengths))]
    groups: list[list[int]] = []
    for n in sorted(range(len(lengths)), key=lambda n: (lengths[n], n)):
        if groups and heads * (len(groups[-1]) + 1) * lengths[n] <= max_batch_tokens:
            groups[-1].append(n)
        else:
            groups.append([n])
    return groups
