"""The settings each stage of ``hsr run`` fingerprints are exactly what they were before the run config
became typed (``tests/data/run_settings.json``), key order included: run folders made before stay reused."""

from __future__ import annotations

import json

import pytest
from run_settings_capture import CASES, FIXTURE, capture

EXPECTED = json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("case,overrides", CASES, ids=[c for c, _ in CASES])
def test_stage_settings_unchanged(case, overrides, tmp_path, monkeypatch):
    got = capture(tmp_path, overrides, monkeypatch)
    want = EXPECTED[case]
    assert [s["name"] for s in got] == [s["name"] for s in want]
    for g, w in zip(got, want):
        assert json.dumps(g) == json.dumps(w), g["name"]  # same values, same key order (stage.json bytes)
