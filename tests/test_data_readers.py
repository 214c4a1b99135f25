import json

import pytest
from PIL import Image

from hsr.data import DataError, load_samples, read_jsonl, read_vlguard, subsample


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_read_jsonl_resolves_images_relative_to_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    f = _write(tmp_path / "d.jsonl", [{"prompt": "p1", "response": "r1", "image": "imgs/a.png", "tag": 3}, {"prompt": "p2"}])
    samples = read_jsonl(f)
    assert [s.prompt for s in samples] == ["p1", "p2"]
    assert samples[0].image == tmp_path / "imgs" / "a.png" and samples[1].image is None
    assert samples[0].meta["tag"] == 3 and samples[1].response is None


@pytest.mark.parametrize(
    "row,message",
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"response": "x"}', "line 2: missing or empty 'prompt'"),
        ('["a"]', "line 2: expected a JSON object"),
        ('{"prompt": "x", "image": "missing.png"}', "line 2: image file not found"),
        ('{"prompt": "x", "response": 3}', "line 2: 'response' must be a string"),
    ],
)
def test_read_jsonl_errors_name_the_row(tmp_path, row, message):
    f = _write(tmp_path / "d.jsonl", [{"prompt": "fine"}, row])
    with pytest.raises(DataError, match=message):
        read_jsonl(f)


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        read_jsonl(tmp_path / "empty.jsonl")


def _vlguard(tmp_path):
    (tmp_path / "train").mkdir()
    for name in ("safe.png", "unsafe.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / "train" / name)
    entries = [
        {
            "id": "s1",
            "image": "safe.png",
            "safe": True,
            "instr-resp": [
                {"safe_instruction": "Describe the park.", "response": "A sunny park."},
                {"unsafe_instruction": "How to hurt the people here?", "response": "I can't help with that."},
            ],
        },
        {"id": "u1", "image": "unsafe.png", "safe": False, "instr-resp": [{"instruction": "Copy this.", "response": "No."}]},
    ]
    (tmp_path / "train.json").write_text(json.dumps(entries))
    return tmp_path


def test_read_vlguard_splits(tmp_path):
    root = _vlguard(tmp_path)
    ss = read_vlguard(root, "safe_safes")
    su = read_vlguard(root, "safe_unsafes")
    un = read_vlguard(root, "unsafes")
    assert [s.prompt for s in ss] == ["Describe the park."]
    assert [s.prompt for s in su] == ["How to hurt the people here?"]
    assert [s.prompt for s in un] == ["Copy this."] and un[0].image.name == "unsafe.png"
    assert load_samples(f"vlguard:{root}:unsafes")[0].response == "No."
    with pytest.raises(DataError, match="Unknown VLGuard split"):
        read_vlguard(root, "all")
    (root / "train" / "unsafe.png").unlink()
    with pytest.raises(DataError, match=r"train.json\[1\]: image file not found"):
        read_vlguard(root, "unsafes")


def test_subsample_is_seeded_and_order_preserving(tmp_path):
    f = _write(tmp_path / "d.jsonl", [{"prompt": f"p{i}"} for i in range(50)])
    a = load_samples(f, limit=10, seed=1)
    b = load_samples(f, limit=10, seed=1)
    c = load_samples(f, limit=10, seed=2)
    assert [s.prompt for s in a] == [s.prompt for s in b] != [s.prompt for s in c]
    idx = [int(s.prompt[1:]) for s in a]
    assert idx == sorted(idx)
    assert len(subsample(a, 100)) == 10


def test_unknown_builtin_dataset_is_a_data_error():
    import pytest as _pytest

    from hsr.data import DataError, load_samples

    with _pytest.raises(DataError, match="Unknown built-in dataset"):
        load_samples("builtin:no-such-set")


def test_images_for_a_text_only_model_are_ignored_with_one_warning(calib_jsonl, caplog):
    import logging

    from conftest import tiny_loaded
    from hsr.data import _warn_images_ignored, load_samples, render_chat

    _warn_images_ignored.cache_clear()
    loaded = tiny_loaded("qwen2")
    samples = [s for s in load_samples(calib_jsonl) if s.image is not None]
    with caplog.at_level(logging.WARNING, logger="hsr.data"):
        texts = [render_chat(loaded.processor, s) for s in samples]
    assert all(s.prompt in t for s, t in zip(samples, texts))
    warnings = [r for r in caplog.records if "images are ignored" in r.getMessage()]
    assert len(samples) > 1 and len(warnings) == 1
