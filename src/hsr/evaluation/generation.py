"""Batched generation for evaluation: the model's chat template, images when given, greedy by default.

Prompts are left-padded into batches, so every row's last prompt token sits at the same position
and the new tokens line up; with the attention mask this gives the same greedy answers as one
prompt at a time (up to float rounding). Samples with and without an image go into separate
batches: VLM processors cannot mix the two in one call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from ..placement import model_device
from ..data import DataError, Sample, is_processor, load_image, render_chat, tokenize
from ..distributed import SINGLE, Dist
from ..loading import LoadedModel


def _batches(samples: Sequence[Sample], batch_size: int) -> list[list[int]]:
    """Index batches, image samples and text-only samples kept apart, order otherwise kept."""
    groups: dict[bool, list[int]] = {True: [], False: []}
    for i, s in enumerate(samples):
        groups[s.image is not None].append(i)
    out: list[list[int]] = []
    for idx in (groups[False], groups[True]):
        out.extend(idx[j : j + batch_size] for j in range(0, len(idx), batch_size))
    return out


def _pad_id(tok: Any) -> int:
    for value in (tok.pad_token_id, tok.eos_token_id):
        if value is not None:
            return int(value[0] if isinstance(value, list) else value)
    return 0


@torch.no_grad()
def _generate_batch(loaded: LoadedModel, batch: Sequence[Sample], gen_kw: dict[str, Any], max_length: int) -> list[str]:
    """Greedy answers to one left-padded batch (new tokens only, special tokens removed)."""
    proc, tok = loaded.processor, loaded.tokenizer
    texts = [render_chat(proc, s, add_generation_prompt=True) for s in batch]
    images = [load_image(s.image, s.meta.get("source", "sample")) for s in batch if s.image is not None] if is_processor(proc) else None
    inputs = tokenize(proc, texts, images or None, padding_side="left")
    lengths = inputs["attention_mask"].sum(dim=1)
    if int(lengths.max()) > max_length:
        worst = batch[int(lengths.argmax())]
        raise DataError(
            f"{worst.meta.get('source', 'prompt')}: prompt is {int(lengths.max())} tokens, longer than "
            f"max_length={max_length}; raise max_length."
        )
    device = model_device(loaded.model)
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    out = loaded.model.generate(**inputs, **gen_kw)
    new = out[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in tok.batch_decode(new, skip_special_tokens=True)]


def context_length(model: Any) -> int | None:
    """The number of positions the (language) model was built for, when its config says."""
    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "max_position_embeddings", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def check_generation_budget(max_new_tokens: int, context: int | None,
                            name: str = "max_new_tokens (--max-new-tokens)") -> None:
    """Refuse a generation budget the model cannot hold: beyond its context, generation would run for
    hours (or forever) producing nothing usable. ``name``: the option, as the user set it."""
    if context is not None and max_new_tokens >= context:
        raise DataError(f"{name} is {max_new_tokens:,} but the model holds only {context:,} "
                        f"positions (max_position_embeddings); use at most {context - 1:,}, far fewer in practice.")


def generate(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    max_length: int = 512,
    progress: bool = False,
    desc: str = "generate",
    dist: Dist = SINGLE,
) -> list[str]:
    """The model's answer to each sample (new tokens only, special tokens removed), in input order.

    With several processes (``dist``), whole batches are shared out: each prompt is generated in
    the same batch, with the same padding, as in one process, so the answers are the same; every
    rank returns all of them.
    """
    if batch_size <= 0 or max_new_tokens <= 0:
        raise DataError(f"batch_size and max_new_tokens must be positive, got {batch_size} and {max_new_tokens}.")
    check_generation_budget(max_new_tokens, context_length(loaded.model))
    # Greedy, overriding sampling defaults a checkpoint's generation_config may carry.
    gen_kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": _pad_id(loaded.tokenizer),
                              "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    mine = dist.shard(_batches(samples, batch_size), cost=len)
    answers: dict[int, str] = {}
    with tqdm(total=sum(map(len, mine)), desc=desc, unit="prompt", disable=not (progress and dist.is_main)) as bar:
        for idx in mine:
            answers.update(zip(idx, _generate_batch(loaded, [samples[i] for i in idx], gen_kw, max_length)))
            bar.update(len(idx))
    for part in dist.all_gather_object(answers):
        answers.update(part)
    return [answers.get(i) or "" for i in range(len(samples))]


def write_generations(
    path: str | Path,
    samples: Sequence[Sample],
    outputs: Sequence[str],
    verdicts: Sequence[bool] | None = None,
    verdict_key: str = "attack_success",
    extra: dict[str, Sequence[Any]] | None = None,
) -> None:
    """Raw generations for audit, one JSON object per line: prompt, image, output, judge verdict."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for i, (s, o) in enumerate(zip(samples, outputs)):
            row: dict[str, Any] = {"prompt": s.prompt, "image": str(s.image) if s.image else None, "output": o}
            if verdicts is not None:
                row[verdict_key] = bool(verdicts[i])
            for key, values in (extra or {}).items():
                row[key] = values[i]
            if "id" in s.meta:
                row["id"] = s.meta["id"]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
