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

from . import __version__, distributed
from .errors import HsrError

#: Command modules under hsr.commands, in the order they appear in --help.
COMMANDS: tuple[str, ...] = ("align", "prune", "heads", "realign", "evaluate", "judge", "run", "sweep", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hsr",
        description="Hierarchical Safety Realignment: prune a (vision-)language model, find its safety heads, "
        "and restore the pruned weights that matter for safety.",
    )
    parser.add_argument("--version", action="version", version=f"hsr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
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
        if getattr(args, "_runtime_defaults", False):
            from .commands.common import runtime

            runtime(args)  # fill the declared defaults of the runtime flags a user left unset
        distributed.check_command(args.command)
        return int(args.func(args) or 0)
    except HsrError as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # always one line
        rank = distributed.env_rank_label()
        print(f"hsr {args.command}{rank}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hsr {args.command}: interrupted", file=sys.stderr)
        return 130


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
