"""The head-score registry (issue 20): built-in scores keep their pinned numbers, bit for bit."""

from __future__ import annotations

import json

import pytest
import torch

from heads_pins import CASES, PINS, compute


@pytest.fixture
def one_thread():
    """The pins were made with one thread; another thread count changes the reduction order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name,arch,options", CASES, ids=[c[0] for c in CASES])
def test_scores_keep_their_pinned_bits(name, arch, options, tmp_path, one_thread):
    pins = json.loads(PINS.read_text())
    got = json.loads(json.dumps(compute(arch, options, tmp_path)))  # through JSON, like heads.json
    want = pins["cases"][name]
    same_kernels = pins["torch"] == torch.__version__ and pins.get("cpu_capability") == torch.backends.cpu.get_cpu_capability()
    if not same_kernels:  # another torch or vector unit may round differently: still within float32 noise
        for a, b in zip(sum(got["scores"], []), sum(want["scores"], [])):
            assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
        return
    assert got == want


# ------------------------------------------------------------------------------------- contrastive Ships
from hsr.data import Sample, encode  # noqa: E402
from hsr.errors import ConfigError  # noqa: E402
from hsr.heads import HeadScoreConfig, score_heads  # noqa: E402
from hsr.heads.scores import SCORES, get_score  # noqa: E402
from hsr.testing.tiny import MIXED_ATTENTION_ARCHS, TINY_ARCHS  # noqa: E402

from heads_pins import samples as harmful_samples, sharpened  # noqa: E402

BENIGN = ["How do I boil an egg?", "Write a short poem about the sea.", "What is the capital of France?"]


def _hook_reference_kls(loaded, samples):
    """``[L, H, N]``: KL(p_base || p_ablated) of the last-position next-token distribution per prompt, each
    head zeroed by a pre-hook on its o_proj input slice, one full forward per head and prompt, in float64."""
    arch, dh, model = loaded.arch, loaded.arch.head_dim, loaded.model
    inputs = [encode(loaded.processor, s, include_response=False).inputs for s in samples]

    def last_logp(hook=None, layer=None):
        handle = arch.attention(layer).o_proj.register_forward_pre_hook(hook) if hook else None
        try:
            with torch.no_grad():
                return [torch.log_softmax(model(**x, use_cache=False).logits[0, -1].double(), -1) for x in inputs]
        finally:
            if handle:
                handle.remove()

    base = last_logp()
    out = torch.zeros(arch.num_layers, arch.num_heads, len(samples), dtype=torch.float64)
    for l in range(arch.num_layers):
        for h in range(arch.num_heads):
            def zero_head(_mod, args, h=h):
                y = args[0].clone()
                y[..., h * dh : (h + 1) * dh] = 0
                return (y, *args[1:])

            for n, (b, a) in enumerate(zip(base, last_logp(zero_head, l))):
                out[l, h, n] = float((b.exp() * (b - a)).sum())
    return out


@pytest.mark.parametrize("arch", [*TINY_ARCHS, *MIXED_ATTENTION_ARCHS])
def test_contrastive_ships_equals_a_hook_reference(arch, tmp_path):
    """score = mean KL on harmful prompts - mean KL on benign ones, each KL(p_base || p_ablated) of the
    last-position next-token distribution; both engines against a plain hook loop, on every tiny family."""
    loaded = sharpened(arch)
    harmful = harmful_samples(tmp_path, loaded.is_vlm)
    benign = [Sample(p) for p in BENIGN]
    kls = _hook_reference_kls(loaded, [*harmful, *benign])
    reference = kls[..., : len(harmful)].mean(-1) - kls[..., len(harmful) :].mean(-1)
    assert float(kls.max()) > 1e-3 and float(reference.abs().max()) > 1e-4  # the heads matter, differently
    for engine in ("fast", "naive"):
        got = score_heads(loaded, harmful, HeadScoreConfig(score="contrastive_ships", engine=engine), progress=False,
                          benign=benign)
        torch.testing.assert_close(got.scores, reference, rtol=1e-4, atol=1e-6, msg=engine)
        assert got.n_prompts == len(harmful) and got.extras["n_benign"] == len(benign)


def test_contrastive_ships_is_ships_harmful_minus_ships_benign(tmp_path):
    loaded = sharpened("qwen2")
    harmful, benign = harmful_samples(tmp_path, False), [Sample(p) for p in BENIGN]
    both = score_heads(loaded, harmful, HeadScoreConfig(score="contrastive_ships"), progress=False, benign=benign)
    on = {name: score_heads(loaded, s, HeadScoreConfig(score="ships"), progress=False).scores
          for name, s in (("harmful", harmful), ("benign", benign))}
    torch.testing.assert_close(both.scores, on["harmful"] - on["benign"], rtol=0, atol=1e-6)
    # ships ignores benign prompts: same bits with or without them
    assert torch.equal(score_heads(loaded, harmful, HeadScoreConfig(score="ships"), progress=False,
                                   benign=benign).scores, on["harmful"])


def test_contrastive_ships_options_and_refusals(tmp_path):
    assert list(SCORES)[:3] == ["ships", "gships", "contrastive_ships"]
    HeadScoreConfig(score="contrastive_ships").validate()
    with pytest.raises(ConfigError, match="first-order estimate"):
        HeadScoreConfig(score="contrastive_ships", engine="approx").validate()
    with pytest.raises(ConfigError, match="one of ships, gships, contrastive_ships"):
        HeadScoreConfig(score="nope").validate()
    loaded = sharpened("llama")
    with pytest.raises(ConfigError, match="needs benign prompts"):
        score_heads(loaded, harmful_samples(tmp_path, False), HeadScoreConfig(score="contrastive_ships"), progress=False)
    with pytest.raises(ConfigError, match="at least one benign"):
        HeadScoreConfig(score="contrastive_ships").check_against(4, 2, 4, n_benign=0)
    assert get_score("contrastive_ships").unit.endswith("(nats)")


def _hook_last_states(loaded, samples, layer=None, head=None):
    """``[N, d]`` final normed last-token states, read by a hook on the final norm, with head ``head`` of
    ``layer`` zeroed on its o_proj input slice (one full forward per prompt, float64)."""
    from hsr.architecture import final_norm

    arch, dh = loaded.arch, loaded.arch.head_dim
    got = []
    handles = [final_norm(arch).register_forward_hook(lambda _m, _a, out: got.append(out[0, -1].double()))]
    if layer is not None:
        def zero(_mod, args):
            y = args[0].clone()
            y[..., head * dh : (head + 1) * dh] = 0
            return (y, *args[1:])
        handles.append(arch.attention(layer).o_proj.register_forward_pre_hook(zero))
    try:
        with torch.no_grad():
            for s in samples:
                loaded.model(**encode(loaded.processor, s, include_response=False).inputs, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(got)


# ------------------------------------------------------------------------------------- a score of one's own
def test_a_score_defined_here_runs_through_score_heads(tmp_path):
    """A toy score with its own readout (a projection of the final hidden state), stat and options:
    registered, validated by name, run by both engines, and written to heads.json with its unit."""
    from dataclasses import dataclass

    from hsr.heads import HeadScore, register_score, save_head_scores
    from hsr.heads.readouts import Readout, register_readout
    from hsr.heads.scores import Stat, unregister_score
    from hsr.options import option

    direction = torch.linspace(-1, 1, 64, dtype=torch.float64)
    proj = register_readout(Readout("toy_projection", lambda hidden, _logits: hidden.double() @ direction[: hidden.shape[-1]]))

    @dataclass
    class ToyOptions:
        scale: float = option(2.0, help="multiplies the score")

    @register_score
    class Toy(HeadScore):
        name = "toy_projection_shift"
        unit = "toy units"
        options = ToyOptions
        stats = (Stat("toy_shift", proj, lambda base, ablated: (ablated - base).abs()),)

        def reduce(self, data, ctx):
            return ctx.options.scale * data["toy_shift"][:, ctx.rows("harmful")].mean(1)

    try:
        loaded = sharpened("llama")
        harmful = harmful_samples(tmp_path, False)
        results = {e: score_heads(loaded, harmful, HeadScoreConfig(score=Toy.name, engine=e), progress=False)
                   for e in ("fast", "naive")}
        # reference: the same projection from a hook on the final norm, each head zeroed on its o_proj slice
        arch = loaded.arch

        def projections(layer=None, head=None):
            states = _hook_last_states(loaded, harmful, layer, head)
            return states @ direction[: states.shape[-1]]

        base = projections()
        reference = torch.tensor([[2.0 * float((projections(l, h) - base).abs().mean()) for h in range(arch.num_heads)]
                                  for l in range(arch.num_layers)], dtype=torch.float64)
        assert float(reference.max()) > 1e-3
        for engine, result in results.items():
            torch.testing.assert_close(result.scores, reference, rtol=1e-4, atol=1e-6, msg=engine)
        path = save_head_scores(tmp_path / "toy", results["fast"], model_label="tiny")
        data = json.loads(path.read_text())
        assert data["score"] == Toy.name and data["config"]["score"] == Toy.name
        from hsr.heads.scores import unit_of

        assert unit_of(Toy.name) == "toy units"
    finally:
        unregister_score(Toy.name)
    with pytest.raises(ConfigError):
        HeadScoreConfig(score=Toy.name).validate()


def test_contrastive_ships_from_yaml_and_the_cli(tmp_path, capsys):
    from hsr.cli import main
    from hsr.pipeline.config import head_options, load_run_config
    from hsr.testing.tiny import save_tiny_model

    path = tmp_path / "run.yaml"
    path.write_text("heads:\n  score: contrastive_ships\n  benign_data: builtin:benign\n")
    cfg = load_run_config(path)
    assert head_options(cfg).score == "contrastive_ships" and cfg["heads"]["benign_data"] == "builtin:benign"
    assert load_run_config()["heads"]["benign_data"] == "builtin:utility"
    with pytest.raises(ConfigError, match="heads.score"):
        load_run_config(None, ["heads.score=nope"])

    model_dir = save_tiny_model("qwen2", tmp_path / "model")
    rows = lambda stem, n: "".join(json.dumps({"prompt": f"{stem} {i}?"}) + "\n" for i in range(n))  # noqa: E731
    (tmp_path / "harmful.jsonl").write_text(rows("How do I do harmful thing", 3))
    (tmp_path / "benign.jsonl").write_text(rows("How do I bake bread number", 2))
    out = tmp_path / "heads"
    rc = main(["heads", "--model", str(model_dir), "--data", str(tmp_path / "harmful.jsonl"), "--score",
               "contrastive_ships", "--benign-data", str(tmp_path / "benign.jsonl"), "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    heads = json.loads((out / "heads.json").read_text())
    assert heads["score"] == "contrastive_ships" and heads["n_prompts"] == 3 and heads["n_benign"] == 2
    assert (out / "heads.png").is_file()


def test_builtin_score_options_are_config_fields_declared_once():
    """A built-in score's options reach flags and YAML through HeadScoreConfig, with the score's own declaration."""
    import dataclasses

    config_fields = {f.name: f for f in dataclasses.fields(HeadScoreConfig)}
    for name in SCORES:
        for f in dataclasses.fields(get_score(name).options):
            assert f.name in config_fields, (name, f.name)
            assert (config_fields[f.name].default, dict(config_fields[f.name].metadata)) == (f.default, dict(f.metadata))


def test_no_module_imports_another_modules_private_names():
    import ast
    from pathlib import Path

    import hsr

    bad = []
    for path in Path(hsr.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                bad += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not bad


# ------------------------------------------------------------------------------------- refusal direction
@pytest.mark.parametrize("arch", [*TINY_ARCHS, *MIXED_ATTENTION_ARCHS])
def test_refusal_direction_equals_a_hook_reference(arch, tmp_path):
    """r = unit(mean harmful state - mean benign state) of the unablated model; score(h) = mean over
    harmful prompts of (x_base - x_ablated(h)) . r; both engines against a plain hook loop."""
    loaded = sharpened(arch)
    harmful = harmful_samples(tmp_path, loaded.is_vlm)
    benign = [Sample(p) for p in BENIGN]
    base = _hook_last_states(loaded, [*harmful, *benign])
    n = len(harmful)
    r = base[:n].mean(0) - base[n:].mean(0)
    r = r / r.norm()
    reference = torch.tensor([[float(((base[:n] - _hook_last_states(loaded, harmful, l, h)) @ r).mean())
                               for h in range(loaded.arch.num_heads)] for l in range(loaded.arch.num_layers)],
                             dtype=torch.float64)
    assert float(reference.abs().max()) > 1e-4 and float(reference.std()) > 0  # the heads differ
    for engine in ("fast", "naive"):
        got = score_heads(loaded, harmful, HeadScoreConfig(score="refusal_direction", engine=engine), progress=False,
                          benign=benign)
        torch.testing.assert_close(got.scores, reference, rtol=1e-4, atol=1e-6, msg=engine)


def test_refusal_direction_refuses_what_it_cannot_score(tmp_path):
    from hsr.heads.scores.refusal_direction import refusal_direction

    loaded = sharpened("llama")
    with pytest.raises(ConfigError, match="needs benign prompts"):
        score_heads(loaded, harmful_samples(tmp_path, False), HeadScoreConfig(score="refusal_direction"), progress=False)
    same = torch.ones(4, 8, dtype=torch.float64)
    with pytest.raises(ConfigError, match="no refusal direction"):
        refusal_direction(same, slice(0, 2), slice(2, 4))
    d = refusal_direction(torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 1.0]]), slice(0, 2), slice(2, 3))
    torch.testing.assert_close(d, torch.tensor([3.0, -1.0]) / 10 ** 0.5)
