"""``hsr run``: prune -> heads -> importance -> realign (+ random-head control) -> evaluate -> report.

Each stage writes one folder under the run directory and is skipped on a re-run when its settings
and its upstream stages are unchanged (see :mod:`hsr.pipeline.stages`). Stages reload models from
disk rather than passing them along: a stage can then run alone after an interruption, and the
realigned model is always compared against the exact pruned checkpoint it was restored from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..data import load_samples
from ..errors import ConfigError
from ..io import read_json
from ..loading import LoadedModel, load_model
from .stages import StageRecord, fingerprint, run_stage

log = logging.getLogger(__name__)

#: Folder names inside a run directory.
PRUNED, HEADS, IMPORTANCE, REALIGNED, CONTROL, EVAL, REPORT = (
    "pruned", "heads", "importance", "realigned", "control", "eval", "report"
)
EVALUABLE = ("dense", "pruned", "realigned", "control")


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageRecord] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    report_dir: Path | None = None


def _common(config: dict[str, Any]) -> dict[str, Any]:
    """Settings every model-touching stage depends on."""
    model = config["model"]
    p = Path(str(model)).expanduser()
    return {
        "model": str(p.resolve()) if p.exists() else model,
        "dtype": config["dtype"],
        "device": config["device"],
        "max_length": config["max_length"],
        "seed": config["seed"],
    }


class _Pipeline:
    def __init__(self, config: dict[str, Any], progress: bool, echo: Callable[[str], None]) -> None:
        self.config = config
        self.progress = progress
        self.echo = echo
        self.run_dir = Path(config["out"]).expanduser().resolve()
        self.common = _common(config)
        self.result = RunResult(self.run_dir)

    # ------------------------------------------------------------------ helpers
    def load(self, source: str | Path) -> LoadedModel:
        c = self.config
        return load_model(
            str(source), dtype=c["dtype"], device=c["device"], trust_remote_code=bool(c["trust_remote_code"])
        )

    def stage(self, name: str, settings: Any, build: Callable[[Path], Any], upstream: list[StageRecord]) -> StageRecord:
        self.echo(f"[hsr run] {name} ...")
        record = run_stage(self.run_dir, name, settings, build, upstream)
        how = "reused" if record.reused else f"done in {record.seconds:.1f} s"
        self.echo(f"[hsr run] {name}: {how} -> {record.path}")
        self.result.stages.append(record)
        return record

    # ------------------------------------------------------------------ stages
    def prune(self) -> StageRecord:
        from ..pruning import PruneConfig, Sparsity, prune_model, save_pruned

        cfg = self.config["prune"]
        if cfg["pruned"]:
            # An external pruned checkpoint: nothing to compute, but it still anchors the cache.
            path = Path(cfg["pruned"]).expanduser().resolve()
            if not path.is_dir():
                raise ConfigError(f"prune.pruned: {str(path)!r} is not a model directory.")
            marks = sorted((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in path.iterdir() if f.is_file())
            return StageRecord(PRUNED, path, fingerprint({"external": str(path), "files": marks}), True, 0.0)
        prune_config = PruneConfig(
            method=cfg["method"],
            sparsity=Sparsity.parse(str(cfg["sparsity"])),
            max_length=self.config["max_length"],
            seed=self.config["seed"],
            include_mlp=bool(cfg["include_mlp"]),
        )
        prune_config.validate()
        settings = {**self.common, **{k: v for k, v in cfg.items() if k != "pruned"}}

        def build(tmp: Path) -> None:
            samples = (
                load_samples(cfg["data"], limit=cfg["n_samples"], seed=self.config["seed"])
                if cfg["method"] != "magnitude" else []
            )
            loaded = self.load(self.config["model"])
            result = prune_model(loaded, samples, prune_config, progress=self.progress)
            result.summary["data"] = cfg["data"] if samples else None
            save_pruned(tmp, loaded, result, overwrite=True)

        return self.stage(PRUNED, settings, build, [])

    def heads(self, pruned: StageRecord) -> StageRecord:
        from ..heads import HeadScoreConfig, save_head_scores, score_heads

        cfg = self.config["heads"]
        upstream = [pruned] if cfg["score_model"] == "pruned" else []
        settings = {**self.common, **cfg}
        checkpoint = self.run_dir / f".heads-checkpoint-{fingerprint(settings, [u.fingerprint for u in upstream])}"

        def build(tmp: Path) -> None:
            samples = load_samples(cfg["data"], limit=cfg["limit"], seed=self.config["seed"])
            source = pruned.path if cfg["score_model"] == "pruned" else self.config["model"]
            loaded = self.load(source)
            head_config = HeadScoreConfig(
                score=cfg["score"],
                mode=cfg["mode"],
                engine=cfg["engine"],
                rank=int(cfg["rank"]),
                sahara_steps=int(cfg["sahara_steps"]),
                max_length=self.config["max_length"],
            )
            scores = score_heads(loaded, samples, head_config, checkpoint_dir=checkpoint, progress=self.progress)
            save_head_scores(tmp, scores, model_label=f"{cfg['score_model']} {self.config['model']}")

        record = self.stage(HEADS, settings, build, upstream)
        if checkpoint.exists():
            import shutil

            shutil.rmtree(checkpoint, ignore_errors=True)
        return record

    def importance(self) -> StageRecord:
        from ..realign import compute_importance, save_importance

        cfg = self.config["importance"]
        settings = {**self.common, **cfg}

        def build(tmp: Path) -> None:
            loaded = self.load(self.config["model"])
            for kind in ("utility", "safety"):
                samples = load_samples(cfg[f"{kind}_data"], limit=cfg["limit"], seed=self.config["seed"])
                scores = compute_importance(
                    loaded, samples, method=cfg["method"], max_length=self.config["max_length"], progress=self.progress
                )
                save_importance(scores, tmp / f"{kind}.safetensors")

        return self.stage(IMPORTANCE, settings, build, [])

    def realign(self, name: str, pruned: StageRecord, heads: StageRecord, importance: StageRecord, random_heads: bool) -> StageRecord:
        from ..realign import (
            RealignConfig,
            load_importance,
            load_pruned_masks,
            read_head_ranking,
            realign_pruned,
            save_realigned,
        )

        cfg = {k: v for k, v in self.config["realign"].items() if k != "control"}
        realign_config = RealignConfig(
            top_h=int(cfg["top_h"]), p=float(cfg["p"]), q=float(cfg["q"]), max_p=float(cfg["max_p"]),
            per_row=bool(cfg["per_row"]), include_mlp=bool(cfg["include_mlp"]), whole_head=bool(cfg["whole_head"]),
            random_heads=random_heads, seed=int(self.config["seed"]), preserve_nm=bool(cfg["preserve_nm"]),
            budget=cfg["budget"],
        )
        realign_config.validate()
        settings = {**self.common, **cfg, "random_heads": random_heads}

        def build(tmp: Path) -> None:
            dense = self.load(self.config["model"])
            pruned_model = self.load(pruned.path)
            masks = load_pruned_masks(pruned.path, dense.model, pruned_model.model)
            ranking = read_head_ranking(heads.path / "heads.json")
            utility = load_importance(importance.path / "utility.safetensors")
            safety = load_importance(importance.path / "safety.safetensors")
            result = realign_pruned(dense, pruned_model, masks, ranking, utility, safety, realign_config)
            del dense
            save_realigned(tmp, pruned_model, result, overwrite=True)

        return self.stage(name, settings, build, [pruned, heads, importance])

    def evaluate(self, label: str, model_path: str | Path, upstream: list[StageRecord]) -> StageRecord:
        from ..evaluation import EvalConfig, evaluate_model

        cfg = {k: v for k, v in self.config["evaluate"].items() if k not in ("enabled", "models")}
        eval_config = EvalConfig(
            harmful=cfg["harmful"], benign=cfg["benign"], limit=cfg["limit"], max_new_tokens=int(cfg["max_new_tokens"]),
            batch_size=int(cfg["batch_size"]), judge=cfg["judge"], ppl_text=cfg["ppl_text"], mcq=cfg["mcq"],
            max_length=int(self.config["max_length"]), seed=int(self.config["seed"]),
            mcq_limit=cfg["mcq_limit"], mcq_method=cfg["mcq_method"], ppl_max_tokens=cfg["ppl_max_tokens"],
            suites=tuple(cfg["suites"]),
        )
        eval_config.validate()
        settings = {**self.common, **cfg, "label": label}

        def build(tmp: Path) -> None:
            loaded = self.load(model_path)
            evaluate_model(loaded, eval_config, tmp, label=label, progress=self.progress)

        return self.stage(f"{EVAL}/{label}", settings, build, upstream)

    # ------------------------------------------------------------------ all
    def run(self) -> RunResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        pruned = self.prune()
        heads = self.heads(pruned)
        importance = self.importance()
        realigned = self.realign(REALIGNED, pruned, heads, importance, random_heads=False)
        models: dict[str, tuple[Path | str, list[StageRecord]]] = {
            "dense": (self.config["model"], []),
            "pruned": (pruned.path, [pruned]),
            "realigned": (realigned.path, [realigned]),
        }
        if self.config["realign"]["control"]:
            control = self.realign(CONTROL, pruned, heads, importance, random_heads=True)
            models["control"] = (control.path, [control])
        ev = self.config["evaluate"]
        if ev["enabled"]:
            unknown = [m for m in ev["models"] if m not in EVALUABLE]
            if unknown:
                raise ConfigError(f"evaluate.models: unknown {unknown}; choose from {', '.join(EVALUABLE)}.")
            for label in ev["models"]:
                if label not in models:
                    continue  # e.g. control disabled
                path, upstream = models[label]
                record = self.evaluate(label, path, upstream)
                summary = Path(path) / "summary.json"
                summary_data = read_json(summary) if label != "dense" and summary.is_file() else None
                is_realigned = label in (REALIGNED, CONTROL)
                self.result.entries.append(
                    {
                        "label": label,
                        "metrics": read_json(record.path / "metrics.json"),
                        "realign_summary": summary_data if is_realigned else None,
                        "prune_summary": summary_data if label == PRUNED else None,
                    }
                )
            self.report(heads)
        return self.result

    def report(self, heads: StageRecord) -> None:
        from ..report import build_report, results_table

        out = self.run_dir / REPORT
        self.result.report_dir = build_report(
            self.result.entries, out, heads_json=heads.path / "heads.json",
            title=f"HSR run: {self.config['model']}",
        )
        self.result.table = results_table(self.result.entries)


def run_pipeline(config: dict[str, Any], progress: bool = True, echo: Callable[[str], None] = print) -> RunResult:
    """Run (or resume) the whole HSR pipeline described by ``config`` (see ``configs/default.yaml``)."""
    return _Pipeline(config, progress, echo).run()
