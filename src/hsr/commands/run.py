"""``hsr run [CONFIG.yaml]``: the whole HSR pipeline, with cached stages, ending in a results table."""

from __future__ import annotations

import argparse

from ..pipeline.config import default_config_text, read_run_config
from ..pipeline.run import run_pipeline
from .common import hide_library_progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="prune -> heads -> importance -> realign -> evaluate -> report (embedded default without a config)",
        description="Run the whole HSR pipeline. Without CONFIG the embedded default runs: SmolLM2-135M-Instruct, "
        "Wanda 50%%, top-10 Ships heads, a random-head control, and evaluation of all four models. Finished stages "
        "in the run directory are reused when their settings are unchanged.",
    )
    p.add_argument("config", nargs="?", help="run config YAML (keys as in `hsr run --print-config`)")
    p.add_argument("--model", help="override `model`")
    p.add_argument("--out", help="override `out` (the run directory)")
    p.add_argument("--device", help="override `device`")
    p.add_argument("--dtype", help="override `dtype`")
    p.add_argument("--max-memory", help="override `max_memory`, e.g. 0=20GiB,cpu=64GiB")
    p.add_argument("--offload-folder", help="override `offload_folder`")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override any config key, e.g. --set realign.top_h=5 --set evaluate.limit=64 (repeatable)",
    )
    p.add_argument("--print-config", action="store_true", help="print the embedded default config and exit")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (same as --set progress=false)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.print_config:
        print(default_config_text(), end="")
        return 0
    overrides = list(args.overrides)
    for key in ("model", "out", "device", "dtype", "max_memory", "offload_folder"):
        value = getattr(args, key)
        if value is not None:
            overrides.insert(0, f"{key}={value}")
    config = read_run_config(args.config, overrides)
    progress = config.progress and not args.no_progress
    if not progress:
        hide_library_progress()
    result = run_pipeline(config, progress=progress)
    if result.table:
        print()
        print(result.table)
    if result.report_dir is not None:
        print(f"\nReport: {result.report_dir / 'report.html'} (markdown: {result.report_dir / 'report.md'})")
    print(f"Run directory: {result.run_dir}")
    return 0
