"""Evaluate one model: safety (ASR, over-refusal) and utility (perplexity, multiple choice).

Writes into ``out_dir``: ``metrics.json`` (the pipeline contract: model, path, the outcome rates of
:data:`hsr.evaluation.outcomes.RATE_KEYS` -- asr, harmful_refusal, harmful_non_answer,
harmful_degenerate, benign_answered, over_refusal, benign_non_answer, benign_degenerate --
perplexity, mcq_accuracy, lm_eval, judge, ...), ``generations_harmful.jsonl`` and ``generations_benign.jsonl``
(prompt, image, output, ``verdict`` = one outcome of docs/judging.md, and the booleans
``attack_success`` / ``refused`` derived from it), ``mcq.jsonl`` when run, and with ``lm_eval`` tasks
``lm_eval.json`` and ``lm_eval_samples.jsonl`` (:mod:`hsr.evaluation.lm_eval_bridge`).

Every answer gets exactly one outcome, degenerate checked first, whatever the judge: ``asr`` =
complied / n on harmful prompts, ``over_refusal`` = refusal / n on benign prompts, each other
outcome's share beside them, all with Wilson intervals. For the keyword judges, the judge's own
unfiltered attack-success rate (what the papers report) is kept as ``asr_unfiltered``.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data import Sample, load_samples
from ..distributed import SINGLE, Dist
from ..errors import ConfigError
from ..io import write_json
from ..loading import LoadedModel
from ..options import check_declared, option, seed_option
from .degenerate import degenerate_reason
from .generation import check_generation_budget, context_length, generate, write_generations
from .judges import KeywordJudge, make_judge
from .mcq import METHODS as MCQ_METHODS
from .mcq import load_mcq, mcq_accuracy
from .metrics import proportion
from .perplexity import load_text, perplexity
from .outcomes import BENIGN, COMPLIED, DEGENERATE, HARMFUL, RATE_KEYS, REFUSAL, outcome_rates
from .rubric import STRAY_WORD_REASON

if TYPE_CHECKING:
    from ..inputs import Inputs

log = logging.getLogger(__name__)

SUITES = ("safety", "utility")
METRICS_FILE = "metrics.json"
HARMFUL_FILE = "generations_harmful.jsonl"
BENIGN_FILE = "generations_benign.jsonl"
MCQ_FILE = "mcq.jsonl"


@dataclass
class EvalConfig:
    """What to evaluate and how; every field is also a ``hsr evaluate`` flag and an ``evaluate.`` key of
    ``hsr run``. A data option set to none skips that part of its suite."""

    harmful: str | None = option("builtin:advbench_eval", help="harmful prompts for the attack success rate "
                                 "(JSONL, vlguard:ROOT:SPLIT, builtin:NAME or none)")
    benign: str | None = option("builtin:benign", help="benign prompts for over-refusal (JSONL, vlguard:ROOT:SPLIT, "
                                "builtin:NAME or none)")
    limit: int | None = option(32, help="prompts per safety set (seeded subset); none or 0 = every prompt",
                               minimum=1, zero_is_none=True)
    max_new_tokens: int = option(48, help="generation budget per prompt", minimum=1)
    batch_size: int = option(16, help="prompts per generation batch", minimum=1)
    judge: str = option("rubric", help="rubric (complied only on evidence of engagement; docs/judging.md), refusal (the "
                        "old opening-pattern judge: anything not refused is complied), keyword (zou2023 + wei2024 refusal "
                        "lists), keyword:LIST[+LIST], model:PATH[@guard|@harmbench] (a local safety classifier), or labels:PATH "
                        "(hand labels; every answer must be labeled)")
    ppl_text: str | None = option("builtin:heldout", help="text for perplexity (file, builtin:NAME or none)")
    mcq: str | None = option("builtin:mcq", help="multiple-choice JSONL (or builtin:NAME, none)")
    suites: tuple[str, ...] = option(("safety", "utility"), help="suites to run", choices=SUITES, flag="suite")
    max_length: int = option(512, help="cap on tokens per sample", minimum=1)
    seed: int = seed_option(help="random seed (data subsets)")
    mcq_method: str = option("loglik", help="loglik: log-likelihood of each choice text; letter: of its letter",
                             choices=MCQ_METHODS)
    mcq_limit: int | None = option(None, help="multiple-choice questions (seeded subset); none = all", minimum=1)
    ppl_stride: int | None = option(None, help="perplexity sliding-window stride; none = non-overlapping windows",
                                    minimum=1)
    ppl_max_tokens: int | None = option(None, help="cap on held-out tokens scored for perplexity", minimum=1)
    lm_eval: tuple[str, ...] | None = option(None, help="lm-eval-harness tasks run on the loaded model (utility suite): "
                                             "lm-eval task/group names or task YAML paths, comma-separated; needs "
                                             "pip install 'hsr[lm-eval]'", flag="lm-eval")
    lm_eval_fewshot: int | None = option(None, help="lm-eval few-shot examples per task; none = each task's own",
                                         minimum=0)
    lm_eval_limit: int | None = option(None, help="lm-eval documents per task (the first N); none = all", minimum=1)
    lm_eval_batch_size: int = option(8, help="lm-eval requests per forward pass", minimum=1)
    lm_eval_chat_template: bool = option(False, help="render lm-eval prompts with the model's chat template, as "
                                         "hsr's own multiple-choice scorer does; off = lm-eval's plain prompts, "
                                         "comparable to published numbers")

    def validate(self) -> None:
        self.suites = tuple(self.suites)
        self.lm_eval = tuple(self.lm_eval) if self.lm_eval else None
        check_declared(self)
        if not self.suites:
            raise ConfigError(f"suites must be a non-empty subset of {', '.join(SUITES)}, got [].")


    def add_inputs(self, inputs: Inputs) -> None:
        """What an evaluation reads besides the model: the chosen suites' data (with the images its rows
        name) and a ``model:PATH`` judge."""
        if "safety" in self.suites:
            inputs.data(self.harmful, "evaluate harmful data")
            inputs.data(self.benign, "evaluate benign data")
            inputs.judge(self.judge)
        if "utility" in self.suites:
            inputs.data(self.ppl_text, "evaluate perplexity text", text=True)
            inputs.data(self.mcq, "evaluate multiple-choice data", text=True)
            from .lm_eval_bridge import local_task_files

            for path in local_task_files(self.lm_eval):
                inputs.add(path, "an lm-eval task file")

    def check_data(self) -> None:
        """Read every data input the chosen suites use, so a bad file fails before any model loads."""
        from .mcq import load_mcq
        from .perplexity import load_text

        if "safety" in self.suites:
            for spec in (self.harmful, self.benign):
                if spec:
                    load_samples(spec, limit=self.limit, seed=self.seed)
        if "utility" in self.suites:
            if self.ppl_text:
                load_text(self.ppl_text)
            if self.mcq:
                load_mcq(self.mcq, limit=self.mcq_limit, seed=self.seed)
            if self.lm_eval:
                from .lm_eval_bridge import check_tasks

                check_tasks(self.lm_eval)  # installed, known tasks, loadable data


def _device_dtype(loaded: LoadedModel) -> tuple[str, str]:
    from ..placement import model_device

    dtype = str(getattr(loaded.model, "dtype", "float32")).replace("torch.", "")
    return str(model_device(loaded.model)), dtype


def _follow(loaded: LoadedModel, config: EvalConfig, dist: Dist) -> dict[str, Any]:
    """A rank other than 0: generate its share of the answers, in the order rank 0 asks for them."""
    if "safety" in config.suites:
        for spec in (config.harmful, config.benign):
            if spec:
                generate(loaded, load_samples(spec, limit=config.limit, seed=config.seed), dist=dist, **_gen_kw(config))
    return {}


def evaluate_model(
    loaded: LoadedModel, config: EvalConfig, out_dir: str | Path | None, label: str, progress: bool = True,
    dist: Dist = SINGLE,
) -> dict[str, Any]:
    """Run the configured suites on ``loaded``; write the files above into ``out_dir``; return the metrics.

    With several processes (``dist``), generation is split across ranks; judging, perplexity,
    multiple choice and every file are rank 0's (the others return ``{}`` and need no ``out_dir``).
    """
    config.validate()
    if "safety" in config.suites:  # before a judge model loads
        check_generation_budget(config.max_new_tokens, context_length(loaded.model))
    if not dist.is_main:
        return _follow(loaded, config, dist)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device, dtype = _device_dtype(loaded)
    judge = make_judge(config.judge, device=device, dtype=dtype) if "safety" in config.suites else None
    metrics: dict[str, Any] = {
        "model": label,
        "path": _source_path(loaded.source),
        "architecture": loaded.arch.class_name,
        **{key: None for key in RATE_KEYS},
        "perplexity": None,
        "mcq_accuracy": None,
        "lm_eval": None,
        "judge": judge.name if judge is not None else config.judge,
        "suites": list(config.suites),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
    }
    timings: dict[str, float] = {}
    parts = (
        ("harmful", "safety", config.harmful, functools.partial(_safety_part, HARMFUL, dist=dist)),
        ("benign", "safety", config.benign, functools.partial(_safety_part, BENIGN, dist=dist)),
        ("perplexity", "utility", config.ppl_text, _perplexity_part),
        ("mcq", "utility", config.mcq, _mcq_part),
        ("lm_eval", "utility", config.lm_eval, _lm_eval_part),
    )
    for name, suite, data, part in parts:
        if suite in config.suites and data:
            start = time.perf_counter()
            metrics.update(part(loaded, config, judge, out, label, progress))
            timings[name] = time.perf_counter() - start
    metrics["seconds"] = {k: round(v, 2) for k, v in timings.items()}
    write_json(out / METRICS_FILE, metrics)
    return metrics


def _gen_kw(config: EvalConfig) -> dict[str, int]:
    return dict(max_new_tokens=config.max_new_tokens, batch_size=config.batch_size, max_length=config.max_length)


def judge_answers(judge: Any, kind: str, prompts: list[str], outputs: list[str]) -> tuple[list[str], dict[str, Any]]:
    """One outcome per answer and the metrics.json entries of ``kind`` (every outcome's rate), for
    ``hsr evaluate`` and ``hsr judge`` alike."""
    verdicts = judge.verdicts(prompts, outputs, kind)
    metrics: dict[str, Any] = outcome_rates(verdicts, kind)
    if kind == HARMFUL and isinstance(judge, KeywordJudge):
        metrics["asr_unfiltered"] = proportion(judge.judge(prompts, outputs))
    if kind == HARMFUL and getattr(judge, "unparsed", 0):
        metrics["judge_unparsed"] = judge.unparsed
    return verdicts, metrics


def verdict_columns(judge: Any, kind: str, outputs: list[str], verdicts: list[str]) -> dict[str, list[Any]]:
    """Per-prompt ``verdict``, why a degenerate answer is one, and a model judge's raw answers."""
    # the rubric's one rule that needs the prompt (a stray word) has no text-only reason: name it
    fallback = getattr(judge, "degenerate_note", STRAY_WORD_REASON)
    reasons = [degenerate_reason(o) or (fallback if v == DEGENERATE else None) for o, v in zip(outputs, verdicts)]
    extra: dict[str, list[Any]] = {"verdict": list(verdicts), "degenerate_reason": reasons}
    if kind == HARMFUL and getattr(judge, "raw", None):
        extra["judge_raw"] = list(judge.raw)
    return extra


#: Per kind: the boolean column of generations_*.jsonl, the outcome it marks, and the data key.
KIND_FIELDS = {HARMFUL: ("attack_success", COMPLIED, "harmful_data"), BENIGN: ("refused", REFUSAL, "benign_data")}


def _safety_part(
    kind: str, loaded: LoadedModel, config: EvalConfig, judge: Any, out: Path, label: str, progress: bool,
    dist: Dist = SINGLE,
) -> dict[str, Any]:
    """Generate answers to the kind's prompts, give each one outcome, write them with their rates."""
    spec = config.harmful if kind == HARMFUL else config.benign
    samples = load_samples(spec, limit=config.limit, seed=config.seed)
    outputs = generate(loaded, samples, progress=progress, desc=f"eval[{label}] {kind}", dist=dist, **_gen_kw(config))
    verdicts, metrics = judge_answers(judge, kind, [s.prompt for s in samples], outputs)
    column, event, data_key = KIND_FIELDS[kind]
    write_generations(out / (HARMFUL_FILE if kind == HARMFUL else BENIGN_FILE), samples, outputs,
                      [v == event for v in verdicts], column, verdict_columns(judge, kind, outputs, verdicts))
    return {**metrics, data_key: spec}


def _perplexity_part(loaded: LoadedModel, config: EvalConfig, judge: Any, out: Path, label: str, progress: bool) -> dict[str, Any]:
    ppl = perplexity(
        loaded, load_text(config.ppl_text), max_length=config.max_length, stride=config.ppl_stride,
        max_tokens=config.ppl_max_tokens,
    )
    return {"perplexity": ppl["perplexity"], "perplexity_detail": {**ppl, "text": config.ppl_text}}


def _mcq_part(loaded: LoadedModel, config: EvalConfig, judge: Any, out: Path, label: str, progress: bool) -> dict[str, Any]:
    items = load_mcq(config.mcq, limit=config.mcq_limit, seed=config.seed)
    result = mcq_accuracy(loaded, items, method=config.mcq_method, progress=progress)
    write_generations(
        out / MCQ_FILE,
        [Sample(i.question) for i in items],
        [i.choices[p] for i, p in zip(items, result["predictions"])],
        result["correct"],
        "correct",
        {"answer": [i.choices[i.answer] for i in items]},
    )
    return {"mcq_accuracy": proportion(result["correct"]), "mcq_data": config.mcq, "mcq_method": config.mcq_method}


def _lm_eval_part(loaded: LoadedModel, config: EvalConfig, judge: Any, out: Path, label: str, progress: bool) -> dict[str, Any]:
    from .lm_eval_bridge import run_lm_eval

    return run_lm_eval(loaded, config.lm_eval or (), out, num_fewshot=config.lm_eval_fewshot, limit=config.lm_eval_limit,
                       batch_size=config.lm_eval_batch_size, chat_template=config.lm_eval_chat_template, seed=config.seed)


def _source_path(source: Any) -> str:
    """The model's folder as an absolute path when it is one (reports look for summary.json there)."""
    p = Path(str(source)).expanduser()
    return str(p.resolve()) if p.exists() else str(source)
