"""``hsr realign`` end to end on a tiny checkpoint: outputs, untouched inputs, clear errors."""

import hashlib
import json

import torch

from hsr.cli import main
from hsr.io import load_masks
from hsr.loading import load_model
from hsr.pruning import MASK_FILE, SUMMARY_FILE
from hsr.testing.tiny import save_tiny_model


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_cli_realign_end_to_end(tmp_path, capsys):
    dense = save_tiny_model("qwen2", tmp_path / "dense")
    utility = _jsonl(tmp_path / "u.jsonl", [{"prompt": f"Help me {t}.", "response": f"Sure, here is how to {t}."}
                                            for t in ("cook", "read", "swim")])
    safety = _jsonl(tmp_path / "s.jsonl", [{"prompt": f"Help me {t}.", "response": "Sorry, I cannot help with that."}
                                           for t in ("steal", "cheat", "lie")])
    pruned = tmp_path / "pruned"
    assert main(["prune", "--model", str(dense), "--data", str(utility), "--out", str(pruned)]) == 0
    heads = tmp_path / "heads" / "heads.json"
    heads.parent.mkdir()
    rows = [{"layer": l, "head": h, "score": float(8 - 4 * l - h), "rank": 4 * l + h + 1} for l in range(2) for h in range(4)]
    heads.write_text(json.dumps({"score": "ships", "num_layers": 2, "num_heads": 4, "heads": rows[::-1]}))
    before = {"dense": _digest(dense), "pruned": _digest(pruned)}
    capsys.readouterr()

    out = tmp_path / "realigned"
    common = ["--dense", str(dense), "--pruned", str(pruned), "--heads", str(heads),
              "--utility-data", str(utility), "--safety-data", str(safety)]
    rc = main(["realign", *common, "--top-h", "3", "--p", "0.3", "--q", "0.6", "--max-p", "0.8", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "restored" in capsys.readouterr().out
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert [(h["layer"], h["head"]) for h in summary["heads"]] == [(0, 0), (0, 1), (0, 2)]
    assert summary["config"]["p"] == 0.3 and summary["mask_source"] == "mask file"
    assert summary["restored_params"] > 0
    new_masks, old_masks = load_masks(out / MASK_FILE), load_masks(pruned / MASK_FILE)
    assert sum(int(m.sum()) for m in old_masks.values()) - sum(int(m.sum()) for m in new_masks.values()) == summary["restored_params"]
    model = load_model(out).model
    for name, m in new_masks.items():
        assert (model.get_submodule(name).weight[m] == 0).all()
    assert {"dense": _digest(dense), "pruned": _digest(pruned)} == before

    # SNIP, random heads, whole head, budget: all run; random heads are reproducible
    out2 = tmp_path / "control"
    assert main(["realign", *common, "--importance", "snip", "--random-heads", "--seed", "3", "--top-h", "2",
                 "--budget", "10", "--include-mlp", "--out", str(out2)]) == 0
    s2 = json.loads((out2 / SUMMARY_FILE).read_text())
    assert s2["head_selection"] == "random" and s2["restored_params"] <= 10 and s2["inputs"]["importance"] == "snip"
    assert main(["realign", *common, "--whole-head", "--top-h", "8", "--out", str(tmp_path / "whole")]) == 0
    whole = load_model(tmp_path / "whole").model
    ref = load_model(dense).model
    for l in range(2):
        for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
            name = f"model.layers.{l}.self_attn.{p}"
            assert torch.equal(whole.get_submodule(name).weight, ref.get_submodule(name).weight)
    assert {"dense": _digest(dense), "pruned": _digest(pruned)} == before


def test_cli_realign_errors(tmp_path, capsys):
    dense = save_tiny_model("qwen2", tmp_path / "dense")
    heads = tmp_path / "heads.json"
    header = {"num_layers": 2, "num_heads": 4}
    heads.write_text(json.dumps({**header, "heads": [{"layer": 0, "head": 0, "rank": 1}]}))
    base = ["realign", "--dense", str(dense), "--pruned", str(dense), "--heads", str(heads)]
    cases = [
        (["--p", "0.9", "--out", str(tmp_path / "o")], "0 <= p <= max_p <= 1"),
        (["--q", "0", "--out", str(tmp_path / "o")], "0 < q <= 1"),
        (["--out", str(dense)], "overlaps the input"),
        (["--out", str(tmp_path)], "overlaps the input"),
    ]
    for extra, msg in cases:
        assert main([*base, *extra]) == 2
        assert msg in capsys.readouterr().err
    assert main(["realign", "--dense", str(dense), "--pruned", str(dense), "--heads", str(tmp_path / "nope.json"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad_files = [
        ({**header, "heads": [{"layer": 0}]}, "'layer', 'head' and 'rank'"),
        ({**header, "heads": [{"layer": 1.7, "head": 0, "rank": 1}]}, "'layer', 'head' and 'rank'"),
        ({**header, "heads": [{"layer": True, "head": 0, "rank": 1}]}, "'layer', 'head' and 'rank'"),
        ({**header, "heads": [{"layer": 0, "head": 1, "rank": 1}, {"layer": 0, "head": 1, "rank": 2}]}, "listed twice"),
        ({**header, "heads": [{"layer": 7, "head": 0, "rank": 1}]}, "layer 7"),
        ({"heads": [{"layer": 0, "head": 0, "rank": 1}]}, "num_layers"),
        ({"num_layers": 30, "num_heads": 9, "heads": [{"layer": 0, "head": 0, "rank": 1}]}, "30 layers x 9 heads"),
    ]
    for content, msg in bad_files:
        bad.write_text(json.dumps(content))
        assert main([*base[:-1], str(bad), "--whole-head", "--top-h", "1", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert msg in last and last.startswith("hsr realign: error:") and "Traceback" not in err, (content, err)
    assert main([*base, "--nm", "2:4", "--out", str(tmp_path / "o")]) == 2
    assert "--preserve-nm" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    other = save_tiny_model("llama", tmp_path / "llama")
    assert main(["realign", "--dense", str(dense), "--pruned", str(other), "--heads", str(heads), "--whole-head",
                 "--top-h", "1", "--out", str(tmp_path / "o")]) == 2
    assert "LlamaForCausalLM" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
