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
from ..io import read_json_object, write_text_atomic
from ..loading import LoadedModel, load_model
from ..inputs import Inputs
from ..rundir import run_folder
from .run_config import RunConfig, build_run_config
from .sections import head_data_keys
from .stage_bodies import align_stage, evaluate_stage, heads_stage, importance_stage, prune_stage, realign_stage, write_heads
from .stages import StageRecord, fingerprint, run_stage

log = logging.getLogger(__name__)

#: Folder names inside a run directory.
ALIGNED, PRUNED, HEADS, IMPORTANCE, REALIGNED, CONTROL, EVAL, REPORT = (
    "aligned", "pruned", "heads", "importance", "realigned", "control", "eval", "report"
)
SHARED_LABELS = ("base", "dense")  # models that do not depend on the pruning point
EVAL_TEXT = ("ppl_text", "mcq")  # evaluation data read as text (digested as such)


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageRecord] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    report_dir: Path | None = None


def _common(config: RunConfig) -> dict[str, Any]:
    """Settings every model-touching stage depends on: the input model's *contents*, not only its path."""
    model = config.model
    p = Path(str(model)).expanduser()
    return {
        "model": str(p.resolve()) if p.exists() else model,
        "model_digest": model_digest(model),
        "dtype": config.dtype,
        "device": config.device,
        "max_length": config.max_length,
        "seed": config.seed,
    }


