"""Fingerprints: stable hashes of settings, and digests of the *contents* of models and data files.

Caches keyed on paths go stale when a file is edited or weights are replaced at the same path, so
every cached result (pipeline stages, head-score checkpoints) is keyed on content: data files are
hashed whole; a model folder's small files are hashed whole and its weight files by size, header and
an evenly spaced sample of their bytes (whole when under :data:`FULL_HASH_BYTES`).
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

#: Files up to this size are hashed whole; larger ones by header + sampled chunks.
FULL_HASH_BYTES = 1 << 30
_CHUNK = 1 << 20
_SAMPLES = 64


def fingerprint(obj: Any, length: int = 16) -> str:
    """Stable hash of any JSON-serialisable settings (keys sorted; paths and others via ``str``)."""
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_digest(path: str | os.PathLike) -> str:
    """Content digest of one file: whole for files up to 1 GiB, else size + head + 64 sampled 1 MiB chunks."""
    path = Path(path)
    st = path.stat()
    return _file_digest_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _file_digest_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                h.update(block)
        else:
            head = fh.read(_CHUNK)  # safetensors/GGUF headers (tensor names, shapes, offsets) live here
            h.update(head)
            step = (size - _CHUNK) // _SAMPLES
            for i in range(1, _SAMPLES + 1):
                fh.seek(min(size - _CHUNK, i * step))
                h.update(fh.read(_CHUNK))
    return h.hexdigest()[:24]


def tree_digest(root: str | os.PathLike) -> str:
    """Digest of every visible file under ``root`` (names relative to it), or of the file itself."""
    root = Path(root)
    if root.is_file():
        return file_digest(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root))):
        h.update(str(path.relative_to(root)).encode())
        h.update(file_digest(path).encode())
    return h.hexdigest()[:24]


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def model_digest(source: str | os.PathLike) -> str:
    """Digest of a model's files: a local folder or file, the embedded default's cache, else the hub id itself.

    A hub id is kept as given: hub snapshots are immutable per revision, and resolving the revision
    offline is not always possible.
    """
    from .loading import locate_model

    where, gguf_file = locate_model(source)  # a wrong path fails here, with loading's own message
    if isinstance(where, str):
        return f"hub:{where}"
    return tree_digest(where / gguf_file if gguf_file else where)


def judge_digest(spec: str | None) -> str | None:
    """Digest of a ``model:PATH`` judge's folder (other judges are code, versioned with hsr): replacing
    the judge's weights at the same path must not reuse verdicts it did not give."""
    if not spec or not spec.strip().startswith("model:"):
        return None
    from .evaluation.judges import parse_model_spec

    return tree_digest(Path(parse_model_spec(spec.strip())[0]).expanduser())


def data_digest(files: Iterable[str | os.PathLike]) -> str:
    """Digest of the data files a stage reads (JSONL/JSON, referenced images, text)."""
    h = hashlib.sha256()
    for path in sorted({str(Path(f).resolve()) for f in files}):
        h.update(file_digest(path).encode())  # content only: moving the data does not invalidate results
    return h.hexdigest()[:24]
