"""lm-eval-harness tasks on the model hsr already holds in memory.

The model is not loaded a second time: lm-eval's HF wrapper (``HFLM``) is built around the loaded
model and tokenizer, so a pruned or realigned model is measured with the placement it was loaded
with (``--max-memory``, disk offload) and inputs go to its execution device.

Tasks are named as lm-eval names them (``arc_easy``, ``mmlu``, globs such as ``arc_*``) or given as
paths to task YAMLs. A YAML's relative ``dataset_kwargs.data_files`` (and a relative local
``dataset_path`` folder) are read against the YAML's folder, so a task shipped beside its JSON/JSONL
data runs offline from any working directory (``dataset_path: json``; machines without the Hub).

Every problem a user can fix (lm-eval missing, an unknown task, a YAML that is not a task, data that
cannot be loaded) is one :class:`~hsr.errors.ConfigError` line, raised by :func:`check_tasks` before
any model loads.

metrics.json keeps, per reported task (a requested task, or a group with its aggregate), each metric
as ``{"value", "stderr", "n"}``; ``lm_eval.json`` holds lm-eval's own results and
``lm_eval_samples.jsonl`` one row per scored document.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..loading import LoadedModel

log = logging.getLogger(__name__)

RESULTS_FILE = "lm_eval.json"
SAMPLES_FILE = "lm_eval_samples.jsonl"
INSTALL_HINT = "pip install 'hsr[lm-eval]'"
YAML_SUFFIXES = (".yaml", ".yml")


def require_lm_eval() -> Any:
    """The ``lm_eval`` package, or a one-line error saying how to install it."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager  # noqa: F401  (the part hsr uses)
    except ImportError as exc:
        raise ConfigError(f"--lm-eval needs lm-eval-harness 0.4.x, which is not installed ({exc}); {INSTALL_HINT}.") from None
    return lm_eval


def is_task_file(spec: str) -> bool:
    return spec.lower().endswith(YAML_SUFFIXES)


@dataclass
class Tasks:
    """The ``--lm-eval`` specs resolved: what ``TaskManager.load`` gets and which folders it indexes."""

    specs: tuple[str, ...]
    load: list[str | dict[str, Any]]  # names, or a task YAML's config (relative data files made absolute)
    folders: tuple[str, ...]  # the task YAMLs' folders (their includes and sibling tasks)
    defaults: bool  # lm-eval's own tasks are needed (some spec is a name)

    def files(self) -> list[Path]:
        """The local files the tasks read (YAMLs and their data), for the run cache's content digest."""
        return local_task_files(self.specs)


def _absolute(value: Any, folder: Path) -> Any:
    """``data_files`` entries made absolute against ``folder`` (URLs and absolute paths kept)."""
    if isinstance(value, str):
        return value if "://" in value or Path(value).expanduser().is_absolute() else str(folder / value)
    if isinstance(value, list):
        return [_absolute(v, folder) for v in value]
    if isinstance(value, dict):
        return {k: _absolute(v, folder) for k, v in value.items()}
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    """A task YAML as lm-eval reads it (``include:`` merged, ``!function`` resolved); one-line errors."""
    from lm_eval.tasks._yaml_loader import load_yaml

    if not path.is_file():
        raise ConfigError(f"lm-eval task file {path} does not exist.")
    try:
        cfg = load_yaml(path)
    except Exception as exc:  # yaml syntax, a bad include or !function: all mean "fix this file"
        raise ConfigError(f"{path}: not a valid lm-eval task YAML ({_first_line(exc)}).") from None
    if not isinstance(cfg.get("task"), str) and not cfg.get("group"):
        raise ConfigError(f"{path}: an lm-eval task YAML needs a 'task' name (or a 'group').")
    return cfg


def _task_config(path: Path) -> dict[str, Any] | str:
    """What to load for a task YAML: its config with data paths made absolute, or (a group) the path."""
    cfg = _read_yaml(path)
    if not isinstance(cfg.get("task"), str):
        return str(path)  # a group: lm-eval finds its tasks in the YAML's folder
    folder = path.parent
    kwargs = cfg.get("dataset_kwargs")
    if isinstance(kwargs, dict) and "data_files" in kwargs:
        cfg["dataset_kwargs"] = {**kwargs, "data_files": _absolute(kwargs["data_files"], folder)}
    local = cfg.get("dataset_path")
    if isinstance(local, str) and not Path(local).is_absolute() and (folder / local).exists():
        cfg["dataset_path"] = str(folder / local)
    return cfg