class _Pipeline:
    def __init__(self, config: RunConfig, progress: bool, echo: Callable[[str], None]) -> None:
        self.config = config
        self.progress = progress
        self.echo = echo
        self.run_dir = Path(config.out).expanduser().resolve()
        self.common: dict[str, Any] = {}  # filled after the preflight: digesting the default model converts it
        self.inputs = Inputs()  # everything the enabled stages read, filled by the preflight
        self.result = RunResult(self.run_dir)
        # The model every stage treats as "dense": the input model, or its aligned version.
        self.dense: str | Path = config.model
        self.dense_upstream: list[StageRecord] = []
        self._digests: dict[tuple[Any, bool], str] = {}

    # ------------------------------------------------------------------ helpers
    def digests(self, stage: str, files: dict[str, Any], text: tuple[str, ...] = ()) -> dict[str, str]:
        """Content digests of the data files a stage reads (``files``: key -> data spec), images its rows
        name included (so an edited file is never served from cache); the files join the run's inputs."""
        out = {}
        for k, spec in files.items():
            key = (spec, k in text)
            if key not in self._digests:
                self._digests[key] = data_digest(self.inputs.data(spec, f"{stage}.{k}", text=k in text))
            out[k] = self._digests[key]
        return out

    def head_files(self) -> dict[str, str]:
        """The heads stage's prompt files: ``benign_data`` only for a score that reads benign prompts, so the
        other scores' fingerprints do not depend on it."""
        run = self.config.heads.run
        return {k: getattr(run, k) for k in head_data_keys(self.config.heads.options.score)}

    def align_files(self) -> dict[str, Any]:
        options = self.config.align.options
        return {"harmful": options.harmful, "benign": options.benign}

    def importance_files(self) -> dict[str, Any]:
        options = self.config.importance.options
        return {"utility_data": options.utility_data, "safety_data": options.safety_data}

    def eval_files(self) -> dict[str, Any]:
        options = self.config.evaluate.options
        return {"harmful": options.harmful, "benign": options.benign, "ppl_text": options.ppl_text, "mcq": options.mcq}

    def preflight(self) -> None:
        """Read every input the enabled stages will use and check every folder the run writes against
        them, before the first model loads or the default model is converted."""
        from ..data import require_responses
        from ..loading import locate_model
        from ..shape import model_heads
        from ..realign.ranking import check_top_h

        c = self.config
        locate_model(c.model, convert_default=False)
        self.inputs.model(c.model)
        self.inputs.model(c.prune.run.pruned or None, "prune.pruned")
        if c.align_enabled:
            self.digests("align", self.align_files())
        methods = {point.method for point in sweep_points(c) or []} or {c.prune.method}
        if methods != {"magnitude"} and not c.prune.run.pruned:
            self.digests("prune", {"data": c.prune.run.data})  # some (sweep) method calibrates on it
        self.digests("heads", self.head_files())
        self.digests("importance", self.importance_files())
        imp = c.importance.options
        for kind, spec in (("utility", imp.utility_data), ("safety", imp.safety_data)):  # importance scores response tokens
            require_responses(load_samples(spec, limit=imp.limit, seed=c.seed), f"importance.{kind}_data")
        if c.evaluate.run.enabled:
            c.evaluate.options.check_data()  # the judge spec too
            self.digests("evaluate", self.eval_files(), text=EVAL_TEXT)
            c.evaluate.options.add_inputs(self.inputs)  # the judge model and lm-eval task files too
        self.check_written()
        shape = model_heads(c.model)  # config.json or the GGUF header: no model is loaded for it
        if shape is not None:
            check_top_h(c.realign.options.top_h, *shape)
            heads = c.heads.run
            benign = (len(load_samples(heads.benign_data, limit=heads.limit, seed=c.seed))
                      if "benign_data" in head_data_keys(c.heads.options.score) else None)
            c.heads.options.check_against(len(load_samples(heads.data, limit=heads.limit, seed=c.seed)), *shape,
                                          n_benign=benign)
        self.check_generation_budget()

    def check_generation_budget(self) -> None:
        """``evaluate.max_new_tokens`` against the context of the models evaluated (the input model, whose
        shape every derived model keeps, and an external pruned one), read from their files: the evaluate
        stage would refuse it only after pruning, scoring and realigning."""
        from ..evaluation.generation import check_generation_budget
        from ..shape import model_context

        options = self.config.evaluate.options
        if options is None or "safety" not in options.suites:  # only generation is bounded by the context
            return
        for source in filter(None, (self.config.model, self.config.prune.run.pruned)):
            check_generation_budget(options.max_new_tokens, model_context(source), name="evaluate.max_new_tokens")

    def check_written(self) -> None:
        """The run folder, the offload folder and (converting the default model) the cache: none may
        overlap an input; the run folder must be hsr's own (or new), the others creatable."""
        from ..rundir import check_run_dir, check_writable

        self.inputs.check_written(self.run_dir, "out")
        check_writable(self.run_dir, "out")
        check_run_dir(self.run_dir)
        if self.config.offload_folder:
            check_writable(self.inputs.check_written(self.config.offload_folder, "offload_folder"), "offload_folder")
        self.inputs.check_cache()

    def load(self, source: str | Path, share: int = 1) -> LoadedModel:
        """``source`` with the run's device, dtype and placement; ``share`` models held at once split the budgets."""
        c = self.config
        return load_model(
            str(source), dtype=c.dtype, device=c.device, trust_remote_code=bool(c.trust_remote_code),
            max_memory=c.max_memory, offload_folder=c.offload_folder, share=share,
        )

    @property
    def placed(self) -> bool:
        """Placed by --max-memory / --offload-folder: stages keep memory low (stream, read lazily)."""
        return bool(self.config.max_memory or self.config.offload_folder)

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
        section = self.config.align
        settings = {**self.common, **section.settings("enabled"), "data_digests": self.digests("align", self.align_files())}

        def build(tmp: Path) -> None:
            align_stage(self.load, self.config.model, section.options, tmp, self.progress)

        record = self.stage(ALIGNED, settings, build, [])
        self.dense, self.dense_upstream = record.path, [record]

    def prune(self, point: Point | None = None) -> StageRecord:
        section = self.config.prune
        method, sparsity = (point.method, point.sparsity) if point is not None else (section.method, section.sparsity)
        name = point.folder(PRUNED) if point is not None else PRUNED
        if section.run.pruned:
            # An external pruned checkpoint: nothing to compute, but it still anchors the cache.
            path = Path(section.run.pruned).expanduser().resolve()
            if not path.is_dir():
                raise ConfigError(f"prune.pruned: {str(path)!r} is not a model directory.")
            return StageRecord(name, path, fingerprint({"external": str(path), "digest": tree_digest(path)}), True, 0.0)
        options = section.at(method, sparsity) if point is not None else section.options
        settings = {**self.common, **section.settings("pruned", method=method, sparsity=sparsity)}
        if method != "magnitude":
            settings["data_digests"] = self.digests("prune", {"data": section.run.data})

        def build(tmp: Path) -> None:
            prune_stage(self.load, self.dense, options, section.run, tmp, self.progress)

        return self.stage(name, settings, build, self.dense_upstream)

    def heads(self, pruned: StageRecord | None, name: str = HEADS) -> StageRecord:
        section = self.config.heads
        pair = section.options.head_score.needs.models == 2  # the pruned model scored against the dense one
        on_pruned = section.run.score_model == "pruned" or pair
        if pair and pruned is None:
            raise ConfigError(f"heads.score={section.options.score} needs the pruned model of each point.")
        upstream = [pruned, *self.dense_upstream] if pair else [pruned] if on_pruned else list(self.dense_upstream)
        ignored = () if "benign_data" in head_data_keys(section.options.score) else ("benign_data",)
        settings = {**self.common, **section.settings(*ignored), "data_digests": self.digests("heads", self.head_files())}
        checkpoint = self.run_dir / f".heads-checkpoint-{fingerprint(settings, [u.fingerprint for u in upstream])}"

        def build(tmp: Path) -> dict:
            run = section.run
            samples = load_samples(run.data, limit=run.limit, seed=self.config.seed)
            benign = (load_samples(run.benign_data, limit=run.limit, seed=self.config.seed)
                      if "benign_data" in head_data_keys(section.options.score) else None)
            source = pruned.path if on_pruned else self.dense
            scored = heads_stage(self.load, source, samples, section.options, checkpoint, self.progress, benign=benign,
                                 dense=self.dense if pair else None)
            label = f"pruned {source} vs dense {self.dense}" if pair else f"{section.run.score_model} {self.dense}"
            write_heads(tmp, scored, model_label=label)
            return {"timings": scored.scores.timings}

        record = self.stage(name, settings, build, upstream)
        if checkpoint.exists():
            import shutil

            shutil.rmtree(checkpoint, ignore_errors=True)
        return record

    def importance(self) -> StageRecord:
        section = self.config.importance
        options = section.options
        settings = {**self.common, **section.settings(), "data_digests": self.digests("importance", self.importance_files())}

        def build(tmp: Path) -> None:
            loaded = self.load(self.dense)
            samples = {kind: load_samples(spec, limit=options.limit, seed=self.config.seed)
                       for kind, spec in (("utility", options.utility_data), ("safety", options.safety_data))}
            importance_stage(loaded, samples, options, self.progress, folder=tmp, stream=self.placed, save=True)

        return self.stage(IMPORTANCE, settings, build, self.dense_upstream)

    def realign(self, name: str, pruned: StageRecord, heads: StageRecord, importance: StageRecord, random_heads: bool) -> StageRecord:
        from ..heads import read_heads
        from ..realign import load_importance
        from ..realign.restore import TAYLOR

        section = self.config.realign
        options = section.control_options if random_heads else section.options
        taylor = options.selection == TAYLOR
        # The default selection's settings stay as they were before the key existed (run folders are reused).
        settings = {**self.common, **section.settings("control", *(() if taylor else ("selection",))),
                    "random_heads": random_heads}

        def ranking_of(dense: LoadedModel) -> list[tuple[int, int]]:
            return read_heads(heads.path).check_model(dense.arch.num_layers, dense.arch.num_heads).ranking

        def scores_of(_dense: LoadedModel) -> tuple[Any, Any]:
            return tuple(load_importance(importance.path / f"{kind}.safetensors", lazy=self.placed)
                         for kind in ("utility", "safety"))

        def build(tmp: Path) -> None:
            imp = self.config.importance.options  # the Taylor selection's gradient runs on the safety data
            refusals = load_samples(imp.safety_data, limit=imp.limit, seed=self.config.seed) if taylor else None
            realign_stage(self.load, self.dense, pruned.path, pruned.path, ranking_of, scores_of, options, tmp,
                          refusals=refusals, max_length=imp.max_length if taylor else None)

        return self.stage(name, settings, build, [pruned, heads, importance, *self.dense_upstream])

    def evaluate(self, label: str, model_path: str | Path, upstream: list[StageRecord], prefix: str = "") -> StageRecord:
        options = self.config.evaluate.options
        settings = {**self.common, **self.config.evaluate.settings("enabled", "models"), "label": label,
                    "data_digests": self.digests("evaluate", self.eval_files(), text=EVAL_TEXT)}
        if options.lm_eval:  # local task YAMLs and their data: an edited file is never served from cache
            from ..evaluation.lm_eval_bridge import local_task_files

            settings["data_digests"]["lm_eval"] = data_digest(local_task_files(options.lm_eval))
        judge = judge_digest(options.judge)  # a model judge's weights, read by content like every other input
        if judge is not None:
            settings["judge_digest"] = judge

        def build(tmp: Path) -> None:
            evaluate_stage(self.load, model_path, options, tmp, label, self.progress)

        return self.stage(f"{prefix}{EVAL}/{label}", settings, build, upstream)

    # ------------------------------------------------------------------ all
    def run(self) -> RunResult:
        self.preflight()
        self.common = _common(self.config)
        with run_folder(self.run_dir):
            write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(self.config.plain, sort_keys=False))
            return self._run()

    def _run(self) -> RunResult:
        if self.config.align_enabled:
            self.align()
        points = sweep_points(self.config)
        if points is None:
            pruned = self.prune()
            heads = self.heads(pruned)
            entries = self.point_entries(pruned, heads, prefix="", dense=True)
            if self.config.evaluate.run.enabled:
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
            **({"base": (self.config.model, [])} if self.dense_upstream else {}),
            "dense": (self.dense, list(self.dense_upstream)),
            "pruned": (pruned.path, [pruned]),
            "realigned": (realigned.path, [realigned]),
        }
        if self.config.realign.run.control:
            control = self.realign(f"{prefix}{CONTROL}", pruned, heads, importance, random_heads=True)
            models["control"] = (control.path, [control])
        return models

    def point_entries(self, pruned: StageRecord, heads: StageRecord, prefix: str, dense: bool) -> list[dict[str, Any]]:
        """Build and evaluate the models of one (method, sparsity) point; report entries in label order."""
        models = self.point_models(pruned, heads, prefix)
        ev = self.config.evaluate.run
        if not ev.enabled:
            return []
        entries = []
        for label in ev.models:
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

        heads = self.config.heads
        per_point = heads.run.score_model == "pruned" or heads.options.head_score.needs.models == 2
        shared_heads = None if per_point else self.heads(None)
        dense_entries: list[dict[str, Any]] = []
        by_point: list[tuple[Point, list[dict[str, Any]]]] = []
        for i, point in enumerate(points):
            pruned = self.prune(point)
            heads = shared_heads or self.heads(pruned, name=point.folder(HEADS))
            entries = self.point_entries(pruned, heads, prefix=point.prefix, dense=(i == 0))
            dense_entries += [e for e in entries if e["label"] == "dense"]
            by_point.append((point, [e for e in entries if e["label"] not in SHARED_LABELS]))
        if self.config.evaluate.run.enabled:
            self.result.report_dir = build_sweep_report(
                dense_entries[0] if dense_entries else None, [(p.method, p.sparsity, e) for p, e in by_point],
                self.run_dir / REPORT, title=f"HSR sparsity sweep: {self.config.model}",
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
            title=f"HSR run: {self.config.model}",
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


def sweep_points(config: RunConfig) -> list[Point] | None:
    """The sweep's points (methods x sparsities), or None for a single run (``sweep.sparsities`` unset)."""
    sparsities = config.sweep.sparsities
    if not sparsities:
        return None
    methods = config.sweep.methods or [config.prune.method]
    return [Point(str(m), str(s)) for m in methods for s in sparsities]


def run_pipeline(config: RunConfig | dict[str, Any], progress: bool = True, echo: Callable[[str], None] = print) -> RunResult:
    """Run (or resume) the whole HSR pipeline described by ``config`` (see ``configs/default.yaml``): the
    typed config, or a merged config dict (:func:`hsr.pipeline.config.load_run_config`), typed here."""
    typed = config if isinstance(config, RunConfig) else build_run_config(config)
    return _Pipeline(typed, progress, echo).run()
