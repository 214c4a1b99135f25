"""Supervised safety fine-tuning of the last decoder layers, with the frozen lower layers run once.

Only the last ``train_layers`` layers' chosen projections get gradients, so the hidden states entering
the first trained layer never change during training: they are computed once (no grad) and every step
runs only the trained layers, the final norm and the LM head on the response positions. Loss:
mean next-token cross-entropy over response tokens only.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..architecture import ArchInfo, describe, lm_head

from ..placement import model_device
from ..data import Sample, encode
from ..errors import ConfigError
from ..loading import LoadedModel
from .config import AlignConfig


@dataclass
class CachedExample:
    hidden: torch.Tensor  # [T, d]: input of the first trained layer
    input_ids: torch.Tensor  # [T]
    response: torch.Tensor  # bool [T]


@contextlib.contextmanager
def upper_layers_only(arch: ArchInfo, start: int) -> Iterator[None]:
    """Make the text model run only layers ``start..L-1`` (its input is then the layer-``start`` state)."""
    text_model = arch.text_model
    full = text_model.layers
    text_model.layers = nn.ModuleList(list(full)[start:])
    try:
        yield
    finally:
        text_model.layers = full


def first_trained_layer(arch: ArchInfo, config: AlignConfig) -> int:
    n = arch.num_layers if config.train_layers is None else min(config.train_layers, arch.num_layers)
    start = arch.num_layers - n
    text_config = arch.text_model.config
    types = getattr(text_config, "layer_types", None)
    if start > 0 and types is not None and len(set(types)) > 1:
        raise ConfigError(
            f"{arch.class_name} mixes attention types across layers ({sorted(set(types))}); "
            "align.train_layers must be null (train all layers) for it."
        )
    return start


def trainable_parameters(arch: ArchInfo, start: int, modules: Sequence[str]) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze ``modules`` of layers ``start..L-1``; return those parameters."""
    params = []
    for p in arch.text_model.parameters():
        p.requires_grad_(False)
    for layer in list(arch.layers)[start:]:
        for name, mod in layer.named_modules():
            if isinstance(mod, nn.Linear) and name.rsplit(".", 1)[-1] in modules:
                for p in mod.parameters():
                    p.requires_grad_(True)
                    params.append(p)
    return params


@torch.no_grad()
def cache_inputs(loaded: LoadedModel, arch: ArchInfo, examples: Sequence[Sample], start: int, max_length: int) -> list[CachedExample]:
    """Hidden states entering layer ``start`` for each example (one unpadded forward each)."""
    device = model_device(loaded.model)
    cached = []
    for s in examples:
        enc = encode(loaded.processor, s, include_response=True, max_length=max_length)
        ids = enc.inputs["input_ids"].to(device)
        out = arch.text_model(input_ids=ids, output_hidden_states=True, use_cache=False)
        cached.append(CachedExample(out.hidden_states[start][0].cpu(), ids[0].cpu(), enc.response_mask[0]))
    return cached


def _batch(items: Sequence[CachedExample], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Right-padded batch: hidden [B,T,d], attention mask [B,T], ids [B,T], response mask [B,T]."""
    width = max(int(c.input_ids.shape[0]) for c in items)
    d = items[0].hidden.shape[-1]
    hidden = torch.zeros(len(items), width, d, dtype=items[0].hidden.dtype)
    mask = torch.zeros(len(items), width, dtype=torch.long)
    ids = torch.zeros(len(items), width, dtype=torch.long)
    resp = torch.zeros(len(items), width, dtype=torch.bool)
    for i, c in enumerate(items):
        t = int(c.input_ids.shape[0])
        hidden[i, :t], mask[i, :t], ids[i, :t], resp[i, :t] = c.hidden, 1, c.input_ids, c.response
    return tuple(x.to(device) for x in (hidden, mask, ids, resp))


def response_loss(model: nn.Module, arch: ArchInfo, hidden: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, resp: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the response tokens, with the LM head applied only where it is needed."""
    out = arch.text_model(inputs_embeds=hidden, attention_mask=mask, use_cache=False).last_hidden_state
    targets = resp[:, 1:]  # token t+1 is a response token -> predict it from position t
    states = out[:, :-1][targets]
    logits = lm_head(model)(states).float()
    return nn.functional.cross_entropy(logits, ids[:, 1:][targets])


def lr_at(step: int, total: int, config: AlignConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def finetune(loaded: LoadedModel, examples: Sequence[Sample], config: AlignConfig, progress: bool = False) -> list[float]:
    """Fine-tune ``loaded`` in place; returns the mean loss of each epoch."""
    config.validate()
    model = loaded.model
    arch = describe(model)
    start = first_trained_layer(arch, config)
    torch.manual_seed(config.seed)
    was_training = model.training
    model.eval()  # no dropout: the cached lower-layer states must match what training sees
    cached = cache_inputs(loaded, arch, examples, start, config.max_length)
    params = trainable_parameters(arch, start, config.modules)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    device = model_device(model)
    rng = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(cached) / config.batch_size)
    total = steps_per_epoch * config.epochs
    losses: list[float] = []
    step = 0
    try:
        with upper_layers_only(arch, start), tqdm(total=total, desc="align: fine-tune", disable=not progress) as bar:
            for _ in range(config.epochs):
                order = list(range(len(cached)))
                rng.shuffle(order)
                epoch_loss = 0.0
                for b in range(steps_per_epoch):
                    items = [cached[i] for i in order[b * config.batch_size : (b + 1) * config.batch_size]]
                    for group in opt.param_groups:
                        group["lr"] = lr_at(step, total, config)
                    loss = response_loss(model, arch, *_batch(items, device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    epoch_loss += float(loss.detach()) * len(items)
                    step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
                losses.append(epoch_loss / len(cached))
    finally:
        for p in model.parameters():
            p.requires_grad_(False)
            p.grad = None
        model.train(was_training)
    return losses
