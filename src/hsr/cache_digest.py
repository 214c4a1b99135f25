"""Digests of a cache folder, written when the cache is made and checked when it is used.

The embedded default model is converted once into ``$HSR_CACHE``; a later bit flip, a truncated copy
or a stray edit there would otherwise give NaN outputs with no error. The manifest records each
file's size and SHA-256; :func:`manifest_problem` says what no longer matches.

Hashing the ~540 MB cache takes most of a second, on every load. So the manifest also records each
file's stat (size, mtime, ctime, inode) and the time it was written: a file whose stat is unchanged is
trusted without hashing, and a changed one is hashed (on every check: reading the cache never writes
to it, so a copied cache is verified in full each time). ctime cannot be set back by a user (``touch``
and ``os.utime`` move it forward), so an edit that restores the mtime is still seen. A file changed
within :data:`RACY_NS` of the manifest could share its timestamps with the recorded ones, as in git's
"racy clean" case, so such a file is never trusted; :func:`write_manifest` waits that long after the
newest change before it writes, so a freshly made cache is trusted at once.
``HSR_VERIFY_CACHE=1`` (or ``full=True``) hashes every file regardless.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

MANIFEST = ".hsr-digest.json"
#: Files whose ctime lies this close to the manifest's writing are hashed: timestamps are coarse (a
#: kernel tick), so a same-size edit just after recording could leave every stat field equal.
RACY_NS = 2_000_000_000


def file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_stat(path: Path) -> dict[str, int]:
    """What changes when a file is rewritten, replaced or edited in place (no content is read)."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def folder_digests(folder: Path) -> dict[str, dict[str, int | str]]:
    """``{relative name: {"size", "sha256", stat...}}`` of every file under ``folder`` but the manifest."""
    return {
        str(p.relative_to(folder)): {**file_stat(p), "sha256": file_digest(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def _write(folder: Path, files: dict[str, Any]) -> None:
    """The manifest, replaced atomically (a concurrent reader sees the old one or the new one)."""
    text = json.dumps({"written_ns": time.time_ns(), "files": files}, indent=1) + "\n"
    tmp = folder / f"{MANIFEST}.tmp-{os.getpid()}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / MANIFEST)
    finally:
        tmp.unlink(missing_ok=True)


def write_manifest(folder: Path) -> None:
    """Record the digests of ``folder``'s files (call once its contents are final). Waits until
    :data:`RACY_NS` has passed since the newest change, so every recorded stat can be trusted."""
    files = folder_digests(folder)
    newest = max((int(rec["ctime_ns"]) for rec in files.values()), default=0)
    wait_ns = newest + RACY_NS - time.time_ns()
    if wait_ns > 0:
        time.sleep(wait_ns / 1e9)
    _write(folder, files)


def _read(folder: Path) -> tuple[int, dict[str, dict[str, Any]]] | str:
    """``(written_ns, files)`` of the manifest, or what is wrong with it."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = {str(k): {**v, "size": int(v["size"]), "sha256": str(v["sha256"])} for k, v in data["files"].items()}
        written = int(data.get("written_ns", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"no readable {MANIFEST}"
    return written, files


def _trusted(record: dict[str, Any], now: dict[str, int], written_ns: int) -> bool:
    """The file is as recorded, and was recorded long enough after its last change to tell."""
    same = all(record.get(k) == v for k, v in now.items())
    return same and isinstance(record.get("ctime_ns"), int) and record["ctime_ns"] + RACY_NS <= written_ns


def manifest_problem(folder: Path, full: bool | None = None) -> str | None:
    """None when every file the manifest lists is there with its recorded size and digest; else what is
    wrong (no manifest counts: such a folder was never verified).

    Files whose stat is unchanged since the manifest was written are not hashed, unless ``full`` (by
    default: the environment variable ``HSR_VERIFY_CACHE`` is ``1``). Nothing is written: a run only
    reads the cache."""
    if full is None:
        full = os.environ.get("HSR_VERIFY_CACHE", "") == "1"
    manifest = _read(folder)
    if isinstance(manifest, str):
        return manifest
    written_ns, files = manifest
    if not files:
        return f"{MANIFEST} lists no files"
    for name, record in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        now = file_stat(path)
        if now["size"] != record["size"]:  # cheap first: a truncated file needs no hashing
            return f"{name} has {now['size']} bytes, {record['size']} when written"
        trusted = _trusted(record, now, written_ns)
        if trusted and not full:
            continue
        if file_digest(path) != record["sha256"]:
            return f"{name} changed since it was written (SHA-256 differs)"
    return None
