"""Per-layer partial results, so an interrupted scoring run resumes where it stopped.

Each finished layer's raw outputs (per-head, per-prompt KL and/or final hidden states) are saved
as one safetensors file. A manifest fingerprints the model, the prompts and the options; files
written for anything else are discarded rather than mixed in.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..fingerprint import fingerprint
from ..io import os_errors_of_saving, read_json_object, write_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class LayerCheckpoint:
    """Saves and loads ``{name: tensor}`` per (tag, layer[, part]) under ``directory``.

    ``part`` numbers the batched chunks of a layer's heads when they are saved one by one (several
    processes each save the chunks they computed); a whole layer has no part number.
    """

    def __init__(self, directory: str | os.PathLike, key: dict[str, Any], manage: bool = True) -> None:
        self.dir = Path(directory)
        self.key = fingerprint(key, length=20)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not manage:  # another process (rank 0) owns the manifest and has already checked it
            return
        manifest = self.dir / MANIFEST
        if manifest.is_file():
            old = read_json_object(manifest).get("fingerprint")
            if old != self.key:
                log.warning("Checkpoint %s was written for a different run; starting over.", self.dir)
                self.clear()
        write_json(manifest, {"fingerprint": self.key})

    def _path(self, tag: str, layer: int, part: int | None = None) -> Path:
        suffix = "" if part is None else f"-part{part:03d}"
        return self.dir / f"{tag}-layer{layer:04d}{suffix}.safetensors"

    def load(self, tag: str, layer: int, part: int | None = None) -> dict[str, torch.Tensor] | None:
        path = self._path(tag, layer, part)
        return load_file(str(path)) if path.is_file() else None

    def save(self, tag: str, layer: int, tensors: dict[str, torch.Tensor], part: int | None = None) -> None:
        path = self._path(tag, layer, part)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with os_errors_of_saving(tmp):  # a full disk: one line, and no half-written file kept
                save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove this module's files only (never anything else in the directory)."""
        for path in self.dir.glob("*-layer*.safetensors"):
            path.unlink()
        (self.dir / MANIFEST).unlink(missing_ok=True)
