"""The typed run config: built once, frozen, with the same refusals as the dict it is built from; and the
stage functions ``hsr run`` and the commands share: ``hsr prune`` writes what the run's prune stage writes."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from hsr.cli import main
from hsr.errors import ConfigError
from hsr.pipeline.config import load_run_config, read_run_config
from hsr.pipeline.run_config import RunConfig, build_run_config
from test_run_pipeline import tiny_run_config  # noqa: F401  (fixture)


def test_typed_config_holds_the_merged_dict_and_its_sections_typed():
    from hsr.heads import HeadScoreConfig
    from hsr.pruning import PruneConfig, Sparsity

    sets = ["prune.sparsity=2:4", "realign.top_h=7", "evaluate.enabled=false", "sweep.sparsities=[0.3, 0.5]"]
    config = read_run_config(None, sets)
    assert isinstance(config, RunConfig) and config.plain == load_run_config(None, sets)
    assert (config.model, config.max_length, config.prune.method, config.prune.sparsity) == ("default", 256, "wanda", "2:4")
    assert isinstance(config.prune.options, PruneConfig) and config.prune.options.sparsity == Sparsity.parse("2:4")
    assert isinstance(config.heads.options, HeadScoreConfig) and config.heads.options.approx_top_h == 7
    assert config.realign.options.random_heads is False and config.realign.control_options.random_heads is True
    assert config.evaluate.options is None and config.evaluate.run.enabled is False  # a disabled stage is not built
    assert config.sweep.sparsities == [0.3, 0.5] and config.align_enabled  # auto: the default model is aligned
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model = "other"  # type: ignore[misc]


def test_settings_keep_key_order_and_replace_in_place():
    prune = read_run_config(None).prune
    settings = prune.settings("pruned", method="magnitude", sparsity="0.6")
    assert list(settings) == [k for k in prune.plain if k != "pruned"]
    assert (settings["method"], settings["sparsity"]) == ("magnitude", "0.6")
    point = prune.at("magnitude", "0.6")
    assert (point.method, point.sparsity.describe(), point.percdamp) == ("magnitude", "0.6", prune.options.percdamp)
    assert prune.options.method == "wanda"  # the section's own options are untouched


@pytest.mark.parametrize("override,message", [
    ("prune.methd=wanda", "Unknown config key 'prune.methd'; known keys here:"),
    ("realign.top_h=many", "Config key 'realign.top_h' must be a number, got 'many'."),
    ("heads.limit=0", "Config key 'heads.limit' must be at least 1, got 0."),
    ("evaluate=3", "Config key 'evaluate' must be a mapping, got 3."),
    ("evaluate.models=[]", "evaluate.models must name at least one of"),
    ("realign.p=0.9", "realign"),  # beyond max_p: the stage's own validation, named by its section
    ("sweep.sparsities=[0.5, '0.5']", "sweep.sparsities lists 0.5 twice"),
    # this check once sat, unreachable, after a raise: a sweep cannot re-prune an external pruned model
    ("prune.pruned=somewhere;sweep.sparsities=[0.3]", "sweep.sparsities cannot be combined with prune.pruned"),
])
def test_bad_values_are_refused_with_the_same_message_typed_or_not(override, message):
    with pytest.raises(ConfigError) as plain:
        load_run_config(None, override.split(";"))
    with pytest.raises(ConfigError) as typed:
        read_run_config(None, override.split(";"))
    assert str(typed.value) == str(plain.value) and message in str(typed.value)


def test_a_hand_made_dict_is_checked_when_typed():
    config = load_run_config()
    config["realign"]["top_h"] = 0  # behind the merge's back
    with pytest.raises(ConfigError, match="top_h must be at least 1"):
        build_run_config(config)


def test_hsr_run_builds_the_config_once(monkeypatch, tmp_path):
    import hsr.commands.run as command
    import hsr.pipeline.config as config_module
    from hsr.pipeline.run import RunResult

    built, ran = [], []
    real = config_module.build_run_config
    monkeypatch.setattr(config_module, "build_run_config", lambda c: built.append(1) or real(c))
    monkeypatch.setattr(command, "run_pipeline", lambda c, progress: ran.append(c) or RunResult(tmp_path))
    assert main(["run", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert len(built) == 1 and isinstance(ran[0], RunConfig)


def _digests(folder, skip=("stage.json",)):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and p.name not in skip}


def test_hsr_prune_writes_what_the_run_prune_stage_writes(tiny_run_config, tmp_path):
    config_path, run_dir, model_dir = tiny_run_config
    assert main(["run", str(config_path), "--no-progress", "--set", "evaluate.enabled=false",
                 "--set", "realign.control=false"]) == 0
    settings = json.loads((run_dir / "pruned" / "stage.json").read_text())["settings"]
    out = tmp_path / "cli-pruned"
    assert main(["prune", "--model", str(model_dir), "--method", settings["method"], "--sparsity", settings["sparsity"],
                 "--data", settings["data"], "--n-samples", str(settings["n_samples"]),
                 "--block-size", str(settings["block_size"]), "--percdamp", str(settings["percdamp"]),
                 "--mlp" if settings["include_mlp"] else "--no-mlp", "--max-length", str(settings["max_length"]),
                 "--seed", str(settings["seed"]), "--dtype", settings["dtype"], "--device", settings["device"],
                 "--no-progress", "--out", str(out)]) == 0
    ours, theirs = _digests(out), _digests(run_dir / "pruned")
    assert {"model.safetensors", "mask.safetensors", "summary.json"} <= set(ours)
    assert ours == theirs  # weights, mask, summary and tokenizer files byte for byte
