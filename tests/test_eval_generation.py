"""Batched greedy generation equals one-at-a-time generation; generations are saved for audit."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_loaded

from hsr.data import DataError, Sample
from hsr.evaluation.generation import generate, write_generations
from hsr.testing.tiny import EOS, tiny_image

PROMPTS = ["How do I boil an egg?", "Hi", "Tell me a long story about the sea and the ships that sail it.", "2 + 2?"]


def _greedy_reference(loaded, sample, n):
    """Plain greedy decoding with a python loop, no generate(), no padding."""
    from hsr.data import encode

    ids = encode(loaded.processor, sample)
    inputs = dict(ids.inputs)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = loaded.model(**inputs).logits[0, -1]
            nxt = int(logits.argmax())
            if nxt == loaded.tokenizer.convert_tokens_to_ids(EOS):
                break
            out.append(nxt)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([[nxt]])], dim=1)
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    return loaded.tokenizer.decode(out, skip_special_tokens=True).strip()


@pytest.fixture(scope="module")
def llama():
    return tiny_loaded("llama")


def test_text_model_batched_equals_unbatched_and_reference(llama):
    loaded = llama
    samples = [Sample(p) for p in PROMPTS]
    batched = generate(loaded, samples, max_new_tokens=8, batch_size=4)
    single = [generate(loaded, [s], max_new_tokens=8, batch_size=1)[0] for s in samples]
    assert batched == single
    assert batched[0] == _greedy_reference(loaded, samples[0], 8)
    assert any(batched)


def test_vlm_mixed_image_and_text_batches(tmp_path):
    loaded = tiny_loaded("qwen2_vl")
    for i in range(2):
        tiny_image(seed=i).save(tmp_path / f"{i}.png")
    samples = [
        Sample("Describe this.", image=tmp_path / "0.png"),
        Sample(PROMPTS[0]),
        Sample("What colour is it, in a long answer?", image=tmp_path / "1.png"),
        Sample(PROMPTS[2]),
    ]
    batched = generate(loaded, samples, max_new_tokens=6, batch_size=4)
    single = [generate(loaded, [s], max_new_tokens=6, batch_size=1)[0] for s in samples]
    assert batched == single


def test_prompt_longer_than_max_length_is_an_error(llama):
    loaded = llama
    with pytest.raises(DataError, match="max_length"):
        generate(loaded, [Sample("word " * 200)], max_new_tokens=2, max_length=16)


def test_write_generations_jsonl(tmp_path):
    samples = [Sample("a", meta={"id": 7}), Sample("b", image=tmp_path / "x.png")]
    path = tmp_path / "g.jsonl"
    write_generations(path, samples, ["out a", "out b"], [True, False], "attack_success", {"judge_raw": ["u", "s"]})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"prompt": "a", "image": None, "output": "out a", "attack_success": True, "judge_raw": "u", "id": 7}
    assert rows[1]["image"].endswith("x.png") and rows[1]["attack_success"] is False


def test_evaluate_model_on_vlm_with_images(calib_jsonl, tmp_path):
    from hsr.evaluation import EvalConfig, evaluate_model

    loaded = tiny_loaded("llava")
    config = EvalConfig(harmful=str(calib_jsonl), benign=None, suites=("safety",), max_new_tokens=4, batch_size=2)
    metrics = evaluate_model(loaded, config, tmp_path / "ev", label="vlm", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "ev" / "generations_harmful.jsonl").read_text().splitlines()]
    assert metrics["asr"]["n"] == 5 and metrics["over_refusal"] is None and metrics["perplexity"] is None
    assert sum(r["image"] is not None for r in rows) == 4
    assert [r["prompt"] for r in rows][:2] == ["Describe picture number 0.", "Describe picture number 1."]
