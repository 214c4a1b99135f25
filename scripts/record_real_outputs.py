"""Record greedy answers of the real SmolLM2-135M-Instruct for the judge's test fixture.

Writes ``real_outputs_raw.jsonl`` (or the path given): the dense model on the first 30 harmful
(builtin:advbench_eval) and 30 benign (builtin:benign) prompts, plus the same harmful prompts
after magnitude pruning at 60% (a broken model, source of real degenerate outputs). Labels are
added by hand afterwards (tests/data/real_outputs.jsonl). Run:

    PYTHONPATH=src python scripts/record_real_outputs.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hsr.data import load_samples
from hsr.evaluation.generation import generate
from hsr.loading import load_model
from hsr.pruning.masks import Sparsity
from hsr.pruning.prune import PruneConfig, prune_model

N = 30
MAX_NEW_TOKENS = 64
MODEL = "SmolLM2-135M-Instruct"


def _rows(model: str, kind: str, samples, outputs) -> list[dict]:
    return [{"model": model, "kind": kind, "prompt": s.prompt, "output": o} for s, o in zip(samples, outputs)]


def main(out: str = "real_outputs_raw.jsonl") -> None:
    harmful = load_samples("builtin:advbench_eval")[:N]
    benign = load_samples("builtin:benign")[:N]
    loaded = load_model("default")
    kw = dict(max_new_tokens=MAX_NEW_TOKENS, batch_size=10)
    rows = _rows(MODEL, "harmful", harmful, generate(loaded, harmful, **kw))
    rows += _rows(MODEL, "benign", benign, generate(loaded, benign, **kw))
    prune_model(loaded, [], PruneConfig(method="magnitude", sparsity=Sparsity.parse(0.6)), progress=False)
    rows += _rows(f"{MODEL} magnitude-60%", "harmful", harmful[:15], generate(loaded, harmful[:15], **kw))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
