"""Atomic outputs and small file helpers.

Outputs are written to a temporary sibling directory and renamed into place at the end, so an
interrupted or failed run never leaves a half-written output directory behind.
"""

from __future__ import annotations

import contextlib
import json
import errno
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import SafetensorError

from .errors import HsrError
from .values import first_surrogate, shown


class OutputExistsError(HsrError):
    pass


def resolve_path(path: str | os.PathLike, what: str = "--out") -> Path:
    """``path`` made absolute with symlinks followed; a symlink loop or an unreadable component is a
    one-line error naming ``what`` instead of a RuntimeError/OSError from pathlib."""
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError:  # pathlib's "Symlink loop from ..." (Python < 3.13)
        raise OutputExistsError(f"{what} {path}: a symbolic link in it points back at itself (a loop); fix or remove "
                                "the link.") from None
    except OSError as exc:
        raise OutputExistsError(f"{what} {path}: cannot resolve the path ({exc.strerror or exc}).") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by a new file holding ``text`` (a temporary sibling, then a rename): a reader never
    sees half a file, and a file that ``path`` shares with another name (a hard-linked copy of a run
    folder) is left as it was instead of being rewritten through the link."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the record unreadable to others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` only if the block succeeds."""
    out = resolve_path(out)
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
        with os_errors_of_saving(out):
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


#: How safetensors' Rust side names the operating-system error behind a failed write.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def os_error_of(exc: SafetensorError, path: str | os.PathLike) -> OSError | None:
    """The OSError a safetensors save error stands for (a full disk, a quota, a file size limit: the
    Rust library reports them as ``I/O error: ... (os error 28)``), or None for any other error."""
    text = str(exc)
    found = _OS_ERROR.search(text)
    if found is not None:
        code = int(found.group(1))
        return OSError(code, os.strerror(code), str(path))
    if "I/O error" in text or "IoError" in text:
        return OSError(errno.EIO, os.strerror(errno.EIO), str(path))
    return None


@contextlib.contextmanager
def os_errors_of_saving(path: str | os.PathLike) -> Iterator[None]:
    """Within the block, a safetensors write that failed in the operating system raises that OSError
    (naming ``path``), which the CLI reports in one line, instead of an opaque ``SafetensorError``."""
    try:
        yield
    except SafetensorError as exc:
        error = os_error_of(exc, path)
        if error is None:
            raise
        raise error from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:  # a full disk mid-write leaves no temporary file behind
        if tmp.exists():
            tmp.unlink()


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


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object hsr wrote for itself (stage.json, a manifest); a missing, damaged or wrong-shaped
    one (a list, a number) reads as ``{}``, i.e. as if never written, so its work is redone."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_json_checked(path: str | os.PathLike, error: type[Exception], what: str) -> Any:
    """:func:`read_json` whose failures (missing, unreadable, not UTF-8, not JSON, text holding a lone
    UTF-16 surrogate such as ``"\\ud800"``) become one-line ``error``s."""
    try:
        data = read_json(path)
    except UnicodeDecodeError:
        raise error(f"{path}: not valid UTF-8 text.") from None
    except (OSError, ValueError) as exc:
        raise error(f"{path}: cannot read {what} ({shown(str(exc), 200)}).") from None
    at = first_surrogate(data)
    if at is not None:
        raise error(f"{path}: {at} holds a lone UTF-16 surrogate (such as \\ud800), which is not text.")
    return data


def _unpack(bits: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """Bool tensor of ``shape`` from packed bits (one byte per weight, no second copy)."""
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(bits, count=n).view(bool).reshape(shape))


def pack_mask(mask: torch.Tensor) -> np.ndarray:
    """A boolean mask as packed bits (1 bit per weight, row-major)."""
    return np.packbits(mask.detach().cpu().numpy().astype(bool, copy=False).reshape(-1))


