"""The alignment data set: harmful prompts with refusals, benign prompts with the model's own answers.

Benign answers are the untuned model's greedy generations (self-distillation), so fine-tuning teaches
refusal without pulling the model towards another writing style; they are cut back to the last full
sentence so the model is not taught to stop mid-sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..data import Sample, load_samples
from ..evaluation.generation import generate
from ..loading import LoadedModel
from .config import AlignConfig
from .refusals import refusal_for

_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def trim_to_sentence(text: str) -> str:
    """``text`` up to its last sentence end; unchanged when it has none."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else text.strip()


def harmful_examples(prompts: Sequence[Sample], seed: int) -> list[Sample]:
    return [Sample(prompt=s.prompt, response=refusal_for(s.prompt, seed), meta={**s.meta, "kind": "refusal"}) for s in prompts]


def benign_examples(loaded: LoadedModel, prompts: Sequence[Sample], config: AlignConfig, progress: bool = False) -> list[Sample]:
    answers = generate(
        loaded, prompts, max_new_tokens=config.response_tokens, batch_size=64, max_length=config.max_length,
        progress=progress, desc="align: self-distil benign answers",
    )
    out = []
    for s, a in zip(prompts, answers):
        answer = trim_to_sentence(a)
        if answer:
            out.append(Sample(prompt=s.prompt, response=answer, meta={**s.meta, "kind": "helpful"}))
    return out


def build_alignment_set(loaded: LoadedModel, config: AlignConfig, progress: bool = False) -> list[Sample]:
    """Refusal and helpful examples, in a seeded interleaved order."""
    import random

    harmful = load_samples(config.harmful, limit=config.harmful_limit, seed=config.seed)
    benign = load_samples(config.benign, limit=config.benign_limit, seed=config.seed)
    examples = harmful_examples(harmful, config.seed) + benign_examples(loaded, benign, config, progress)
    random.Random(config.seed).shuffle(examples)
    return examples
