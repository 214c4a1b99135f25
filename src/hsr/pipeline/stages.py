"""Cached pipeline stages: a finished stage is skipped when re-run with the same settings.

Each stage writes into ``RUN_DIR/<stage>/`` atomically and records a fingerprint of the settings
(and of the stages it depends on) in ``stage.json``. A stage whose fingerprint matches is reused;
one whose settings changed is recomputed, and so is everything downstream of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..fingerprint import fingerprint as _hash
from ..io import atomic_output_dir, read_json_object, write_json
from ..values import is_finite_number
from ..rundir import OutputError

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"


def fingerprint(settings: Any, upstream: list[str] | tuple[str, ...] = ()) -> str:
    """Stable hash of a stage's settings (content digests of its inputs included), its upstream stages'
    fingerprints and the hsr version (a new version may compute differently)."""
    return _hash({"settings": settings, "upstream": list(upstream), "hsr": __version__})


@dataclass
class StageRecord:
    name: str
    path: Path
    fingerprint: str
    reused: bool
    seconds: float


def run_stage(
    run_dir: Path,
    name: str,
    settings: Any,
    build: Callable[[Path], Any],
    upstream: list[StageRecord] | tuple[StageRecord, ...] = (),
) -> StageRecord:
    """Run ``build(tmp_dir)`` unless ``run_dir/name`` already holds a result with the same fingerprint."""
    fp = fingerprint(settings, [u.fingerprint for u in upstream])
    path = run_dir / name
    marker = path / STAGE_FILE
    if marker.is_file():
        done = read_json_object(marker)  # damaged or of the wrong shape: recomputed like changed settings
        if done.get("fingerprint") == fp:
            log.info("stage %s: cached (%s)", name, path)
            seconds = done.get("seconds")
            return StageRecord(name, path, fp, True, float(seconds) if is_finite_number(seconds) else 0.0)
        log.info("stage %s: settings changed, recomputing", name)
    elif path.exists():
        raise OutputError(f"{path} exists but was not written by hsr run (no {STAGE_FILE}); move it out of the run directory.")
    start = time.perf_counter()
    with atomic_output_dir(path, overwrite=True) as tmp:
        details = build(tmp)
        seconds = time.perf_counter() - start
        record = {"stage": name, "fingerprint": fp, "settings": settings, "seconds": seconds,
                  "upstream": {u.name: u.fingerprint for u in upstream}}
        if isinstance(details, dict):  # what the stage measured beside its results (e.g. phase timings)
            record.update(details)
        write_json(tmp / STAGE_FILE, record)
    return StageRecord(name, path, fp, False, seconds)
