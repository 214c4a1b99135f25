"""``hsr run``: [align ->] prune -> heads -> importance -> realign (+ random-head control) -> evaluate -> report.

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
from ..fingerprint import data_digest, judge_digest, model_digest, tree_digest
from ..io import read_json_object
from ..loading import LoadedModel, load_model
from ..inputs import Inputs
from ..rundir import run_folder
from .config import align_options, eval_options, head_options, prune_options, realign_options
from .sections import head_data_keys
from .stages import StageRecord, fingerprint, run_stage

log = logging.getLogger(__name__)

#: Folder names inside a run directory.
ALIGNED, PRUNED, HEADS, IMPORTANCE, REALIGNED, CONTROL, EVAL, REPORT = (
    "aligned", "pruned", "heads", "importance", "realigned", "control", "eval", "report"
)
SHARED_LABELS = ("base", "dense")  # models that do not depend on the pruning point


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageRecord] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    report_dir: Path | None = None


def _common(config: dict[str, Any]) -> dict[str, Any]:
    """Settings every model-touching stage depends on: the input model's *contents*, not only its path."""
    model = config["model"]
    p = Path(str(model)).expanduser()
    return {
        "model": str(p.resolve()) if p.exists() else model,
        "model_digest": model_digest(model),
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
        self.common: dict[str, Any] = {}  # filled after the preflight: digesting the default model converts it
        self.inputs = Inputs()  # everything the enabled stages read, filled by the preflight
        self.result = RunResult(self.run_dir)
        # The model every stage treats as "dense": the input model, or its aligned version.
        self.dense: str | Path = config["model"]
        self.dense_upstream: list[StageRecord] = []
        self._digests: dict[tuple[Any, bool], str] = {}

    # ------------------------------------------------------------------ helpers
    def digests(self, stage: str, section: dict[str, Any], keys: tuple[str, ...], text: tuple[str, ...] = ()) -> dict[str, str]:
        """Content digests of the data files a stage reads, images its rows name included (so an edited
        file is never served from cache); the files join the run's inputs."""
        out = {}
        for k in keys:
            spec = (section[k], k in text)
            if spec not in self._digests:
                self._digests[spec] = data_digest(self.inputs.data(section[k], f"{stage}.{k}", text=k in text))
            out[k] = self._digests[spec]
        return out

    def preflight(self) -> None:
        """Read every input the enabled stages will use and check every folder the run writes against
        them, before the first model loads or the default model is converted."""
        from ..data import require_responses
        from ..loading import locate_model
        from ..shape import model_heads
        from ..realign.ranking import check_top_h
        from .config import head_options

        c = self.config
        locate_model(c["model"], convert_default=False)
        self.inputs.model(c["model"])
        self.inputs.model(c["prune"]["pruned"] or None, "prune.pruned")
        if align_enabled(c):
            self.digests("align", c["align"], ("harmful", "benign"))
        methods = {point.method for point in sweep_points(c) or []} or {c["prune"]["method"]}
        if methods != {"magnitude"} and not c["prune"]["pruned"]:
            self.digests("prune", c["prune"], ("data",))  # some (sweep) method calibrates on it
        self.digests("heads", c["heads"], head_data_keys(c["heads"]["score"]))
        self.digests("importance", c["importance"], ("utility_data", "safety_data"))
        imp = c["importance"]
        for kind in ("utility", "safety"):  # importance scores response tokens
            require_responses(load_samples(imp[f"{kind}_data"], limit=imp["limit"], seed=c["seed"]), f"importance.{kind}_data")
        if c["evaluate"]["enabled"]:
            eval_options(c).check_data()  # the judge spec too
            self.digests("evaluate", c["evaluate"], ("harmful", "benign", "ppl_text", "mcq"), text=("ppl_text", "mcq"))
            eval_options(c).add_inputs(self.inputs)  # the judge model and lm-eval task files too
        self.check_written()
        shape = model_heads(c["model"])  # config.json or the GGUF header: no model is loaded for it
        if shape is not None:
            check_top_h(c["realign"]["top_h"], *shape)
            heads = c["heads"]
            benign = (len(load_samples(heads["benign_data"], limit=heads["limit"], seed=c["seed"]))
                      if "benign_data" in head_data_keys(heads["score"]) else None)
            head_options(c).check_against(len(load_samples(heads["data"], limit=heads["limit"], seed=c["seed"])), *shape,
                                          n_benign=benign)

    def check_written(self) -> None:
        """The run folder, the offload folder and (converting the default model) the cache: none may
        overlap an input; the run folder must be hsr's own (or new), the others creatable."""
        from ..rundir import check_run_dir, check_writable

        self.inputs.check_written(self.run_dir, "out")
        check_writable(self.run_dir, "out")
        check_run_dir(self.run_dir)
        if self.config.get("offload_folder"):
            check_writable(self.inputs.check_written(self.config["offload_folder"], "offload_folder"), "offload_folder")
        self.inputs.check_cache()

    def load(self, source: str | Path, share: int = 1) -> LoadedModel:
        """``source`` with the run's device, dtype and placement; ``share`` models held at once split the budgets."""
        c = self.config
        return load_model(
            str(source), dtype=c["dtype"], device=c["device"], trust_remote_code=bool(c["trust_remote_code"]),
            max_memory=c.get("max_memory"), offload_folder=c.get("offload_folder"), share=share,
        )

    def stage(self, name: str, settings: Any, build: Callable[[Path], Any], upstream: list[StageRecord]) -> StageRecord:
        self.echo(f"[hsr run] {name} ...")
        record = run_stage(self.run_dir, name, settings, build, upstream)
        how = "reused" if record.reused else f"done in {record.seconds:.1f} s"
        self.echo(f"[hsr run] {name}: {how} -> {record.path}")
        self.result.stages.append(record)
        return record

    # ------------------------------------------------------------------ stages
    def align(self) -> None:
        """Safety-tune the input model first (the embedded testbed); later stages use it as dense."""
        from ..align import align_model, save_aligned

        cfg = {k: v for k, v in self.config["align"].items() if k != "enabled"}
        align_config = align_options(self.config)
        settings = {**self.common, **cfg, "data_digests": self.digests("align", cfg, ("harmful", "benign"))}

        def build(tmp: Path) -> None:
            loaded = self.load(self.config["model"])
            summary = align_model(loaded, align_config, progress=self.progress)
            summary["base_model"] = str(self.config["model"])
            save_aligned(tmp, loaded, summary, overwrite=True)

        record = self.stage(ALIGNED, settings, build, [])
        self.dense, self.dense_upstream = record.path, [record]

    def prune(self, point: Point | None = None) -> StageRecord:
        from ..pruning import prune_model, save_pruned

        cfg = dict(self.config["prune"])
        if point is not None:
            cfg.update(method=point.method, sparsity=point.sparsity)
        name = point.folder(PRUNED) if point is not None else PRUNED
        if cfg["pruned"]:
            # An external pruned checkpoint: nothing to compute, but it still anchors the cache.
            path = Path(cfg["pruned"]).expanduser().resolve()
            if not path.is_dir():
                raise ConfigError(f"prune.pruned: {str(path)!r} is not a model directory.")
            return StageRecord(name, path, fingerprint({"external": str(path), "digest": tree_digest(path)}), True, 0.0)
        prune_config = prune_options(self.config, cfg["method"], cfg["sparsity"])
        settings = {**self.common, **{k: v for k, v in cfg.items() if k != "pruned"}}
        if cfg["method"] != "magnitude":
            settings["data_digests"] = self.digests("prune", cfg, ("data",))

        def build(tmp: Path) -> None:
            samples = (
                load_samples(cfg["data"], limit=cfg["n_samples"], seed=self.config["seed"])
                if cfg["method"] != "magnitude" else []
            )
            loaded = self.load(self.dense)
            result = prune_model(loaded, samples, prune_config, progress=self.progress)
            result.summary["data"] = cfg["data"] if samples else None
            save_pruned(tmp, loaded, result, overwrite=True)

        return self.stage(name, settings, build, self.dense_upstream)

    def heads(self, pruned: StageRecord | None, name: str = HEADS) -> StageRecord:
        from ..heads import save_head_scores, score_heads

        keys = head_data_keys(self.config["heads"]["score"])  # benign_data only where the score reads it
        cfg = {k: v for k, v in self.config["heads"].items() if k != "benign_data" or k in keys}
        upstream = [pruned] if cfg["score_model"] == "pruned" else list(self.dense_upstream)
        settings = {**self.common, **cfg, "data_digests": self.digests("heads", cfg, keys)}
        checkpoint = self.run_dir / f".heads-checkpoint-{fingerprint(settings, [u.fingerprint for u in upstream])}"

        def build(tmp: Path) -> dict:
            samples = load_samples(cfg["data"], limit=cfg["limit"], seed=self.config["seed"])
            benign = load_samples(cfg["benign_data"], limit=cfg["limit"], seed=self.config["seed"]) if "benign_data" in keys else None
            source = pruned.path if cfg["score_model"] == "pruned" else self.dense
            loaded = self.load(source)
            scores = score_heads(loaded, samples, head_options(self.config), checkpoint_dir=checkpoint, progress=self.progress,
                                 benign=benign)
            save_head_scores(tmp, scores, model_label=f"{cfg['score_model']} {self.dense}")
            return {"timings": scores.timings}

        record = self.stage(name, settings, build, upstream)
        if checkpoint.exists():
            import shutil

            shutil.rmtree(checkpoint, ignore_errors=True)
        return record

    def importance(self) -> StageRecord:
        from ..realign import compute_importance, save_importance

        cfg = self.config["importance"]
        settings = {**self.common, **cfg, "data_digests": self.digests("importance", cfg, ("utility_data", "safety_data"))}

        def build(tmp: Path) -> None:
            loaded = self.load(self.dense)
            for kind in ("utility", "safety"):
                samples = load_samples(cfg[f"{kind}_data"], limit=cfg["limit"], seed=self.config["seed"])
                target = tmp / f"{kind}.safetensors"
                placed = self.config.get("max_memory") or self.config.get("offload_folder")
                stream = target if placed and cfg["method"] == "wanda" else None  # bounded: written layer by layer
                scores = compute_importance(loaded, samples, method=cfg["method"], max_length=self.config["max_length"],
                                            progress=self.progress, out=stream)
                if stream is None:
                    save_importance(scores, target)
                del scores

        return self.stage(IMPORTANCE, settings, build, self.dense_upstream)

    def realign(self, name: str, pruned: StageRecord, heads: StageRecord, importance: StageRecord, random_heads: bool) -> StageRecord:
        from ..heads import read_heads
        from ..realign import load_importance, load_pruned_masks, realign_pruned, save_realigned

        cfg = {k: v for k, v in self.config["realign"].items() if k != "control"}
        realign_config = realign_options(self.config, random_heads)
        settings = {**self.common, **cfg, "random_heads": random_heads}

        def build(tmp: Path) -> None:
            dense = self.load(self.dense, share=2)
            pruned_model = self.load(pruned.path, share=2)
            masks = load_pruned_masks(pruned.path, dense.model, pruned_model.model)
            ranking = read_heads(heads.path).check_model(dense.arch.num_layers, dense.arch.num_heads).ranking
            lazy = bool(self.config.get("max_memory") or self.config.get("offload_folder"))  # placed: low memory
            utility = load_importance(importance.path / "utility.safetensors", lazy=lazy)
            safety = load_importance(importance.path / "safety.safetensors", lazy=lazy)
            result = realign_pruned(dense, pruned_model, masks, ranking, utility, safety, realign_config)
            del dense
            save_realigned(tmp, pruned_model, result, overwrite=True)

        return self.stage(name, settings, build, [pruned, heads, importance, *self.dense_upstream])

    def evaluate(self, label: str, model_path: str | Path, upstream: list[StageRecord], prefix: str = "") -> StageRecord:
        from ..evaluation import evaluate_model

        cfg = {k: v for k, v in self.config["evaluate"].items() if k not in ("enabled", "models")}
        eval_config = eval_options(self.config)
        settings = {**self.common, **cfg, "label": label,
                    "data_digests": self.digests("evaluate", cfg, ("harmful", "benign", "ppl_text", "mcq"), text=("ppl_text", "mcq"))}
        if cfg.get("lm_eval"):  # local task YAMLs and their data: an edited file is never served from cache
            from ..evaluation.lm_eval_bridge import local_task_files

            settings["data_digests"]["lm_eval"] = data_digest(local_task_files(cfg["lm_eval"]))
        judge = judge_digest(cfg["judge"])  # a model judge's weights, read by content like every other input
        if judge is not None:
            settings["judge_digest"] = judge

        def build(tmp: Path) -> None:
            loaded = self.load(model_path)
            evaluate_model(loaded, eval_config, tmp, label=label, progress=self.progress)

        return self.stage(f"{prefix}{EVAL}/{label}", settings, build, upstream)

    # ------------------------------------------------------------------ all
    def run(self) -> RunResult:
        self.preflight()
        self.common = _common(self.config)
        with run_folder(self.run_dir):
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
            return self._run()

    def _run(self) -> RunResult:
        if align_enabled(self.config):
            self.align()
        points = sweep_points(self.config)
        if points is None:
            pruned = self.prune()
            heads = self.heads(pruned)
            entries = self.point_entries(pruned, heads, prefix="", dense=True)
            if self.config["evaluate"]["enabled"]:
                self.result.entries = entries
                self.report(heads)
            else:
                self.drop_stale_report()
            return self.result
        return self.sweep(points)

    def point_models(self, pruned: StageRecord, heads: StageRecord, prefix: str) -> dict[str, tuple[Path | str, list[StageRecord]]]:
        """Realigned (+ control) models of one pruned model; the label -> (path, upstream) map to evaluate."""
        importance = self.importance()
        realigned = self.realign(f"{prefix}{REALIGNED}", pruned, heads, importance, random_heads=False)
        models: dict[str, tuple[Path | str, list[StageRecord]]] = {
            **({"base": (self.config["model"], [])} if self.dense_upstream else {}),
            "dense": (self.dense, list(self.dense_upstream)),
            "pruned": (pruned.path, [pruned]),
            "realigned": (realigned.path, [realigned]),
        }
        if self.config["realign"]["control"]:
            control = self.realign(f"{prefix}{CONTROL}", pruned, heads, importance, random_heads=True)
            models["control"] = (control.path, [control])
        return models

    def point_entries(self, pruned: StageRecord, heads: StageRecord, prefix: str, dense: bool) -> list[dict[str, Any]]:
        """Build and evaluate the models of one (method, sparsity) point; report entries in label order."""
        models = self.point_models(pruned, heads, prefix)
        ev = self.config["evaluate"]
        if not ev["enabled"]:
            return []
        entries = []
        for label in ev["models"]:
            if label not in models or (label in SHARED_LABELS and not dense):
                continue  # e.g. control disabled or no align stage; base/dense are evaluated once per sweep
            path, upstream = models[label]
            record = self.evaluate(label, path, upstream, prefix="" if label in SHARED_LABELS else prefix)
            entries.append(self.entry(label, path, record))
        return entries

    @staticmethod
    def entry(label: str, path: str | Path, record: StageRecord) -> dict[str, Any]:
        from ..report.build import read_metrics

        summary = Path(path) / "summary.json"
        summary_data = read_json_object(summary) or None if label != "dense" and summary.is_file() else None
        return {
            "label": label,
            "metrics": read_metrics(record.path / "metrics.json"),
            "eval_dir": str(record.path),
            "realign_summary": summary_data if label in (REALIGNED, CONTROL) else None,
        }

    def sweep(self, points: list[Point]) -> RunResult:
        """Every (method, sparsity) point in its own folder; align, heads (of the dense model),
        importance and the dense evaluation are shared by all points."""
        from ..report import build_sweep_report

        shared_heads = self.heads(None) if self.config["heads"]["score_model"] == "dense" else None
        dense_entries: list[dict[str, Any]] = []
        by_point: list[tuple[Point, list[dict[str, Any]]]] = []
        for i, point in enumerate(points):
            pruned = self.prune(point)
            heads = shared_heads or self.heads(pruned, name=point.folder(HEADS))
            entries = self.point_entries(pruned, heads, prefix=point.prefix, dense=(i == 0))
            dense_entries += [e for e in entries if e["label"] == "dense"]
            by_point.append((point, [e for e in entries if e["label"] not in SHARED_LABELS]))
        if self.config["evaluate"]["enabled"]:
            self.result.report_dir = build_sweep_report(
                dense_entries[0] if dense_entries else None, [(p.method, p.sparsity, e) for p, e in by_point],
                self.run_dir / REPORT, title=f"HSR sparsity sweep: {self.config['model']}",
            )
            self.result.table = (self.result.report_dir / "sweep.md").read_text(encoding="utf-8")
        else:
            self.drop_stale_report()
        return self.result

    def drop_stale_report(self) -> None:
        """Without evaluation no report is built; one left from an earlier run would describe other models
        (or the same ones: it cannot tell), so it is removed rather than left to mislead."""
        import shutil

        old = self.run_dir / REPORT
        if old.is_dir():  # the run folder is ours (claimed), so is its report
            shutil.rmtree(old)
            self.echo(f"[hsr run] removed {old}: evaluation is off, so an old report could show other models' results")

    def report(self, heads: StageRecord) -> None:
        from ..report import build_report, results_table

        out = self.run_dir / REPORT
        self.result.report_dir = build_report(
            self.result.entries, out, heads_json=heads.path / "heads.json",
            title=f"HSR run: {self.config['model']}",
        )
        self.result.table = results_table(self.result.entries)


@dataclass(frozen=True)
class Point:
    """One (pruning method, sparsity) point of a sweep; its stages live in ``<method>-<sparsity>/``."""

    method: str
    sparsity: str

    @property
    def prefix(self) -> str:
        return f"{self.method}-{self.sparsity.replace(':', 'of')}/"

    def folder(self, stage: str) -> str:
        return f"{self.prefix}{stage}"


def sweep_points(config: dict[str, Any]) -> list[Point] | None:
    """The sweep's points (methods x sparsities), or None for a single run (``sweep.sparsities`` unset)."""
    sw = config.get("sweep") or {}
    sparsities = sw.get("sparsities")
    if not sparsities:
        return None
    methods = sw.get("methods") or [config["prune"]["method"]]
    return [Point(str(m), str(s)) for m in methods for s in sparsities]


def align_enabled(config: dict[str, Any]) -> bool:
    """``align.enabled``: true/false, or "auto" = only for the embedded default model."""
    flag = config["align"]["enabled"]
    return str(config["model"]) == "default" if flag == "auto" else bool(flag)


def run_pipeline(config: dict[str, Any], progress: bool = True, echo: Callable[[str], None] = print) -> RunResult:
    """Run (or resume) the whole HSR pipeline described by ``config`` (see ``configs/default.yaml``)."""
    return _Pipeline(config, progress, echo).run()
