"""Load a repository script (scripts/, benchmarks/) as a module, so tests can call its functions (a source
checkout only: the scripts are not part of the installed package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[3]


def load_script(relative: str) -> ModuleType:
    """``load_script("benchmarks/judge_agreement.py")`` -> the module (scripts are not a package)."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module
