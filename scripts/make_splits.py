"""Write the harmful-prompt splits of the aligned testbed (run once; the outputs are committed).

test = builtin:advbench_eval (fixed, 100) and builtin:harmbench (200), calibration = builtin:safety (heads + safety importance, 64),
validation = builtin:advbench_val (100, for choosing settings), train = builtin:advbench_align (the rest
of AdvBench that is not a near-duplicate of any of the above; alignment fine-tuning only).
"""

from __future__ import annotations

import json
from pathlib import Path

from hsr.align.splits import split_harmful

RES = Path(__file__).resolve().parents[1] / "src" / "hsr" / "resources"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (RES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    adv = rows("advbench")
    by_prompt = {r["prompt"]: r for r in adv}
    # builtin:harmbench is reserved too: it is a second, out-of-distribution harmful test set.
    test = [r["prompt"] for r in rows("advbench_eval")] + [r["prompt"] for r in rows("harmbench")]
    calib = [r["prompt"] for r in rows("safety")]
    val, train = split_harmful([r["prompt"] for r in adv], test, calib, n_val=100, seed=0)
    for name, prompts in (("advbench_val", val), ("advbench_align", train)):
        with open(RES / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for p in prompts:
                r = by_prompt[p]
                f.write(json.dumps({"prompt": p, "id": r["id"]}) + "\n")
        print(name, len(prompts))


if __name__ == "__main__":
    main()
