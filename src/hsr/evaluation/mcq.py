"""Multiple-choice accuracy by log-likelihood, through the model's chat template.

Data: JSONL rows ``{"question": str, "choices": [str, ...], "answer": int | "B" | choice text}``
(the answer as 0-based index, letter, or the exact choice text).

Methods (both score continuations of the chat-templated user turn, generation prompt on; the
prediction is the highest-scoring choice, ties to the first):

- ``loglik`` (default): the user turn is the question alone; each choice's score is the summed
  log-probability of the choice text's tokens as the assistant's answer. With ``normalize`` the
  sum is divided by the number of tokens (length-normalised).
- ``letter``: the user turn lists the choices as ``A. ...``, ``B. ...`` and asks for the letter;
  each choice's score is the log-probability of its letter as the answer.

Prompt and continuation are tokenized separately and concatenated as ids, so a choice's tokens
never merge with the template's last token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..placement import model_device
from ..data import DataError, Sample, iter_jsonl_rows, render_chat, resolve_data_path, tokenize
from ..loading import LoadedModel

LETTERS = "ABCDEFGHIJ"
METHODS = ("loglik", "letter")


@dataclass
class MCQItem:
    question: str
    choices: list[str]
    answer: int


def _parse_answer(answer: Any, choices: list[str], where: str) -> int:
    if isinstance(answer, bool):
        raise DataError(f"{where}: 'answer' must be an index, a letter or a choice text.")
    if isinstance(answer, int):
        idx = answer
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS[: len(choices)]:
        idx = LETTERS.index(answer.strip().upper())
    elif isinstance(answer, str) and answer in choices:
        idx = choices.index(answer)
    else:
        raise DataError(f"{where}: 'answer' {answer!r} is not an index, letter or one of the choices.")
    if not 0 <= idx < len(choices):
        raise DataError(f"{where}: answer index {idx} out of range for {len(choices)} choices.")
    return idx


def load_mcq(spec: str | Path, limit: int | None = None, seed: int = 0) -> list[MCQItem]:
    """Read multiple-choice items from ``builtin:NAME`` or a JSONL path (seeded subset with ``limit``)."""
    from ..data import subsample

    path = resolve_data_path(spec, "Multiple-choice file")
    items: list[MCQItem] = []
    for where, row in iter_jsonl_rows(path):
        q, choices = row.get("question"), row.get("choices")
        if not isinstance(q, str) or not q.strip():
            raise DataError(f"{where}: missing or empty 'question'.")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise DataError(f"{where}: 'choices' must be a list of at least two non-empty strings.")
        if len(choices) > len(LETTERS):
            raise DataError(f"{where}: at most {len(LETTERS)} choices are supported.")
        items.append(MCQItem(q, choices, _parse_answer(row.get("answer"), choices, where)))
    if not items:
        raise DataError(f"{path}: no rows.")
    if limit is None:
        return items
    # reuse data.subsample's seeded selection (it only needs a sequence)
    return subsample(items, limit, seed)  # type: ignore[arg-type]


def lettered_prompt(item: MCQItem) -> str:
    lines = [item.question] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices)]
    return "\n".join(lines) + "\nAnswer with the letter of the correct choice."


def _ids(loaded: LoadedModel, text: str, prompt: bool) -> list[int]:
    if prompt:  # same tokenization as generation (processor for VLMs)
        return tokenize(loaded.processor, [text], None)["input_ids"][0].tolist()
    return list(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])


def _token_lists(loaded: LoadedModel, prompt_text: str, continuations: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    prompt_ids = _ids(loaded, prompt_text, prompt=True)
    conts = [_ids(loaded, c, prompt=False) for c in continuations]
    if any(not c for c in conts):
        raise DataError(f"A choice tokenizes to nothing: {continuations!r}")
    return prompt_ids, conts


def _right_padded(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(r) for r in rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):  # right padding: positions of real tokens are unchanged
        if r:
            ids[i, : len(r)] = torch.tensor(list(r))
            mask[i, : len(r)] = 1
    return ids, mask


@torch.no_grad()
def continuation_scores(
    loaded: LoadedModel, prompt_text: str, continuations: Sequence[str], share_prefix: bool = True
) -> list[tuple[float, int]]:
    """(summed log-probability, token count) of each continuation after ``prompt_text``.

    With ``share_prefix`` the prompt runs once and its key/value cache is reused for every
    continuation (same numbers, a fraction of the compute); otherwise prompt + continuation
    rows run as one right-padded batch.
    """
    prompt_ids, conts = _token_lists(loaded, prompt_text, continuations)
    device = model_device(loaded.model)
    p = len(prompt_ids)
    if not share_prefix:
        ids, mask = _right_padded([prompt_ids + c for c in conts])
        logits = loaded.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        rows = [logits[i, p - 1 : p - 1 + len(c)] for i, c in enumerate(conts)]  # position t predicts token t+1
    else:
        prompt = torch.tensor([prompt_ids], device=device)
        pre = loaded.model(input_ids=prompt, attention_mask=torch.ones_like(prompt), use_cache=True)
        last = pre.logits[0, -1:]
        tails = [c[:-1] for c in conts]  # the last token of a continuation is only predicted, never fed
        if max(len(t) for t in tails) == 0:
            rows = [last for _ in conts]
        else:
            cache = pre.past_key_values
            cache.batch_repeat_interleave(len(conts))
            ids, mask = _right_padded(tails)
            mask = torch.cat([torch.ones(len(conts), p, dtype=torch.long), mask], dim=1)
            logits = loaded.model(
                input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=cache, use_cache=True
            ).logits
            rows = [torch.cat([last, logits[i, : len(c) - 1]]) for i, c in enumerate(conts)]
    out = []
    for row, c in zip(rows, conts):
        logp = F.log_softmax(row.float(), dim=-1).cpu()
        out.append((float(logp[torch.arange(len(c)), torch.tensor(c)].sum()), len(c)))
    return out


def score_item(loaded: LoadedModel, item: MCQItem, method: str = "loglik", normalize: bool = False) -> list[float]:
    """One score per choice (higher = more likely)."""
    if method == "loglik":
        prompt = render_chat(loaded.processor, Sample(item.question), add_generation_prompt=True)
        scored = continuation_scores(loaded, prompt, item.choices)
    elif method == "letter":
        prompt = render_chat(loaded.processor, Sample(lettered_prompt(item)), add_generation_prompt=True)
        scored = continuation_scores(loaded, prompt, list(LETTERS[: len(item.choices)]))
    else:
        raise DataError(f"Unknown MCQ method {method!r}; choose from {', '.join(METHODS)}.")
    return [s / n if normalize else s for s, n in scored]


def mcq_accuracy(
    loaded: LoadedModel, items: Sequence[MCQItem], method: str = "loglik", normalize: bool = False, progress: bool = False
) -> dict[str, Any]:
    """``{"correct": [bool], "predictions": [int], "method"}`` over ``items``."""
    predictions, correct = [], []
    for item in tqdm(items, desc=f"mcq[{method}]", unit="q", disable=not progress):
        scores = score_item(loaded, item, method, normalize)
        pred = max(range(len(scores)), key=lambda i: (scores[i], -i))
        predictions.append(pred)
        correct.append(pred == item.answer)
    return {"correct": correct, "predictions": predictions, "method": method, "normalize": normalize}
