import pytest

from hsr.errors import ConfigError
from hsr.pipeline.config import default_config, load_run_config, parse_override


def test_defaults_load_and_validate():
    cfg = load_run_config()
    assert cfg == default_config()
    assert cfg["realign"]["top_h"] == 10 and cfg["prune"]["sparsity"] == "0.5"


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
        ("realign.p=0.8", "p <= realign.max_p"),
        ("realign.q=0", "0 < realign.q"),
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
