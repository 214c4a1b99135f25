"""Perplexity and multiple-choice accuracy against direct computations on a tiny model."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_loaded

from hsr.data import DataError, Sample, render_chat
from hsr.evaluation.mcq import MCQItem, load_mcq, mcq_accuracy, score_item
from hsr.evaluation.perplexity import perplexity, token_ids

TEXT = (
    "The river that runs below our town is not a famous one. It does not appear in songs, and most maps "
    "draw it as a thin blue thread. In spring it rises fast with melted snow from the hills, and in winter "
    "a skin of ice forms along the edges while the middle keeps moving, dark and quiet."
)


@pytest.fixture(scope="module")
def llama():
    return tiny_loaded("llama")


def _direct_nll(model, ids):
    """Per-token NLL of ids[1:] given the full prefix, one forward pass."""
    with torch.no_grad():
        logits = model(input_ids=ids.unsqueeze(0)).logits[0]
    return -F.log_softmax(logits[:-1], -1).gather(1, ids[1:].unsqueeze(1)).squeeze(1)


def test_perplexity_single_window_equals_exp_mean_nll(llama):
    ids = token_ids(llama, TEXT)
    nll = _direct_nll(llama.model, ids)
    result = perplexity(llama, TEXT, max_length=ids.numel() + 5)
    assert result["tokens"] == ids.numel() - 1 and result["windows"] == 1
    assert result["perplexity"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)


def test_perplexity_chunks_score_every_token_once(llama):
    ids = token_ids(llama, TEXT)
    n = ids.numel()
    L = 16
    result = perplexity(llama, TEXT, max_length=L)
    assert result["tokens"] == n - 1
    # direct: windows [0,16), [15,31), [30,46) ... each scoring its tokens after the first
    total, begin, done = 0.0, 0, 1
    while done < n:
        end = min(begin + L, n)
        nll = _direct_nll(llama.model, ids[begin:end])
        total += float(nll[done - begin - 1 :].sum())
        done, begin = end, end - 1
    assert result["perplexity"] == pytest.approx(math.exp(total / (n - 1)), rel=1e-5)
    # a sliding window with more context gives a different (here: finite, positive) number
    slid = perplexity(llama, TEXT, max_length=L, stride=4)
    assert slid["tokens"] == n - 1 and slid["windows"] > result["windows"]


def test_perplexity_rejects_bad_windows(llama):
    with pytest.raises(DataError):
        perplexity(llama, TEXT, max_length=8, stride=9)


def _direct_choice_logprob(loaded, prompt_text, choice):
    from hsr.data import tokenize

    p = tokenize(loaded.processor, [prompt_text], None)["input_ids"][0]
    c = torch.tensor(loaded.tokenizer(choice, add_special_tokens=False)["input_ids"])
    ids = torch.cat([p, c])
    with torch.no_grad():
        logp = F.log_softmax(loaded.model(input_ids=ids.unsqueeze(0)).logits[0], -1)
    return float(sum(logp[len(p) - 1 + i, t] for i, t in enumerate(c.tolist())))


ITEMS = [
    MCQItem("What is the capital of France?", ["Lyon", "Paris", "a much longer wrong answer here"], 1),
    MCQItem("What is 2 + 2?", ["4", "22", "five"], 0),
    MCQItem("Which is a colour?", ["red", "table", "run", "quickly"], 0),
]


def test_mcq_loglik_matches_direct_computation(llama):
    predictions = []
    for item in ITEMS:
        prompt = render_chat(llama.processor, Sample(item.question))
        direct = [_direct_choice_logprob(llama, prompt, c) for c in item.choices]
        scores = score_item(llama, item, "loglik")
        assert scores == pytest.approx(direct, abs=1e-4)
        predictions.append(max(range(len(direct)), key=lambda i: direct[i]))
    result = mcq_accuracy(llama, ITEMS)
    assert result["predictions"] == predictions
    assert result["correct"] == [p == i.answer for p, i in zip(predictions, ITEMS)]


def test_mcq_letter_method_scores_letters(llama):
    from hsr.evaluation.mcq import lettered_prompt

    item = ITEMS[2]
    prompt = render_chat(llama.processor, Sample(lettered_prompt(item)))
    direct = [_direct_choice_logprob(llama, prompt, letter) for letter in "ABCD"]
    assert score_item(llama, item, "letter") == pytest.approx(direct, abs=1e-4)


def test_load_mcq_answer_forms_and_errors(tmp_path):
    rows = [
        {"question": "q1", "choices": ["a", "b"], "answer": 1},
        {"question": "q2", "choices": ["a", "b", "c"], "answer": "C"},
        {"question": "q3", "choices": ["x", "y"], "answer": "x"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [i.answer for i in load_mcq(path)] == [1, 2, 0]
    path.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": 5}) + "\n")
    with pytest.raises(DataError, match="line 1"):
        load_mcq(path)
    path.write_text(json.dumps({"question": "q", "choices": ["a"], "answer": 0}) + "\n")
    with pytest.raises(DataError, match="choices"):
        load_mcq(path)


@pytest.mark.parametrize("arch", ["llama", "qwen2_vl", "idefics3"])
def test_shared_prefix_cache_equals_full_batch(arch):
    from hsr.evaluation.mcq import continuation_scores

    loaded = tiny_loaded(arch)
    prompt = render_chat(loaded.processor, Sample("What is the capital of France?"))
    for conts in (["Paris", "a much longer wrong answer here", "4"], ["A", "B", "C", "D"]):
        shared = continuation_scores(loaded, prompt, conts, share_prefix=True)
        full = continuation_scores(loaded, prompt, conts, share_prefix=False)
        assert [n for _, n in shared] == [n for _, n in full]
        assert [s for s, _ in shared] == pytest.approx([s for s, _ in full], abs=1e-4)
