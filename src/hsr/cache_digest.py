"""Digests of a cache folder, written when the cache is made and checked when it is used.

The embedded default model is converted once into ``$HSR_CACHE``; a later bit flip, a truncated copy
or a stray edit there would otherwise give NaN outputs with no error. The manifest records each
file's size and SHA-256; :func:`manifest_problem` says what no longer matches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = ".hsr-digest.json"


def file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def folder_digests(folder: Path) -> dict[str, dict[str, int | str]]:
    """``{relative name: {"size", "sha256"}}`` of every file under ``folder`` but the manifest."""
    return {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_digest(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(folder: Path) -> None:
    """Record the digests of ``folder``'s files (call once its contents are final)."""
    (folder / MANIFEST).write_text(json.dumps({"files": folder_digests(folder)}, indent=1) + "\n", encoding="utf-8")


def manifest_problem(folder: Path) -> str | None:
    """None when every file the manifest lists is there with its recorded size and digest; else what is
    wrong (no manifest counts: such a folder was never verified)."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        expected = {str(k): (int(v["size"]), str(v["sha256"])) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"no readable {MANIFEST}"
    if not expected:
        return f"{MANIFEST} lists no files"
    for name, (size, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:  # cheap first: a truncated file needs no hashing
            return f"{name} has {path.stat().st_size} bytes, {size} when written"
        if file_digest(path) != digest:
            return f"{name} changed since it was written (SHA-256 differs)"
    return None
