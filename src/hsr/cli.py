"""The ``hsr`` command: one subcommand per stage, each defined in ``hsr.commands.<name>``.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func`` to a callable taking the parsed args and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from . import __version__, distributed
from .errors import HsrError, describe_os_error
from .termination import Terminated, terminate_cleanly
from .values import bounded

#: Command modules under hsr.commands, in the order they appear in --help.
COMMANDS: tuple[str, ...] = ("align", "prune", "heads", "realign", "evaluate", "judge", "run", "sweep", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hsr",
        description="Hierarchical Safety Realignment: prune a (vision-)language model, find its safety heads, "
        "and restore the pruned weights that matter for safety.",
    )
    parser.add_argument("--version", action="version", version=f"hsr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail (and the traceback of an "
                        "unexpected operating-system error)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"hsr.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with terminate_cleanly():  # SIGTERM runs the same clean-up as Ctrl-C
            if getattr(args, "_runtime_defaults", False):
                from .commands.common import runtime

                runtime(args)  # fill the declared defaults of the runtime flags a user left unset
            distributed.check_command(args.command)
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a full stdout (> /dev/full) fails here, as one line, not at exit
            return code
    except HsrError as exc:
        return _error(args.command, str(exc))
    except OSError as exc:  # the safety net: no check foresaw it (ENOSPC mid-write, ELOOP, EACCES)
        if args.verbose:
            traceback.print_exc()
        _quiet_stdout()
        return _error(args.command, describe_os_error(exc))
    except UnicodeEncodeError as exc:  # text that is not Unicode (a lone surrogate) reached an output
        if args.verbose:
            traceback.print_exc()
        return _error(args.command, f"text that is not valid Unicode ({exc.reason}: {exc.object[exc.start:exc.end]!r}) "
                      "reached an output; check the inputs for lone UTF-16 surrogates such as \\ud800.")
    except KeyboardInterrupt:
        print(f"hsr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"hsr {args.command}: terminated ({exc}); temporary outputs removed", file=sys.stderr)
        return exc.exit_code


def _error(command: str, message: str) -> int:
    """Print ``hsr CMD: error: MESSAGE`` as one bounded line; the exit code of every user error."""
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())  # always one line
    rank = distributed.env_rank_label()
    print(f"hsr {command}{rank}: error: {bounded(message)}", file=sys.stderr)
    return 2


def _quiet_stdout() -> None:
    """Point stdout's file descriptor at /dev/null once writing to it failed, so the interpreter's exit-time
    flush of what is still buffered does not fail a second time with a traceback."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):  # no real stdout (captured, closed): nothing to flush later
        pass


def entry() -> None:
    """The process entry point (``hsr`` and ``python -m hsr``).

    One of several launched processes leaves with ``os._exit`` once its work is done and its process
    group destroyed: C++ teardown of the collective backend at interpreter exit intermittently aborts
    (``terminate called without an active exception``, SIGABRT) after every result is written, which
    would make the launcher report a failed job. Output streams and logging are flushed first.
    """
    code = main()
    try:
        several = distributed.launched()
    except HsrError:  # a malformed launcher environment was already reported by main()
        several = False
    if several:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
