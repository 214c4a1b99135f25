"""Atomic outputs and small file helpers.

Outputs are written to a temporary sibling directory and renamed into place at the end, so an
interrupted or failed run never leaves a half-written output directory behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import HsrError


class OutputExistsError(HsrError):
    pass


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` only if the block succeeds."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not overwrite:
        raise OutputExistsError(f"Output directory {out} already exists; pass --overwrite or choose another --out.")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"Output {out} is a file, not a folder; choose another --out.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # The pid in the name lets a later run tell a dead writer's leftovers from a live one's.
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        raise OutputExistsError(f"cannot write the output {out}: {exc.strerror or exc}.") from None
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; outputs get the usual permissions
    try:
        yield tmp
        if out.exists():
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_checked(path: str | os.PathLike, error: type[Exception], what: str) -> Any:
    """:func:`read_json` whose failures (missing, unreadable, not UTF-8, not JSON) become one-line ``error``s."""
    try:
        return read_json(path)
    except UnicodeDecodeError:
        raise error(f"{path}: not valid UTF-8 text.") from None
    except (OSError, ValueError) as exc:
        raise error(f"{path}: cannot read {what} ({exc}).") from None


class PackedMasks(MutableMapping):
    """Boolean masks held bit-packed (1 bit per weight instead of torch's 1 byte) and unpacked on access:
    pruning an offloaded model would otherwise keep a quarter of its fp32 size in RAM as masks."""

    def __init__(self) -> None:
        self._bits: dict[str, tuple[np.ndarray, tuple[int, ...]]] = {}

    def __setitem__(self, name: str, mask: torch.Tensor) -> None:
        self._bits[name] = (np.packbits(mask.detach().cpu().numpy().astype(bool).reshape(-1)), tuple(mask.shape))

    def __getitem__(self, name: str) -> torch.Tensor:
        bits, shape = self._bits[name]
        return torch.from_numpy(np.unpackbits(bits)[: int(np.prod(shape))].astype(bool).reshape(shape))

    def __delitem__(self, name: str) -> None:
        del self._bits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._bits)

    def __len__(self) -> int:
        return len(self._bits)

    def packed(self, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
        return self._bits[name]


def save_masks(masks: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Save boolean masks (True = pruned) bit-packed: 1 bit per weight, shapes in the metadata."""
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for name in masks:
        if isinstance(masks, PackedMasks):
            bits, shape = masks.packed(name)
        else:
            mask = masks[name]
            bits, shape = np.packbits(mask.detach().cpu().numpy().astype(bool).reshape(-1)), tuple(mask.shape)
        tensors[name] = torch.from_numpy(bits)
        shapes[name] = list(shape)
    # One metadata entry: safetensors writes several in hash order, which would make equal masks differ in bytes.
    save_file(tensors, str(path), metadata={"shapes": json.dumps(shapes, sort_keys=True)})


def load_masks(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Inverse of :func:`save_masks`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    shapes = json.loads(meta["shapes"]) if "shapes" in meta else {k: json.loads(v) for k, v in meta.items()}  # older files
    packed = load_file(str(path))
    out: dict[str, torch.Tensor] = {}
    for name, bits in packed.items():
        shape = shapes[name]
        n = int(np.prod(shape))
        flat = np.unpackbits(bits.numpy())[:n].astype(bool)
        out[name] = torch.from_numpy(flat.reshape(shape))
    return out
