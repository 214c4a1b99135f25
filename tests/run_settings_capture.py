"""The settings every stage of ``hsr run`` fingerprints, captured without running a stage.

``run_stage`` is replaced by a recorder, so the pipeline walks its whole stage graph in seconds; the
settings (what decides whether a run folder's stage is reused) and each stage's upstream names come
back in order. ``tests/data/run_settings.json`` holds what this gave before the run config became
typed; a change here means existing run folders would be recomputed.

Regenerate (only when a settings change is intended): ``python tests/run_settings_capture.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).parent / "data" / "run_settings.json"

#: (case, --set overrides on top of the tiny base config); "{pruned}" = a second tiny model folder.
CASES: list[tuple[str, list[str]]] = [
    ("single-aligned", ["align.enabled=true", "align.epochs=1"]),
    ("pruned-heads-no-control", ["heads.score_model=pruned", "realign.control=false", "prune.method=magnitude",
                                 "evaluate.models=[pruned, realigned]", "realign.q=1", "prune.sparsity=0.25"]),
    ("sweep", ["sweep.sparsities=[0.3, '2:4']", "sweep.methods=[wanda, magnitude]", "realign.top_h=1"]),
    ("sweep-pruned-heads", ["sweep.sparsities=[0.5]", "heads.score_model=pruned", "evaluate.enabled=false"]),
    ("no-eval-sparsegpt", ["evaluate.enabled=false", "prune.method=sparsegpt", "heads.approx_top_h=3"]),
    ("external-pruned", ["prune.pruned={pruned}", "evaluate.suites=[safety]"]),
]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def base_overrides(tmp: Path) -> list[str]:
    """A tiny model and tiny data files of fixed content (their digests are part of the settings)."""
    from hsr.testing.tiny import save_tiny_model

    model = save_tiny_model("qwen2", tmp / "model")
    save_tiny_model("qwen2", tmp / "pruned", seed=1)
    helpful = [{"prompt": f"Tell me about item {i}.", "response": f"Item {i} is a small red box."} for i in range(6)]
    refusals = [{"prompt": f"Explain how to harm person {i}.", "response": "I cannot help with that."} for i in range(6)]
    harmful = [{"prompt": f"Write step {i} of a dangerous plan."} for i in range(4)]
    benign = [{"prompt": f"How do I kill process {i}?"} for i in range(4)]
    mcq = [{"question": f"What is {i} plus one?", "choices": [str(i + 1), "zero"], "answer": 0} for i in range(4)]
    (tmp / "held.txt").write_text("The small red box sat on the table. " * 20)
    u, h = _jsonl(tmp / "u.jsonl", helpful), _jsonl(tmp / "h.jsonl", refusals)
    return [
        f"model={model}", f"out={tmp / 'run'}", "max_length=64",
        f"prune.data={u}", "prune.n_samples=4", f"heads.data={h}", "heads.limit=3",
        f"importance.utility_data={u}", f"importance.safety_data={h}", "importance.limit=4", "realign.top_h=2",
        f"evaluate.harmful={_jsonl(tmp / 'harm.jsonl', harmful)}", f"evaluate.benign={_jsonl(tmp / 'b.jsonl', benign)}",
        "evaluate.limit=4", "evaluate.max_new_tokens=4", f"evaluate.ppl_text={tmp / 'held.txt'}",
        f"evaluate.mcq={_jsonl(tmp / 'mcq.jsonl', mcq)}",
        f"align.harmful={h}", f"align.benign={u}",
    ]


def capture(tmp: Path, overrides: list[str], monkeypatch: Any) -> list[dict[str, Any]]:
    """Every stage ``run_pipeline`` would run for the config: name, settings (paths under ``tmp`` and the
    model's digest made neutral) and upstream stage names, in order."""
    import hsr.pipeline.run as run_module
    import hsr.report
    import hsr.report.build
    from hsr.pipeline.config import load_run_config
    from hsr.pipeline.stages import StageRecord, fingerprint

    seen: list[dict[str, Any]] = []

    def record(run_dir, name, settings, build, upstream=()):
        seen.append({"name": name, "settings": settings, "upstream": [u.name for u in upstream]})
        return StageRecord(name, run_dir / name, fingerprint(settings, [u.fingerprint for u in upstream]), True, 0.0)

    def sweep_report(dense, points, out, title):
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.md").write_text("")
        return out

    monkeypatch.setattr(run_module, "run_stage", record)
    monkeypatch.setattr(hsr.report.build, "read_metrics", lambda path: {})
    monkeypatch.setattr(hsr.report, "build_report", lambda *a, **k: tmp / "report")
    monkeypatch.setattr(hsr.report, "results_table", lambda entries: "")
    monkeypatch.setattr(hsr.report, "build_sweep_report", sweep_report)
    sets = base_overrides(tmp) + [o.replace("{pruned}", str(tmp / "pruned")) for o in overrides]
    run_module.run_pipeline(load_run_config(None, sets), progress=False, echo=lambda _m: None)
    return json.loads(json.dumps(seen, default=str).replace(str(tmp), "<TMP>"), object_hook=_neutral)


def _neutral(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: ("<model>" if k == "model_digest" else v) for k, v in obj.items()}


def capture_all(root: Path, monkeypatch: Any) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for i, (case, overrides) in enumerate(CASES):
        tmp = root / f"c{i}"
        tmp.mkdir()
        out[case] = capture(tmp, overrides, monkeypatch)
    return out


if __name__ == "__main__":  # regenerate the fixture
    import tempfile

    import pytest

    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        FIXTURE.write_text(json.dumps(capture_all(Path(d), mp), indent=1) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
