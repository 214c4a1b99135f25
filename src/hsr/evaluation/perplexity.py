"""Perplexity on a held-out text: token-weighted mean negative log-likelihood, exponentiated.

The text is tokenized once (plain text, no chat template, the tokenizer's own special tokens)
and read in windows of at most ``max_length`` tokens that start every ``stride`` tokens. Each
token is scored exactly once, in the first window that predicts it, with all of that window's
earlier tokens as context; the first token of the text has no context and is not scored. With
``stride == max_length`` (the default) consecutive windows share a single token (the context of
the next window's first target), i.e. chunks of ``max_length``; a smaller stride gives each scored
token more context at a higher cost.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..placement import model_device
from ..data import DataError, resolve_data_path
from ..loading import LoadedModel


def load_text(spec: str | Path) -> str:
    """A text by ``builtin:NAME`` or file path."""
    path = resolve_data_path(spec, "Perplexity text")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8 text.") from None
    if not text.strip():
        raise DataError(f"{path}: empty text.")
    return text


def token_ids(loaded: LoadedModel, text: str) -> torch.Tensor:
    """The text's token ids, 1-D."""
    # verbose=False: long texts are windowed below, so the "longer than max length" warning does not apply
    return torch.tensor(loaded.tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"], dtype=torch.long)


@torch.no_grad()
def perplexity(
    loaded: LoadedModel, text: str, *, max_length: int = 512, stride: int | None = None, max_tokens: int | None = None
) -> dict[str, Any]:
    """``{"perplexity", "nll", "tokens", "windows", "max_length", "stride"}`` for ``text``."""
    stride = stride or max_length
    if max_length < 2 or not 0 < stride <= max_length:
        raise DataError(f"need max_length >= 2 and 0 < stride <= max_length, got {max_length} and {stride}.")
    ids = token_ids(loaded, text)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if ids.numel() < 2:
        raise DataError("The perplexity text is shorter than two tokens.")
    device = model_device(loaded.model)
    total_nll, scored, windows = 0.0, 0, 0
    done = 1  # tokens [0, done) are scored (token 0 never is)
    begin = 0
    while done < ids.numel():
        end = min(begin + max_length, ids.numel())
        window = ids[begin:end].unsqueeze(0).to(device)
        logits = loaded.model(input_ids=window, attention_mask=torch.ones_like(window)).logits[0].float()
        logp = F.log_softmax(logits[:-1], dim=-1)  # position t predicts token t+1
        targets = window[0, 1:]
        nll = -logp.gather(1, targets.unsqueeze(1)).squeeze(1)
        first = done - begin - 1  # index in nll of the first unscored token
        total_nll += float(nll[first:].sum())
        scored += int(nll.numel() - first)
        done = end
        windows += 1
        begin = min(begin + stride, done - 1)  # the next window must contain the token before its first target
    mean = total_nll / scored
    return {
        "perplexity": math.exp(mean),
        "nll": mean,
        "tokens": scored,
        "windows": windows,
        "max_length": max_length,
        "stride": stride,
    }
