"""One declaration per option: CLI flags and run-config keys come from the stage dataclasses' fields."""

from __future__ import annotations

import argparse
import dataclasses
from importlib import resources

import pytest

from hsr.align import AlignConfig
from hsr.cli import build_parser
from hsr.errors import ConfigError
from hsr.evaluation import EvalConfig
from hsr.heads import HeadScoreConfig
from hsr.options import add_flags, from_args, specs
from hsr.pipeline.config import default_config, default_config_text, load_run_config, load_yaml
from hsr.pipeline.sections import SHARED, PruneData, RunOptions, derived_defaults, layout
from hsr.pruning import PruneConfig
from hsr.realign import ImportanceConfig, RealignConfig

STAGES = (AlignConfig, PruneConfig, HeadScoreConfig, ImportanceConfig, RealignConfig, EvalConfig)
#: Flags that name inputs/outputs of one command invocation; ``hsr run`` sets these itself.
COMMAND_ONLY = {"model", "out", "overwrite", "no_progress", "label", "checkpoint_dir", "pruned", "heads",
                "utility_scores", "safety_scores", "dense", "random_heads", "help", "func", "_runtime_defaults"}
#: command -> run-config sections its options live in ("" = top level)
SECTIONS = {"align": ("align", ""), "prune": ("prune", ""), "heads": ("heads", ""),
            "realign": ("realign", "importance", ""), "evaluate": ("evaluate", "")}


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("cls", STAGES, ids=lambda c: c.__name__)
def test_every_stage_field_is_a_declared_option(cls):
    declared = {s.name for s in specs(cls)}
    assert declared == {f.name for f in dataclasses.fields(cls)}, "a field without option(help=...) is unreachable"


@pytest.mark.parametrize("command", sorted(SECTIONS))
def test_every_command_option_is_settable_from_hsr_run(command):
    config = default_config()
    keys = set()
    for section in SECTIONS[command]:
        keys |= set(config[section] if section else {k for k, v in config.items() if not isinstance(v, dict)})
    dests = {a.dest for a in _subparser(command)._actions} - COMMAND_ONLY
    assert dests, command
    missing = sorted(dests - keys)
    assert not missing, f"hsr {command} options with no run-config key: {missing}"


@pytest.mark.parametrize("command", sorted(SECTIONS))
def test_command_defaults_equal_the_declared_defaults(command):
    """With no flags, a command builds exactly the dataclass defaults (no second set of defaults in the CLI)."""
    parser = _subparser(command)
    args = parser.parse_args(["--out", "x"] + (["--pruned", "p", "--heads", "h"] if command == "realign" else []))
    cls = {"align": AlignConfig, "prune": PruneConfig, "heads": HeadScoreConfig, "realign": RealignConfig,
           "evaluate": EvalConfig}[command]
    built = from_args(args, cls, fixed={k: getattr(cls(), k) for k in SHARED if hasattr(cls(), k)}, skip=SHARED)
    assert built == cls()


def test_run_config_keys_are_the_declarations_plus_the_default_runs_choices():
    derived, config = derived_defaults(), default_config()
    assert derived.keys() == config.keys()
    for section, parts in layout().items():
        if section:
            names = [s.name for cls, skip in parts for s in specs(cls, skip)]
            assert list(config[section]) == names
    overlay = load_yaml(resources.files("hsr").joinpath("configs/default.yaml").read_text())
    changed = {k for k in config if config[k] != derived[k]}
    assert changed <= set(overlay), "only keys the default run sets on purpose may differ from the declarations"


def test_printed_config_parses_back_to_the_defaults():
    assert load_yaml(default_config_text()) == default_config()
    assert load_run_config() == default_config()


def test_none_switches_a_data_set_off_the_same_way_in_yaml_and_on_the_cli():
    # the drift named in the issue: `hsr evaluate --benign none` worked, `evaluate.benign: none` did not
    config = load_run_config(None, ["evaluate.benign=none", "evaluate.mcq=None"])
    assert config["evaluate"]["benign"] is None and config["evaluate"]["mcq"] is None
    args = _subparser("evaluate").parse_args(["--benign", "none", "--mcq", "null", "--out", "x"])
    built = from_args(args, EvalConfig, fixed={"max_length": 8, "seed": 0}, skip=SHARED)
    assert built.benign is None and built.mcq is None and built.harmful == EvalConfig().harmful


