"""``hsr sweep``: the HSR pipeline at several sparsities (and pruning methods), with a sweep report."""

from __future__ import annotations

import argparse

from ..pipeline.config import read_run_config
from ..pipeline.run import run_pipeline
from .common import hide_library_progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="prune at several sparsities/methods; evaluate dense, pruned, realigned and control at each",
        description="Run the HSR pipeline at every (method, sparsity) point. Alignment, head scores of the dense "
        "model, importance and the dense evaluation are computed once and shared; each point lives in "
        "RUN/<method>-<sparsity>/. The report plots ASR and perplexity against sparsity with 95%% intervals "
        "and marks where safety breaks.",
    )
    p.add_argument("config", nargs="?", help="run config YAML (keys as in `hsr run --print-config`)")
    p.add_argument("--sparsities", required=True, help="comma-separated, e.g. 0.3,0.4,0.5,0.6 (N:M allowed: 2:4)")
    p.add_argument("--methods", default=None, help="comma-separated pruning methods (default: prune.method)")
    p.add_argument("--model", help="override `model`")
    p.add_argument("--out", help="override `out` (the run directory)")
    p.add_argument("--device", help="override `device`")
    p.add_argument("--dtype", help="override `dtype`")
    p.add_argument("--max-memory", help="override `max_memory`, e.g. 0=20GiB,cpu=64GiB")
    p.add_argument("--offload-folder", help="override `offload_folder`")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (same as --set progress=false)")
    p.set_defaults(func=run)


def _list(text: str) -> str:
    items = [t.strip() for t in text.split(",") if t.strip()]
    return "[" + ", ".join(f'"{t}"' for t in items) + "]"


def run(args: argparse.Namespace) -> int:
    overrides = [f"sweep.sparsities={_list(args.sparsities)}"]
    if args.methods:
        overrides.append(f"sweep.methods={_list(args.methods)}")
    for key in ("model", "out", "device", "dtype", "max_memory", "offload_folder"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    config = read_run_config(args.config, overrides + list(args.overrides))
    progress = config.progress and not args.no_progress
    if not progress:
        hide_library_progress()
    result = run_pipeline(config, progress=progress)
    if result.table:
        print()
        print(result.table)
    if result.report_dir is not None:
        print(f"\nReport: {result.report_dir / 'sweep.html'} (markdown: {result.report_dir / 'sweep.md'})")
    print(f"Run directory: {result.run_dir}")
    return 0
