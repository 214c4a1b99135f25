import pytest

from hsr.errors import ConfigError
from hsr.pipeline.config import default_config, load_run_config, parse_override


def test_defaults_load_and_validate():
    cfg = load_run_config()
    assert cfg == default_config()
    assert cfg["realign"]["top_h"] == 10 and cfg["prune"]["sparsity"] == "0.4"


def test_yaml_file_and_overrides_merge(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: some/model\nrealign:\n  top_h: 3\nprune:\n  sparsity: '2:4'\n")
    cfg = load_run_config(path, ["realign.q=0.25", "evaluate.models=[dense, realigned]", "prune.sparsity=4:8"])
    assert cfg["model"] == "some/model"
    assert cfg["realign"]["top_h"] == 3 and cfg["realign"]["q"] == 0.25
    assert cfg["realign"]["p"] == 0.5  # untouched defaults survive
    assert cfg["evaluate"]["models"] == ["dense", "realigned"]
    assert cfg["prune"]["sparsity"] == "4:8"


def test_override_parsing():
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}
    assert parse_override("prune.sparsity=2:4") == {"prune": {"sparsity": "2:4"}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("realign.top_h")


@pytest.mark.parametrize(
    "override, message",
    [
        ("realign.topp_h=3", "realign.topp_h"),
        ("realign.p=0.8", "realign: .*p <= max_p"),
        ("realign.q=0", "realign: .*0 < q"),
        ("realign.top_h=0", "top_h"),
        ("heads.score=foo", "heads.score"),
        ("heads.score_model=both", "heads.score_model"),
        ("importance.method=grad", "importance.method"),
        ("evaluate.limit=-3", "evaluate.limit"),
        ("realign=5", "mapping"),
    ],
)
def test_bad_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(None, [override])


def test_missing_or_bad_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_run_config(bad)


def test_cli_print_config(capsys):
    from hsr.cli import main

    assert main(["run", "--print-config"]) == 0
    assert "realign:" in capsys.readouterr().out


def test_cli_bad_override_exits_2(capsys):
    from hsr.cli import main

    assert main(["run", "--set", "realign.nope=1", "--out", "/tmp/never-written-hsr"]) == 2
    assert "realign.nope" in capsys.readouterr().err


def test_yaml_values_keep_the_meaning_a_user_writes(tmp_path):
    """Unquoted 2:4 is not base-60 124; 1e-4 is a number; a one-item list may be written as text;
    'none' switches an evaluation set off; whole-number floats become integers."""
    path = tmp_path / "run.yaml"
    path.write_text(
        "prune:\n  sparsity: 2:4\nalign:\n  lr: 1e-4\nevaluate:\n  suites: safety\n  benign: none\n  mcq: None\n"
        "  max_new_tokens: 16.0\n"
    )
    cfg = load_run_config(path)
    assert cfg["prune"]["sparsity"] == "2:4"
    assert cfg["align"]["lr"] == pytest.approx(1e-4)
    assert cfg["evaluate"]["suites"] == ["safety"]
    assert cfg["evaluate"]["benign"] is None and cfg["evaluate"]["mcq"] is None
    assert cfg["evaluate"]["max_new_tokens"] == 16 and isinstance(cfg["evaluate"]["max_new_tokens"], int)
    assert load_run_config(None, ["prune.sparsity=0.6"])["prune"]["sparsity"] == "0.6"


@pytest.mark.parametrize(
    "override, message",
    [
        ('realign.control="no"', "realign.control' must be true or false"),
        ("seed=abc", "'seed' must be a number"),
        ("seed=true", "'seed' must be a number"),
        ("evaluate.max_new_tokens=[1]", "evaluate.max_new_tokens' must be a number"),
        ("evaluate.max_new_tokens=2.5", "must be an integer"),
        ("evaluate.models=[dense, bogus]", "evaluate.models' must be one of"),
        ("evaluate.suites=[safety, vibes]", "evaluate.suites' must be one of"),
        ("evaluate.judge=oracle", "Unknown judge"),
        ("evaluate.judge=keyword:nolist", "nolist"),
        ("heads.engine=turbo", "engine"),
        ("heads.mode=half", "mode"),
        ("heads.max_batch_tokens=-1", "max_batch_tokens' must be at least 0"),
        ("heads.max_batch_tokens=lots", "max_batch_tokens' must be a number"),
        ("heads.approx_tolerance=-1", "approx_tolerance' must be at least 0"),
        ('heads.prefix_reuse="no"', "prefix_reuse' must be true or false"),
        ("heads.approx_top_h=0", "approx_top_h' must be at least 1"),
        ("realign.budget=-1", "budget"),
        ("seed=null", "cannot be null"),
        ("device=3", "'device' must be text"),
    ],
)
def test_wrong_types_and_choices_fail_at_load_with_the_key_named(override, message):
    from hsr.errors import HsrError

    with pytest.raises(HsrError, match=message):
        load_run_config(None, [override])


def test_non_utf8_config_is_a_config_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"model: caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_run_config(path)


def test_head_speed_options_reach_the_scorer():
    from hsr.pipeline.config import head_options

    options = head_options(load_run_config(None, ["heads.max_batch_tokens=0", "heads.prefix_reuse=false", "realign.top_h=7"]))
    assert options.max_batch_tokens == 0 and options.prefix_reuse is False
    assert options.approx_top_h == 7  # null: the top-h realignment uses
    defaults = head_options(load_run_config(None, ["heads.approx_top_h=3"]))
    assert defaults.max_batch_tokens is None and defaults.prefix_reuse is None and defaults.approx_top_h == 3
    assert defaults.effective_prefix_reuse  # ships
