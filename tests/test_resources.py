"""Built-in data sets: registered, loadable, the expected sizes, and documented in LICENSES.md."""

from __future__ import annotations

import json

import pytest

from hsr.data import DataError, load_samples
from hsr.evaluation.mcq import load_mcq
from hsr.evaluation.perplexity import load_text
from hsr.resources import BUILTIN_DATASETS, RESOURCE_DIR, builtin_path

EXPECTED_ROWS = {"advbench": 520, "harmbench": 200, "advbench_eval": 100, "utility": 64, "safety": 64, "benign": 64, "mcq": 60,
                 "advbench_val": 100, "advbench_align": 126, "align_benign": 240, "benign_val": 80}


def test_every_registered_file_exists():
    assert set(BUILTIN_DATASETS) == set(EXPECTED_ROWS) | {"heldout"}
    for name in BUILTIN_DATASETS:
        assert builtin_path(name).is_file(), name


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_builtin_jsonl_loads_with_expected_count(name):
    samples = load_samples(f"builtin:{name}")
    assert len(samples) == EXPECTED_ROWS[name]
    assert all(s.prompt.strip() for s in samples)
    assert len({s.prompt for s in samples}) == len(samples), "duplicate prompts"


def test_response_sets_have_responses():
    for name in ("utility", "safety", "mcq"):
        assert all(s.response and s.response.strip() for s in load_samples(f"builtin:{name}")), name
    for name in ("advbench", "harmbench", "advbench_eval", "benign", "advbench_val", "advbench_align", "align_benign", "benign_val"):
        assert all(s.response is None for s in load_samples(f"builtin:{name}")), name


def test_eval_and_safety_subsets_come_from_advbench_and_do_not_overlap():
    adv = {s.meta["id"]: s.prompt for s in load_samples("builtin:advbench")}
    ev = load_samples("builtin:advbench_eval")
    safety = load_samples("builtin:safety")
    for s in ev + safety:
        assert adv[s.meta["id"]] == s.prompt
    assert not {s.meta["id"] for s in ev} & {s.meta["id"] for s in safety}


def test_limit_gives_seeded_subset():
    a = load_samples("builtin:advbench", limit=10, seed=3)
    b = load_samples("builtin:advbench", limit=10, seed=3)
    assert [s.prompt for s in a] == [s.prompt for s in b] and len(a) == 10


def test_heldout_text_and_mcq():
    text = load_text("builtin:heldout")
    assert 2000 <= len(text.split()) <= 4000
    items = load_mcq("builtin:mcq")
    assert len(items) == 60
    assert all(len(i.choices) == 4 and 0 <= i.answer < 4 for i in items)
    assert len({i.answer for i in items}) == 4, "answers should not all sit at one position"


def test_unknown_builtin_is_a_data_error():
    with pytest.raises(DataError, match="available"):
        load_text("builtin:nope")


def test_licenses_mention_every_file_with_its_sha256():
    import hashlib

    licenses = (RESOURCE_DIR / "LICENSES.md").read_text(encoding="utf-8")
    for name, file in BUILTIN_DATASETS.items():
        assert file in licenses, file
        assert f"`{name}`" in licenses or f"| {name} |" in licenses, name
        digest = hashlib.sha256((RESOURCE_DIR / file).read_bytes()).hexdigest()
        assert digest in licenses, f"{file}: SHA256 in LICENSES.md is stale"
    assert "MIT License" in licenses and "Apache-2.0" in licenses


def test_jsonl_rows_are_plain_objects():
    for name, file in BUILTIN_DATASETS.items():
        if file.endswith(".jsonl"):
            for line in builtin_path(name).read_text(encoding="utf-8").splitlines():
                assert isinstance(json.loads(line), dict)