class PackedMasks(MutableMapping):
    """Boolean masks held bit-packed (1 bit per weight instead of torch's 1 byte) and unpacked on access:
    pruning an offloaded model would otherwise keep a quarter of its fp32 size in RAM as masks."""

    def __init__(self) -> None:
        self._bits: dict[str, tuple[np.ndarray, tuple[int, ...]]] = {}

    def __setitem__(self, name: str, mask: torch.Tensor) -> None:
        self._bits[name] = (pack_mask(mask), tuple(mask.shape))

    def __getitem__(self, name: str) -> torch.Tensor:
        return _unpack(*self._bits[name])

    def __delitem__(self, name: str) -> None:
        del self._bits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._bits)

    def __len__(self) -> int:
        return len(self._bits)

    def packed(self, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
        return self._bits[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._bits[name][1]


class LazyMapping(Mapping):
    """A read-only mapping whose names are known up front (``_names``) and whose values are read or
    computed only when accessed (masks, scores of one matrix at a time)."""

    _names: Mapping[str, object]

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class MaskFile(LazyMapping):
    """The masks of a :func:`save_masks` file, each read (and unpacked) when used: a caller that goes
    matrix by matrix holds one matrix's mask, not the whole model's (a quarter of its fp32 size)."""

    def __init__(self, path: str | os.PathLike) -> None:
        from safetensors import safe_open

        self.path = str(path)
        # One handle (a read-only memory map: its pages are file cache, not heap) for every read: a
        # model with thousands of matrices would otherwise re-parse the header once per matrix.
        self._fh = safe_open(self.path, framework="np")
        meta = self._fh.metadata() or {}
        shapes = json.loads(meta["shapes"]) if "shapes" in meta else {k: json.loads(v) for k, v in meta.items()}  # older files
        self._shapes: dict[str, tuple[int, ...]] = {}
        names = self._fh.keys()  # a safetensors handle, not a dict
        for name in names:
            shape, size = tuple(int(d) for d in shapes[name]), self._fh.get_slice(name).get_shape()
            if list(size) != [_packed_bytes(shape)]:
                raise ValueError(f"{name}: {size} packed bytes do not hold a mask of shape {list(shape)}")
            self._shapes[name] = shape
        self._names = self._shapes

    def packed(self, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
        return self._fh.get_tensor(name), self._shapes[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def __getitem__(self, name: str) -> torch.Tensor:
        return _unpack(*self.packed(name))


def _packed_bytes(shape: tuple[int, ...]) -> int:
    return (int(np.prod(shape)) + 7) // 8


def mask_shape(masks: Mapping[str, torch.Tensor], name: str) -> tuple[int, ...]:
    """The shape of ``masks[name]``, without unpacking it when the mapping knows shapes."""
    shape = getattr(masks, "shape", None)
    return tuple(shape(name)) if callable(shape) else tuple(masks[name].shape)


def packed_mask(masks: Mapping[str, torch.Tensor], name: str) -> np.ndarray:
    """``masks[name]`` as packed bits, straight from the mapping when it holds them packed."""
    packed = getattr(masks, "packed", None)
    return packed(name)[0] if callable(packed) else pack_mask(masks[name])


_BIT_COUNTS = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)


def count_masked(masks: Mapping[str, torch.Tensor]) -> int:
    """The number of True entries of all ``masks``, one matrix at a time; from the packed bits when the
    mapping holds them packed (a popcount, much faster than unpacking and summing)."""
    if not callable(getattr(masks, "packed", None)):
        return sum(int(masks[name].sum()) for name in masks)
    return sum(int(_BIT_COUNTS[packed_mask(masks, name)].sum(dtype=np.int64)) for name in masks)


def _safetensors_header(sizes: dict[str, int], metadata: dict[str, str]) -> bytes:
    """The header ``safetensors.save_file`` writes for 1-D uint8 tensors of these byte sizes: ordered by
    name, compact JSON, padded with spaces to 8 bytes, after its length as a little-endian u64."""
    head: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in sorted(sizes):
        head[name] = {"dtype": "U8", "shape": [sizes[name]], "data_offsets": [offset, offset + sizes[name]]}
        offset += sizes[name]
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def save_masks(masks: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Save boolean masks (True = pruned) bit-packed: 1 bit per weight, shapes in the metadata.

    Written one matrix at a time (the same bytes as ``safetensors.save_file`` of the packed tensors),
    so a lazy or packed mapping is never held whole."""
    shapes = {name: mask_shape(masks, name) for name in masks}
    sizes = {name: _packed_bytes(shape) for name, shape in shapes.items()}
    # One metadata entry: safetensors writes several in hash order, which would make equal masks differ in bytes.
    meta = {"shapes": json.dumps({k: list(v) for k, v in shapes.items()}, sort_keys=True)}
    with open(path, "wb") as fh:
        fh.write(_safetensors_header(sizes, meta))
        for name in sorted(sizes):
            bits = packed_mask(masks, name)
            if bits.size != sizes[name]:
                raise ValueError(f"{name}: {bits.size} packed bytes, expected {sizes[name]} for shape {list(shapes[name])}")
            fh.write(np.ascontiguousarray(bits, dtype=np.uint8).data)


def load_masks(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Inverse of :func:`save_masks` (every mask unpacked; :class:`MaskFile` reads them one at a time)."""
    file = MaskFile(path)
    return {name: file[name] for name in file}