def resolve_tasks(specs: Sequence[str]) -> Tasks:
    """Task names and YAML paths, checked: files exist and are task YAMLs, names are lm-eval's."""
    require_lm_eval()
    specs = tuple(s.strip() for s in specs if s and s.strip())
    if not specs:
        raise ConfigError("lm_eval names no task; give lm-eval task names or task YAML paths, or none.")
    load: list[str | dict[str, Any]] = []
    folders: list[str] = []
    for spec in specs:
        if is_task_file(spec):
            path = Path(spec).expanduser().resolve()
            load.append(_task_config(path))
            if str(path.parent) not in folders:
                folders.append(str(path.parent))
        else:
            load.append(spec)
    names = [s for s in specs if not is_task_file(s)]
    tasks = Tasks(specs, load, tuple(folders), defaults=bool(names))
    if names:
        known = task_manager(tasks.folders, True).all_tasks
        for name in names:
            if "*" in name or "?" in name:
                if not task_manager(tasks.folders, True).match_tasks([name]):
                    raise ConfigError(f"lm-eval task pattern {name!r} matches no task.")
            elif name not in known:
                close = difflib.get_close_matches(name, known, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else "; `lm-eval ls tasks` lists them."
                raise ConfigError(f"Unknown lm-eval task {name!r} (not an lm-eval task, group or tag, nor a .yaml "
                                  f"file){hint}")
    return tasks


@functools.cache
def task_manager(folders: tuple[str, ...], defaults: bool) -> Any:
    """One TaskManager per set of folders: indexing lm-eval's own ~15k task YAMLs takes seconds, so it is
    built once per process; tasks given only as YAML files skip that index."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(folders) or None, include_defaults=defaults)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= 300 else line[:297] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _spec_name(item: str | dict[str, Any]) -> str:
    return item if isinstance(item, str) else str(item.get("task"))


def check_tasks(specs: Sequence[str]) -> Tasks:
    """Resolve the tasks and build each one, which loads its data: a missing dataset (no Hub access, a
    wrong data_files path) fails here, before any model loads, naming the task."""
    tasks = resolve_tasks(specs)
    tm = task_manager(tasks.folders, tasks.defaults)
    for item in tasks.load:
        try:
            tm.load([item])
        except Exception as exc:  # datasets and lm-eval raise many kinds; each means the data is not there
            raise ConfigError(
                f"lm-eval task {_spec_name(item)!r}: its data could not be loaded ({_first_line(exc)}). Without "
                "Hugging Face Hub access, use a local task YAML (dataset_path: json, dataset_kwargs.data_files)."
            ) from None
    return tasks


def local_task_files(specs: Sequence[str] | None) -> list[Path]:
    """Task YAMLs given by path and the local data files they name (for content digests)."""
    out: list[Path] = []
    for spec in specs or ():
        if not is_task_file(spec):
            continue
        path = Path(spec).expanduser().resolve()
        out.append(path)
        cfg = _task_config(path)
        if isinstance(cfg, dict):
            files = (cfg.get("dataset_kwargs") or {}).get("data_files")
            values = files.values() if isinstance(files, dict) else [files]
            for v in values:
                for f in v if isinstance(v, list) else [v]:
                    if isinstance(f, str) and Path(f).is_file():
                        out.append(Path(f))
    return out


# ------------------------------------------------------------------------------------ the model
def chat_text(processor: Any, history: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    """lm-eval's chat history rendered as hsr renders prompts: through the processor's template when it
    has one (VLMs, whose messages carry content parts), else the tokenizer's."""
    from ..data import is_processor

    target = processor if getattr(processor, "chat_template", None) else getattr(processor, "tokenizer", processor)
    if not getattr(target, "chat_template", None):
        raise ConfigError(f"{type(processor).__name__} has no chat template; turn lm_eval_chat_template off.")
    if is_processor(processor):
        history = [{**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m.get("content"), str)
                   else m for m in history]
    return target.apply_chat_template(history, tokenize=False, add_generation_prompt=add_generation_prompt,
                                      continue_final_message=not add_generation_prompt)


@functools.cache
def _lm_class() -> type:
    from lm_eval.models.huggingface import HFLM

    class HsrLM(HFLM):
        """HFLM around hsr's loaded model: chat prompts rendered like hsr's own (see :func:`chat_text`)."""

        hsr_processor: Any = None

        def apply_chat_template(self, chat_history: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
            return chat_text(self.hsr_processor, chat_history, add_generation_prompt)

    return HsrLM


def wrap_model(loaded: LoadedModel, batch_size: int) -> Any:
    """lm-eval's HF wrapper around the loaded model (no reload); inputs go to its execution device."""
    from ..placement import model_device

    lm = _lm_class()(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch_size)
    lm.hsr_processor = loaded.processor
    lm._device = model_device(loaded.model)  # HFLM takes model.device, which is meta for offloaded weights
    return lm


# ------------------------------------------------------------------------------------ results
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def task_metrics(row: dict[str, Any], n: int | None = None) -> dict[str, dict[str, Any]]:
    """``{"acc": {"value", "stderr", "n"}, ...}`` from one lm-eval results row (``"acc,none"`` keys; a filter
    other than ``none`` is kept in brackets, e.g. ``exact_match[strict-match]``)."""
    out = {}
    for key, value in row.items():
        if "," not in key:
            continue
        metric, filt = key.split(",", 1)
        if metric.endswith("_stderr") or _number(value) is None:
            continue
        label = metric if filt == "none" else f"{metric}[{filt}]"
        out[label] = {"value": _number(value), "stderr": _number(row.get(f"{metric}_stderr,{filt}")), "n": n}
    return out


def summarize(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per reported task, its metrics: the requested tasks and groups; a group without an aggregate is
    reported through its subtasks."""
    rows = results.get("results") or {}
    group_subtasks: dict[str, list[str]] = results.get("group_subtasks") or {}
    inside = {t for subs in group_subtasks.values() for t in subs}
    n_samples = results.get("n-samples") or {}

    def report(name: str, out: dict[str, Any]) -> None:
        n = (n_samples.get(name) or {}).get("effective")
        metrics = task_metrics(rows.get(name) or {}, n)
        if metrics:
            out[name] = metrics
        for sub in group_subtasks.get(name, []) if not metrics else []:
            report(sub, out)

    out: dict[str, Any] = {}
    for name in rows:
        if name not in inside:
            report(name, out)
    return out


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _sample_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for task, samples in (results.get("samples") or {}).items():
        for s in samples:
            metrics = {m: s.get(m) for m in s.get("metrics", [])}
            rows.append({"task": task, "doc_id": s.get("doc_id"), "target": s.get("target"),
                         "responses": s.get("filtered_resps"), **metrics})
    return rows


def run_lm_eval(
    loaded: LoadedModel, specs: Sequence[str], out: Path, *, num_fewshot: int | None = None, limit: int | None = None,
    batch_size: int = 8, chat_template: bool = False, seed: int = 0,
) -> dict[str, Any]:
    """Run the tasks on ``loaded``; write lm_eval.json and lm_eval_samples.jsonl into ``out``; return the
    metrics.json entries (``lm_eval``: task -> metric -> value/stderr/n, ``lm_eval_detail``)."""
    lm_eval = require_lm_eval()
    tasks = resolve_tasks(specs)
    tm = task_manager(tasks.folders, tasks.defaults)
    results = lm_eval.simple_evaluate(
        model=wrap_model(loaded, batch_size), tasks=list(tasks.load), task_manager=tm, num_fewshot=num_fewshot,
        limit=limit, apply_chat_template=chat_template, fewshot_as_multiturn=chat_template, log_samples=True,
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
    )
    samples = _sample_rows(results)
    with open(out / SAMPLES_FILE, "w", encoding="utf-8") as fh:
        for row in samples:
            fh.write(json.dumps(_json_safe(row)) + "\n")
    kept = {k: v for k, v in results.items() if k != "samples"}
    (out / RESULTS_FILE).write_text(json.dumps(_json_safe(kept), indent=2), encoding="utf-8")
    detail = {
        "tasks": list(tasks.specs), "version": lm_eval.__version__, "num_fewshot": num_fewshot, "limit": limit,
        "chat_template": chat_template, "batch_size": batch_size,
        "higher_is_better": _json_safe(results.get("higher_is_better") or {}),
    }
    return {"lm_eval": summarize(results), "lm_eval_detail": detail}
