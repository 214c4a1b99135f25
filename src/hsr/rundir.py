"""Output folders that never lose data: input protection, run-folder ownership, one writer at a time,
and clean-up of what killed processes left behind.

Every command collects what it reads in one :class:`hsr.inputs.Inputs` and checks each folder it writes
with :func:`check_out_against_inputs` before any model loads; ``hsr run`` and ``hsr sweep`` also
:func:`check_run_dir` then :func:`claim_run_dir` (refuse a folder hsr did not create) and hold a
:class:`RunLock` for the whole run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .errors import HsrError
from .io import resolve_path

log = logging.getLogger(__name__)

#: Marker file that makes a folder an hsr run folder (written by the first ``hsr run`` into it).
RUN_MARKER = ".hsr-run.json"
LOCK_FILE = ".hsr-run.lock"
#: Temporary names written by :func:`hsr.io.atomic_output_dir`: ``.NAME.tmp-PID-XXXX`` and ``.NAME.old-PID``.
_TEMP_RE = re.compile(r"^\..+\.(?:tmp|old)-(\d+)(?:-.*)?$")


#: Every local input this process's commands declared (:meth:`hsr.inputs.Inputs.add` records them):
#: :func:`clean_stale_temps` never removes one, nor a folder holding one, however temporary its name looks.
_READ: set[Path] = set()


def never_clean(paths: Iterable[Path]) -> None:
    """Record ``paths`` (absolute) as inputs that clean-up of temporary names must leave alone."""
    _READ.update(paths)


def _holds_input(entry: Path, keep: Iterable[Path]) -> bool:
    """Whether removing ``entry`` would remove or change an input: it is one, holds one or lies in one."""
    return any(entry == p or entry in p.parents or p in entry.parents for p in keep)


class OutputError(HsrError):
    """An --out that would touch an input, or a folder that is not ours to write into."""


class RunLockedError(HsrError):
    """Another live process holds the run folder."""


def check_out_against_inputs(
    out: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None] | Mapping[Path, str],
    flag: str = "--out",
) -> Path:
    """Refuse an output that equals, contains or lies inside an existing input path; return it resolved.

    Writing an output replaces its folder (``--overwrite``) or adds files to it, so all three cases could
    delete or change an input. ``inputs`` are paths, or (as :class:`hsr.inputs.Inputs` collects them)
    a mapping of paths to what they are, named in the message.
    """
    target = resolve_path(out, flag)
    labelled = inputs if isinstance(inputs, Mapping) else {source: "" for source in inputs}
    for source, what in labelled.items():
        if source is None:
            continue
        src = Path(str(source)).expanduser()
        if not src.exists() and not src.is_symlink():
            continue  # a hub id, "default" or a builtin: nothing on disk to protect here
        src = resolve_path(src.parent, "input") / src.name if src.is_symlink() else resolve_path(src, "input")
        if target == src or target in src.parents or src in target.parents:
            named = f" ({what})" if what else ""
            raise OutputError(
                f"{flag} {target} overlaps the input {src}{named}; inputs are never modified, choose an {flag} outside it."
            )
    return target


def check_writable(out: str | os.PathLike, flag: str = "--out") -> Path:
    """Fail early when ``out`` could not be created: a file in its path, or a parent we cannot write."""
    target = resolve_path(out, flag)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{flag} {target} is a file, not a folder.")
    parent = target
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{flag} {target}: {parent} is a file, so the folder cannot be created.")
    try:  # a real probe: os.access says yes to root even where the filesystem says no
        probe = tempfile.mkdtemp(prefix=f".hsr-probe-{os.getpid()}-", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"{flag} {target}: cannot write in {parent} ({exc.strerror or exc}).") from None
    return target


def _is_legacy_run_dir(path: Path) -> bool:
    """A run folder written before the marker existed: config.yaml and at least one stage.json."""
    return (path / "config.yaml").is_file() and any(path.glob("*/stage.json"))


def check_run_dir(run_dir: Path, overwrite: bool = False) -> bool:
    """Whether ``run_dir`` is already an hsr run folder; refuse one that holds anything hsr run did not
    write (a model, a pruned checkpoint, someone's files) unless ``overwrite``. Writes nothing, so it
    runs before any model loads or converts."""
    if (run_dir / RUN_MARKER).is_file() or (run_dir.is_dir() and _is_legacy_run_dir(run_dir)):
        return True
    if run_dir.exists():
        if not run_dir.is_dir():
            raise OutputError(f"run directory {run_dir} is a file.")
        foreign = sorted(p.name for p in run_dir.iterdir() if not _TEMP_RE.match(p.name))
        if foreign and not overwrite:
            shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
            raise OutputError(
                f"run directory {run_dir} already holds files hsr run did not write ({shown}); "
                "choose a new or empty --out (hsr run never replaces what it did not create)."
            )
    return False


def claim_run_dir(run_dir: Path, overwrite: bool = False) -> None:
    """Make ``run_dir`` an hsr run folder, refusing one that holds anything hsr run did not write.

    A new or empty folder is claimed (the marker is written); a folder with the marker (or an older run
    folder) is reused. Any other non-empty folder is refused (:func:`check_run_dir`) unless
    ``overwrite``, in which case its contents are kept but the folder is claimed.
    """
    marker = run_dir / RUN_MARKER
    if check_run_dir(run_dir, overwrite):
        if not marker.is_file():
            _write_marker(marker)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(marker)


def _write_marker(marker: Path) -> None:
    from . import __version__

    tmp = marker.with_name(f"{marker.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"hsr": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    os.replace(tmp, marker)


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists on this host (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class RunLock:
    """Exclusive lock on a run folder: a lock file holding the owner's pid and host.

    A lock left by a dead process on this host is taken over (with a warning); a live holder, or one on
    another host (cannot be checked), gets a clear error naming it.
    """

    def __init__(self, run_dir: Path, command: str = "hsr run") -> None:
        self.path = run_dir / LOCK_FILE
        self.command = command
        self.held = False

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = self.holder()
                pid, host = int(held.get("pid", -1) or -1), held.get("host")
                if host == socket.gethostname() and not pid_alive(pid):
                    log.warning("taking over the lock of %s left by process %s, which no longer runs", self.path.parent, pid)
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                if not held:  # being written by its holder right now, or unreadable: treat as held
                    time.sleep(0.2)
                    held = self.holder() or {"pid": "?", "host": "?"}
                raise RunLockedError(
                    f"run directory {self.path.parent} is in use by {held.get('command', 'hsr')} "
                    f"(pid {held.get('pid')} on {held.get('host')}, since {held.get('since', '?')}); wait for it to "
                    f"finish, or delete {self.path} if that process is gone."
                )
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(info) + "\n")
            self.held = True
            return
        raise RunLockedError(f"could not take the lock {self.path}; another process keeps taking it.")

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def clean_stale_temps(folder: Path, depth: int = 2, keep: Iterable[Path] = ()) -> list[Path]:
    """Remove temporary folders/files of processes that died mid-write (``.NAME.tmp-PID-*``, ``.NAME.old-PID``).

    Only names of hsr's atomic writes whose process is gone are touched, ``depth`` levels down, and
    never an input (``keep``, and every input this process declared: :func:`never_clean`), since a
    folder someone named like a leftover may be the model being read. Returns what was removed.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    inputs = [*_READ, *(Path(f(p)) for p in keep for f in (os.path.abspath, os.path.realpath))]
    base = Path(os.path.realpath(folder))  # inputs are recorded with their folders resolved
    for entry in folder.iterdir():
        m = _TEMP_RE.match(entry.name)
        if m and not pid_alive(int(m.group(1))) and not _holds_input(base / entry.name, inputs):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            removed.append(entry)
        elif depth > 1 and entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."):
            removed += clean_stale_temps(entry, depth - 1, keep)
    return removed


@contextlib.contextmanager
def run_folder(run_dir: Path, overwrite: bool = False, command: str = "hsr run") -> Iterator[Path]:
    """Claim, lock and tidy ``run_dir`` for the duration of a run."""
    claim_run_dir(run_dir, overwrite=overwrite)
    with RunLock(run_dir, command):
        removed = clean_stale_temps(run_dir, depth=3)
        if removed:
            log.warning("removed %d temporary item(s) left by interrupted runs in %s", len(removed), run_dir)
        yield run_dir
