"""A model's decoder layers and attention heads, read from its files without loading (or converting) it.

Options bounded by the number of heads (``top_h``, ``sahara_steps``) are checked against this before
the first model loads, so a run does not convert, load and score for minutes and then fail.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Callable, TypeVar

from .loading import DEFAULT_MODEL, ModelLoadError, read_model_config, smollm_gguf_path, converted_default_dir, locate_model

#: GGUF value types: struct format of the fixed-size ones; 8 = string, 9 = array.
_GGUF_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def _read(fh: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack("<" + fmt, data)[0]


def _value(fh: BinaryIO, kind: int) -> Any:
    if kind in _GGUF_FIXED:
        return _read(fh, _GGUF_FIXED[kind])
    if kind == _STRING:
        return fh.read(_read(fh, "Q")).decode("utf-8", "replace")
    if kind == _ARRAY:
        inner, count = _read(fh, "I"), _read(fh, "Q")
        if inner in _GGUF_FIXED:  # skipped whole: only scalars are wanted
            fh.seek(count * struct.calcsize("<" + _GGUF_FIXED[inner]), os.SEEK_CUR)
        else:
            for _ in range(count):
                _value(fh, inner)
        return None
    raise ValueError(f"unknown GGUF value type {kind}")


def _gguf_scan(path: str | os.PathLike, pick: Callable[[dict[str, Any]], Any]) -> Any:
    """Read a GGUF file's key-value header up to the first point where ``pick(keys so far)`` is not None."""
    found: dict[str, Any] = {}
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        _read(fh, "I")  # version
        _read(fh, "Q")  # tensor count
        for _ in range(_read(fh, "Q")):
            key = fh.read(_read(fh, "Q")).decode("utf-8", "replace")
            found[key] = _value(fh, _read(fh, "I"))
            picked = pick(found)
            if picked is not None:
                return picked
    return None


def _arch_key(found: dict[str, Any], name: str) -> Any:
    return found.get(f"{found.get('general.architecture')}.{name}")


def gguf_heads(path: str | os.PathLike) -> tuple[int, int] | None:
    """(layers, heads) from a GGUF file's key-value header (``ARCH.block_count``, ``ARCH.attention.head_count``),
    reading only up to the keys that give them."""
    def pick(found: dict[str, Any]) -> tuple[int, int] | None:
        layers, heads = _arch_key(found, "block_count"), _arch_key(found, "attention.head_count")
        return (layers, heads) if isinstance(layers, int) and isinstance(heads, int) else None

    return _gguf_scan(path, pick)


def gguf_context(path: str | os.PathLike) -> int | None:
    """The context length a GGUF file's header gives (``ARCH.context_length``)."""
    def pick(found: dict[str, Any]) -> int | None:
        n = _arch_key(found, "context_length")
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

    return _gguf_scan(path, pick)


def config_heads(config: dict) -> tuple[int, int] | None:
    """(layers, heads) from a config.json (a VLM's ``text_config``), or None when it does not say."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    layers, heads = text.get("num_hidden_layers"), text.get("num_attention_heads")
    return (layers, heads) if isinstance(layers, int) and isinstance(heads, int) else None


def model_class(source: str | os.PathLike) -> str | None:
    """The model class a local folder's config.json names (``architectures[0]``), or None."""
    try:
        where, gguf_file = locate_model(str(source), convert_default=False)
        if isinstance(where, str) or gguf_file:
            return None
        names = read_model_config(Path(where)).get("architectures")
    except (ModelLoadError, OSError, ValueError):
        return None
    return names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None


T = TypeVar("T")


def from_model_files(source: str | os.PathLike, from_config: Callable[[dict], T | None],
                     from_gguf: Callable[[Path], T | None]) -> T | None:
    """What ``from_config`` (on a config.json) or ``from_gguf`` (on a GGUF file) reads of a local model, the
    embedded default included (its cache's config.json, or the wheel's GGUF before it is converted); None
    where files cannot tell (hub ids, unusual configs): the loaded model is checked then."""
    src = str(source)
    try:
        if src == DEFAULT_MODEL:
            converted = converted_default_dir()
            return from_config(read_model_config(converted)) if converted else from_gguf(smollm_gguf_path())
        where, gguf_file = locate_model(src, convert_default=False)
        if isinstance(where, str):
            return None
        return from_gguf(Path(where) / gguf_file) if gguf_file else from_config(read_model_config(Path(where)))
    except (ModelLoadError, OSError, ValueError, struct.error):
        return None  # loading the model reports what is wrong with it


def model_heads(source: str | os.PathLike) -> tuple[int, int] | None:
    """(decoder layers, attention heads per layer) of a local model, read from its files (:func:`from_model_files`)."""
    return from_model_files(source, config_heads, gguf_heads)


def config_context(config: dict) -> int | None:
    """``max_position_embeddings`` of a config.json (a VLM's ``text_config``), or None when it does not say."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    n = text.get("max_position_embeddings")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def model_context(source: str | os.PathLike) -> int | None:
    """The positions a local model holds, read from its files like :func:`model_heads`."""
    return from_model_files(source, config_context, gguf_context)