"""The harness the bad-input test files share: write inputs, hash a folder, run cases two at a time
(subprocess start-up dominates), and check that a case ended in one clear error line."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def tree(folder: Path, keep: Callable[[Path], bool] = Path.is_file) -> dict[str, str]:
    """Digest of every file under ``folder`` that ``keep`` accepts, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if keep(p)}


def run_all(cases: Sequence[tuple], run_case: Callable[[tuple], dict]) -> dict[str, dict]:
    """Each case's result by its name (the case's first item), two cases at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c[0] for c in cases], pool.map(run_case, cases)))


def error_line(result: dict) -> str:
    """The last stderr line of a case that must fail with exit code 2, no traceback and a message."""
    err = result["err"]
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines, "no message on stderr"
    assert result["rc"] == 2, (result["rc"], err[-2000:])
    return lines[-1]
