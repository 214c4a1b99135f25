"""Data files shipped with hsr (calibration sets, harmful-prompt benchmarks, held-out text).

See ``LICENSES.md`` in this folder for the origin and license of every file.
"""

from __future__ import annotations

from pathlib import Path

RESOURCE_DIR = Path(__file__).resolve().parent

#: name -> file in this folder
BUILTIN_DATASETS: dict[str, str] = {}


def builtin_path(name: str) -> Path:
    """Path of a built-in data file by name (``builtin:NAME`` in data specs)."""
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"Unknown built-in dataset {name!r}; available: {', '.join(sorted(BUILTIN_DATASETS)) or 'none'}.")
    return RESOURCE_DIR / BUILTIN_DATASETS[name]
