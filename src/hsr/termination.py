"""SIGTERM (and SIGHUP) leave through the same clean-up as Ctrl-C: a batch scheduler's kill or a closed
terminal must not leave a half-written temporary output folder (hundreds of MB) behind.

Python's default for SIGTERM is to die at once, skipping every ``finally``; here the signal raises
:class:`Terminated` in the main thread instead, so the atomic writers' ``finally`` blocks remove
their temporary folders before the process exits.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Iterator

#: Signals turned into :class:`Terminated`, where the platform has them.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM/SIGHUP). A BaseException, like KeyboardInterrupt, so no
    ``except Exception`` swallows it on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Within the block, the first SIGTERM/SIGHUP raises :class:`Terminated`; later ones are ignored so
    the clean-up already running is not cut short. Previous handlers come back afterwards. Outside the
    main thread (where handlers cannot be installed) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def handler(signum: int, frame: FrameType | None) -> None:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(signum)

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
