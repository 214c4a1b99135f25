"""results.json of benchmarks/gpu_check.sh: every step's exit code and time, heads.py's ratios and peak GPU
memory (GPU default --max-batch-tokens against 1024), memory.py's capped/uncapped ratios.

    python benchmarks/gpu_check_summary.py OUT_DIR NPROC

A missing or failed step leaves its part empty (null) rather than failing the summary: what did run
is still recorded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _read(dest: Path, name: str) -> Any:
    path = dest / name
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None  # a step killed while writing


def _steps(dest: Path) -> dict[str, dict[str, Any]]:
    steps = {}
    for line in (dest / "steps.tsv").read_text().splitlines():
        name, rc, seconds = line.split("\t")
        steps[name] = {"rc": int(rc), "seconds": int(seconds), "timed_out": rc in ("124", "137")}
    return steps


def _heads(dest: Path) -> dict[str, dict[str, Any]]:
    heads = {}
    for key in ("heads_gpu_default", "heads_1024"):
        data = _read(dest, f"{key}.json")
        if data:
            heads[key] = {r["variant"]: {k: r.get(k) for k in ("seconds", "x_naive", "peak_gpu_bytes", "max_diff")}
                          for r in data["runs"]}
    return heads


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def heads_comparison(heads: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per prompt-batching variant: how much faster the GPU default budget is than 1024 tokens, and its
    peak GPU memory relative to 1024's."""
    if len(heads) < 2:
        return {}
    out = {}
    for variant, a in heads["heads_gpu_default"].items():
        b = heads["heads_1024"].get(variant)
        if b and "batching" in variant:
            out[variant] = {"speedup_gpu_default_vs_1024": _ratio(b["seconds"], a["seconds"]),
                            "peak_gpu_ratio": _ratio(a["peak_gpu_bytes"], b["peak_gpu_bytes"])}
    return out


def _memory(dest: Path) -> dict[str, Any] | None:
    memory = _read(dest, "memory.json")
    if not memory:
        return None
    out: dict[str, Any] = {"identical": memory["identical"]}
    for stage, v in memory["stages"].items():
        out[stage] = {"gpu_ratio": v["gpu_ratio"], "rss_ratio": v["rss_ratio"], "slowdown": v["slowdown"],
                      "peak_gpu_uncapped": v["uncapped"]["peak_gpu"], "peak_gpu_capped": v["capped"]["peak_gpu"]}
    return out


def summarize(dest: Path, nproc: int) -> dict[str, Any]:
    steps = _steps(dest)
    heads = _heads(dest)
    device = dest / "device.txt"
    return {
        "device": device.read_text().strip() if device.is_file() else None,
        "steps": steps,
        "heads": heads,
        "heads_gpu_default_vs_1024": heads_comparison(heads),
        "memory": _memory(dest),
        "torchrun": {"nproc": nproc, "nccl_group": nproc > 1,
                     "heads_json": (dest / "torchrun_heads" / "heads.json").is_file()},
        "ok": bool(steps) and all(s["rc"] == 0 for s in steps.values()),
    }


def main(argv: list[str]) -> int:
    dest, nproc = Path(argv[0]), int(argv[1])
    out = summarize(dest, nproc)
    (dest / "results.json").write_text(json.dumps(out, indent=2))
    print(json.dumps({k: out[k] for k in ("steps", "heads_gpu_default_vs_1024", "ok")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