@pytest.mark.parametrize(
    "section, key, flag, value, message",
    [
        ("heads", "batch_heads", "--batch-heads", "0", "must be at least 1"),
        ("prune", "block_size", "--block-size", "-1", "must be at least 1"),
        ("evaluate", "suites", "--suite", "safety,vibes", "must be one of safety, utility"),
        ("align", "modules", "--modules", "q_proj,bogus", "must be one of"),
    ],
)
def test_one_check_for_yaml_and_cli(section, key, flag, value, message):
    with pytest.raises(ConfigError, match=f"{section}.{key}.*{message}"):
        load_run_config(None, [f"{section}.{key}={value}"])
    command = {"heads": "heads", "prune": "prune", "evaluate": "evaluate", "align": "align"}[section]
    cls = {"heads": HeadScoreConfig, "prune": PruneConfig, "evaluate": EvalConfig, "align": AlignConfig}[section]
    args = _subparser(command).parse_args([flag, value, "--out", "x"])
    with pytest.raises(ConfigError, match=f"{flag} {message}"):
        from_args(args, cls, fixed={"max_length": 8, "seed": 0}, skip=SHARED)


def test_options_unreachable_before_are_now_settable_from_hsr_run():
    config = load_run_config(None, ["heads.eps=1e-5", "heads.approx_tokens=3", "prune.percdamp=0.05",
                                    "realign.nm=2:4", "realign.preserve_nm=true", "evaluate.mcq_limit=5"])
    from hsr.pipeline.config import eval_options, head_options, prune_options, realign_options

    assert head_options(config).eps == 1e-5 and head_options(config).approx_tokens == 3
    assert prune_options(config).percdamp == 0.05
    assert realign_options(config, random_heads=False).nm == "2:4"
    assert eval_options(config).mcq_limit == 5


def test_flags_from_a_small_dataclass():
    parser = argparse.ArgumentParser()
    add_flags(parser, PruneData)
    assert from_args(parser.parse_args([]), PruneData) == PruneData()
    assert from_args(parser.parse_args(["--n-samples", "none"]), PruneData).n_samples is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--n-samples", "many"])  # a type error is argparse's usage error
    with pytest.raises(ConfigError, match="--n-samples must be at least 1"):
        from_args(parser.parse_args(["--n-samples", "0"]), PruneData)


def test_runtime_flags_come_from_run_options():
    args = _subparser("prune").parse_args(["--out", "x", "--seed", "3"])
    from hsr.commands.common import runtime

    options = runtime(args)
    assert options.seed == 3 and options.device == RunOptions().device and args.max_length == RunOptions().max_length


#: Stage dataclasses whose validate() enforces the declarations for objects built in Python.
CHECKED = (AlignConfig, PruneConfig, RealignConfig, EvalConfig, HeadScoreConfig)


def _violations(cls) -> list[tuple[str, object]]:
    """(field, value breaking its declaration) for every declared minimum and choice list of ``cls``."""
    out = []
    for spec in specs(cls):
        if spec.minimum is not None:
            out.append((spec.name, type(spec.plain_default() or 0)(spec.minimum - 1)))
        if spec.choices is not None:
            out.append((spec.name, ("bogus",) if isinstance(spec.default, tuple) else "bogus"))
    return out


@pytest.mark.parametrize("cls", CHECKED, ids=lambda c: c.__name__)
def test_python_api_objects_are_checked_against_the_declarations(cls):
    """The declarations are the one home of choices and minimums: validate() enforces them for objects
    built in Python too (no hand-written twin checks that could drift from the flags and YAML keys)."""
    bad = _violations(cls)
    assert bad, cls
    cls().validate()
    for name, value in bad:
        with pytest.raises(ConfigError, match=name):
            dataclasses.replace(cls(), **{name: value}).validate()
    int_fields = [s.name for s in specs(cls) if s.kind is int and not s.optional]
    for name in int_fields:
        with pytest.raises(ConfigError, match=f"{name} must be an integer"):
            dataclasses.replace(cls(), **{name: 1.5}).validate()
