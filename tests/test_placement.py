"""Placement and offload (hsr.placement): with --max-memory / --offload-folder every stage gives exactly
the results of the plain whole-model run, on a CPU-only machine, with the model mostly on disk."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hsr.data import load_samples
from hsr.errors import ConfigError
from hsr.io import PackedMasks, load_masks
from hsr.loading import load_model
from hsr.placement import is_offloaded, parse_max_memory, placement_from
from hsr.testing.tiny import save_tiny_model


def _budget(model: torch.nn.Module) -> str:
    """A quarter of the model's bytes: most decoder layers must go to disk."""
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return f"cpu={size // 4}"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    dirs = {arch: save_tiny_model(arch, root / arch) for arch in ("llama", "llava")}
    from hsr.testing.tiny import build_tiny_model

    model, tok = build_tiny_model("llama")  # lm_head tied to the embeddings, as in SmolLM2
    model.config.tie_word_embeddings = True
    model.tie_weights()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(root / "llama_tied")
    tok.save_pretrained(root / "llama_tied")
    dirs["llama_tied"] = root / "llama_tied"
    return dirs


def _pair(path, tmp_path):
    """The same checkpoint loaded plainly and with three quarters of it offloaded to disk."""
    plain = load_model(str(path))
    placed = load_model(str(path), max_memory=_budget(plain.model), offload_folder=str(tmp_path / "offload"))
    assert "disk" in placed.model.hf_device_map.values()
    assert is_offloaded(placed.model) and not is_offloaded(plain.model)
    return plain, placed


def _saved_weights(folder) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    out: dict[str, torch.Tensor] = {}
    for f in files:
        if f.name.startswith("model"):
            out.update(load_file(str(f)))
    assert out
    return out


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------- option parsing
def test_max_memory_parses_devices_and_sizes():
    assert parse_max_memory("cpu=1GiB") == {"cpu": 2**30}
    assert parse_max_memory(" cpu = 1000 ") == {"cpu": 1000}
    assert parse_max_memory("0=2GB,cuda:1=1MiB,cpu=64GiB") == {0: 2 * 10**9, 1: 2**20, "cpu": 64 * 2**30}
    assert parse_max_memory(None) is None and parse_max_memory("") is None


@pytest.mark.parametrize("text, words", [
    ("cpu", "DEVICE=SIZE"), ("cpu=", "DEVICE=SIZE"), ("gpu=1GiB", "unknown device"), ("disk=1GiB", "unknown device"),
    ("cpu=lots", "not a size"), ("cpu=0", "not a size"), ("cpu=1GiB,cpu=2GiB", "twice"),
])
def test_bad_max_memory_is_one_line_config_error(text, words):
    with pytest.raises(ConfigError) as info:
        parse_max_memory(text)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_placement_checks_budgets_against_the_device():
    assert not placement_from("cpu", None, None).dispatched
    assert placement_from("cpu", "cpu=1GiB", None).dispatched
    with pytest.raises(ConfigError, match="no budget for --device cpu"):
        placement_from("cpu", "mps=1GiB", None)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no usable CUDA"):
            placement_from("cpu", "0=1GiB,cpu=1GiB", None)


def test_model_that_does_not_fit_asks_for_an_offload_folder(tiny_dirs):
    with pytest.raises(ConfigError, match="--offload-folder"):
        load_model(str(tiny_dirs["llama"]), max_memory="cpu=1000")


def test_flags_exist_on_every_model_command():
    from hsr.cli import build_parser

    parser = build_parser()
    for command in ("prune", "heads", "realign", "evaluate", "align"):
        args = parser.parse_args([command, *_required(command), "--max-memory", "cpu=1GiB", "--offload-folder", "x"])
        assert args.max_memory == "cpu=1GiB" and args.offload_folder == "x"


def _required(command: str) -> list[str]:
    return {"realign": ["--dense", "d", "--pruned", "p", "--heads", "h", "--out", "o"]}.get(command, ["--out", "o"])


# ---------------------------------------------------------------------------- stages: identical results
@pytest.mark.parametrize("arch", ["llama", "llava", "llama_tied"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude"])
def test_prune_with_disk_offload_is_bit_identical(arch, method, tiny_dirs, calib_jsonl, tmp_path):
    from hsr.pruning import PruneConfig, Sparsity, prune_model, save_pruned

    plain, placed = _pair(tiny_dirs[arch], tmp_path)
    samples = load_samples(calib_jsonl)
    cfg = PruneConfig(method=method, sparsity=Sparsity(ratio=0.5))
    a = prune_model(plain, samples, cfg, progress=False)
    b = prune_model(placed, samples, cfg, progress=False)
    _assert_same_tensors(a.masks, b.masks)
    assert isinstance(b.masks, PackedMasks)  # an offloaded model's masks are held bit-packed
    save_pruned(tmp_path / "a", plain, a)
    save_pruned(tmp_path / "b", placed, b)
    _assert_same_tensors(load_masks(tmp_path / "a" / "mask.safetensors"), load_masks(tmp_path / "b" / "mask.safetensors"))
    saved_a, saved_b = _saved_weights(tmp_path / "a"), _saved_weights(tmp_path / "b")
    assert len(list((tmp_path / "b").glob("model*.safetensors"))) > 1  # offloaded: saved a layer at a time
    _assert_same_tensors(saved_a, saved_b)
    name = next(iter(a.masks))
    tail = name[name.index("layers."):] + ".weight"  # VLMs save under their original (4.x) names
    key = next(k for k in saved_b if k.endswith(tail) and "vision" not in k)
    assert (saved_b[key][a.masks[name]] == 0).all()  # the pruning reached the saved file
    assert (tiny_dirs[arch] / "model.safetensors").is_file()  # the input checkpoint was only read
    assert _saved_weights(tiny_dirs[arch]).keys() == saved_a.keys()


def _count_reads(placed, key: str):
    """Context: every read of ``key`` from where accelerate keeps the offloaded weights."""
    import contextlib

    from hsr.placement import offload_hook

    hook = offload_hook(placed.model.get_submodule(key.rsplit(".", 1)[0]))
    loader = hook.weights_map.dataset
    reads: list[str] = []
    original = type(loader).__getitem__

    def counting(self, k):
        reads.append(k)
        return original(self, k)

    @contextlib.contextmanager
    def counted():
        type(loader).__getitem__ = counting
        try:
            yield reads
        finally:
            type(loader).__getitem__ = original

    return counted()


def test_offloaded_layer_is_loaded_once_per_walk_step(tiny_dirs, calib_jsonl, tmp_path):
    """Per-sample forwards reuse the materialized layer instead of reading it from disk again."""
    from hsr.pruning import PruneConfig, prune_model

    _, placed = _pair(tiny_dirs["llama"], tmp_path)
    key = f"{placed.arch.layers_path}.1.self_attn.q_proj.weight"
    with _count_reads(placed, key) as reads:
        prune_model(placed, load_samples(calib_jsonl), PruneConfig(), progress=False)
    assert len(load_samples(calib_jsonl)) > 1
    assert reads.count(key) == 1


def test_fast_head_engine_reads_each_layer_once_per_walk(tiny_dirs, calib_jsonl, tmp_path):
    """The fast engine walks layer-major: an offloaded layer is read once per pass over it, however many
    prompt groups (forwards) the pass holds (accelerate used to reload it for every forward)."""
    from tqdm import tqdm

    from hsr.data import encode
    from hsr.heads import HeadScoreConfig
    from hsr.heads.attribution import make_engine

    _, placed = _pair(tiny_dirs["llama"], tmp_path)
    samples = load_samples(calib_jsonl)
    H = placed.arch.num_heads
    cfg = HeadScoreConfig(score="ships", batch_heads=H, prefix_reuse=True, max_batch_tokens=1)  # a prompt per forward
    encoded = [encode(placed.processor, s, include_response=False) for s in samples]
    engine = make_engine(placed, encoded, cfg, tqdm(disable=True))
    engine.prepare()
    assert engine.prefix_len > 0 and len(engine._groups(H)) == len(samples) > 2
    key = f"{placed.arch.layers_path}.{placed.arch.num_layers - 1}.self_attn.q_proj.weight"
    with _count_reads(placed, key) as reads:
        list(engine.run({0: list(range(H))}))  # one walk over layers 0..L-1: prefix + every prompt's forward
    assert reads.count(key) == 1


def test_onloaded_returns_freed_memory_after_the_weights_are_released(tiny_dirs, tmp_path, monkeypatch):
    """glibc keeps freed heap chunks; a walk over offloaded layers must hand them back once each layer's
    weights are released (not before, while they are still held), and never for resident modules."""
    import hsr.placement as placement

    plain, placed = _pair(tiny_dirs["llama"], tmp_path)
    layer = placed.arch.layers[placed.arch.num_layers - 1]
    seen: list[str] = []
    monkeypatch.setattr(placement, "return_freed_memory", lambda: seen.append(layer.self_attn.q_proj.weight.device.type))
    with placement.onloaded(layer):
        assert layer.self_attn.q_proj.weight.device.type == "cpu" and not seen
    with placement.onloaded(plain.arch.layers[0]):
        pass
    assert seen == ["meta"]


def _gradient_rows(loaded, samples):
    """A fast engine on ``loaded`` and two prompts x two rows entering layer 0, with their kwargs and ends."""
    from tqdm import tqdm

    from hsr.data import encode
    from hsr.heads import HeadScoreConfig
    from hsr.heads.attribution import make_engine
    from hsr.heads.rows import RowBatch, pad_rows

    cfg = HeadScoreConfig(score="ships", engine="approx")
    engine = make_engine(loaded, [encode(loaded.processor, s, include_response=False) for s in samples[:2]], cfg,
                     tqdm(disable=True))
    engine.prepare()
    lengths = [x.hidden.shape[1] for x in engine.layer0]
    batch = RowBatch([0, 1], lengths, 2)
    hidden = pad_rows([x.hidden for x in engine.layer0], batch.width, 2).contiguous()
    ends = torch.as_tensor(lengths).repeat_interleave(2) - 1
    return engine, hidden, engine.suffix_layer_kwargs(batch, None, prefix_len=0), ends


def test_layerwise_gate_gradients_equal_the_whole_stack_backward_and_onload_each_layer_twice(
        tiny_dirs, calib_jsonl, tmp_path):
    """The approximate engine's gradient pass on an offloaded model: one layer's weights at a time, same
    gradients as autograd through the whole stack of the plain model."""
    from hsr.architecture import final_norm
    from hsr.heads.layerwise import layerwise_gate_grads

    plain, placed = _pair(tiny_dirs["llama"], tmp_path)
    samples = load_samples(calib_jsonl)
    engine, hidden, kwargs_of, ends = _gradient_rows(plain, samples)
    L, H, R = plain.arch.num_layers, plain.arch.num_heads, hidden.shape[0]
    direction = torch.randn(R, hidden.shape[-1], generator=torch.Generator().manual_seed(0))

    def loss(y):
        return (y * direction).sum()

    gates = torch.ones(R, L, H, requires_grad=True)
    with torch.enable_grad():
        out = engine.forward_layers(0, L, hidden, kwargs_of, {i: gates[:, i] for i in range(L)})
        y = final_norm(plain.arch)(out[torch.arange(R), ends][:, None])[:, 0]
        (reference,) = torch.autograd.grad(loss(y), gates)
    assert reference.abs().sum() > 0
    torch.testing.assert_close(layerwise_gate_grads(engine, hidden, kwargs_of, ends, loss), reference,
                               rtol=1e-5, atol=1e-7)

    engine2, hidden2, kwargs2, ends2 = _gradient_rows(placed, samples)
    key = f"{placed.arch.layers_path}.{L - 1}.self_attn.q_proj.weight"
    with _count_reads(placed, key) as reads:
        got = layerwise_gate_grads(engine2, hidden2, kwargs2, ends2, loss)
    assert reads.count(key) == 2  # the forward, then the backward's re-run
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-7)


def test_importance_with_disk_offload_is_identical(tiny_dirs, calib_jsonl, tmp_path):
    from hsr.realign import compute_importance

    plain, placed = _pair(tiny_dirs["llava"], tmp_path)
    samples = load_samples(calib_jsonl)
    _assert_same_tensors(compute_importance(plain, samples, progress=False),
                         compute_importance(placed, samples, progress=False))
    from hsr.realign import load_importance, save_importance

    scores = compute_importance(plain, samples, progress=False)
    save_importance(scores, tmp_path / "s.safetensors")
    lazy = load_importance(tmp_path / "s.safetensors", lazy=True)
    assert set(lazy) == set(scores) and next(iter(scores)) in lazy and "nope" not in lazy
    _assert_same_tensors(scores, {k: lazy[k] for k in lazy})
    streamed = compute_importance(placed, samples, progress=False, out=tmp_path / "streamed.safetensors")
    assert set(streamed) == set(scores)  # written layer by layer (out-of-order arrival raises)
    _assert_same_tensors(scores, load_importance(tmp_path / "streamed.safetensors"))
    with pytest.raises(ConfigError, match="SNIP"):
        compute_importance(placed, samples, method="snip", progress=False)


@pytest.mark.parametrize("engine, score", [("fast", "ships"), ("fast", "gships"), ("naive", "ships"),
                                           ("approx", "gships"), ("approx", "ships")])
def test_head_scores_with_disk_offload_are_identical(engine, score, tiny_dirs, calib_jsonl, tmp_path):
    from hsr.heads import HeadScoreConfig, score_heads

    plain, placed = _pair(tiny_dirs["llava"], tmp_path)
    samples = load_samples(calib_jsonl)
    cfg = HeadScoreConfig(score=score, engine=engine, batch_heads=3, approx_top_k=2)
    a = score_heads(plain, samples, cfg, checkpoint_dir=tmp_path / "ca", progress=False)
    b = score_heads(placed, samples, cfg, checkpoint_dir=tmp_path / "cb", progress=False)
    assert torch.equal(a.scores, b.scores)


def test_realign_with_disk_offload_restores_identical_weights(tiny_dirs, calib_jsonl, tmp_path):
    from hsr.pruning import PruneConfig, prune_model, save_pruned
    from hsr.realign import RealignConfig, compute_importance, load_pruned_masks, realign_pruned, save_realigned

    dense = load_model(str(tiny_dirs["llama"]))
    samples = load_samples(calib_jsonl)
    save_pruned(tmp_path / "pruned", dense, prune_model(dense, samples, PruneConfig(), progress=False))
    dense = load_model(str(tiny_dirs["llama"]))
    utility = compute_importance(dense, samples, progress=False)
    g = torch.Generator().manual_seed(0)
    safety = {k: torch.rand(v.shape, generator=g) for k, v in utility.items()}
    ranking = [(layer, head) for layer in range(dense.arch.num_layers) for head in range(dense.arch.num_heads)]
    cfg = RealignConfig(top_h=3)
    outs = []
    for label, kw in (("a", {}), ("b", {"max_memory": _budget(dense.model), "offload_folder": str(tmp_path / "o")})):
        d = load_model(str(tiny_dirs["llama"]), **kw)
        p = load_model(str(tmp_path / "pruned"), **kw)
        masks = load_pruned_masks(tmp_path / "pruned", d.model, p.model)
        result = realign_pruned(d, p, masks, ranking, utility, safety, cfg)
        save_realigned(tmp_path / label, p, result)
        outs.append(result)
    assert outs[0].summary["restored_params"] > 0
    assert outs[0].summary["restored_params"] == outs[1].summary["restored_params"]
    _assert_same_tensors(outs[0].restored, outs[1].restored)
    _assert_same_tensors(_saved_weights(tmp_path / "a"), _saved_weights(tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["mask_source"] == "mask file"


@pytest.mark.parametrize("arch", ["llama", "llava"])
def test_generation_and_perplexity_with_disk_offload_are_identical(arch, tiny_dirs, calib_jsonl, tmp_path):
    from hsr.evaluation.generation import generate
    from hsr.evaluation.perplexity import perplexity

    plain, placed = _pair(tiny_dirs[arch], tmp_path)
    samples = load_samples(calib_jsonl)
    kw = {"max_new_tokens": 6, "batch_size": 2}
    assert generate(plain, samples, **kw) == generate(placed, samples, **kw)
    text = "The quick brown fox jumps over the lazy dog. " * 4
    assert perplexity(plain, text, max_length=16) == perplexity(placed, text, max_length=16)


# ---------------------------------------------------------------------------- CLI and run config
def test_cli_prune_with_offload_saves_the_same_model(tiny_dirs, calib_jsonl, tmp_path):
    from hsr.cli import main

    common = ["prune", "--model", str(tiny_dirs["llama"]), "--data", str(calib_jsonl), "--sparsity", "0.5"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--max-memory", "cpu=200000",
                 "--offload-folder", str(tmp_path / "off")]) == 0
    _assert_same_tensors(_saved_weights(tmp_path / "a"), _saved_weights(tmp_path / "b"))
    import gc

    gc.collect()
    assert not any((tmp_path / "off").iterdir())  # the per-model offload folder is removed with the model


def test_cli_bad_max_memory_is_one_line_before_any_work(tiny_dirs, tmp_path, capsys):
    from hsr.cli import main

    rc = main(["prune", "--model", str(tiny_dirs["llama"]), "--out", str(tmp_path / "a"), "--max-memory", "cpu=lots"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not a size" in err and "\n" not in err
    assert not (tmp_path / "a").exists()


def test_run_config_takes_placement_keys():
    from hsr.pipeline.config import load_run_config

    config = load_run_config(None, ["max_memory=cpu=1GiB", "offload_folder=/tmp/x"])
    assert (config["max_memory"], config["offload_folder"]) == ("cpu=1GiB", "/tmp/x")
    with pytest.raises(ConfigError, match="max_memory"):
        load_run_config(None, ["max_memory=cpu=lots"])


def test_align_refuses_an_offloaded_model(tiny_dirs, tmp_path):
    from hsr.align import AlignConfig, align_model

    _, placed = _pair(tiny_dirs["llama"], tmp_path)
    with pytest.raises(ConfigError, match="offloaded"):
        align_model(placed, AlignConfig())


def test_nan_in_an_offloaded_layer_is_found_and_the_offload_folder_removed(tiny_dirs, tmp_path):
    """The finite-weights check reads offloaded weights from where accelerate keeps them (here the input
    checkpoint's safetensors file), not only those in memory; the refused model leaves no offload files."""
    import math
    import shutil

    from safetensors.torch import save_file

    from hsr.errors import ModelLoadError
    from hsr.finite import nonfinite_weight

    bad = tmp_path / "nan"
    shutil.copytree(tiny_dirs["llama"], bad)
    weights = load_file(bad / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"][2, 3] = math.nan
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    plain, placed = _pair(tiny_dirs["llama"], tmp_path)
    assert placed.model.hf_device_map["model.layers.1"] == "disk"
    assert nonfinite_weight(placed.model) is None
    with pytest.raises(ModelLoadError, match=r"1 NaN or infinite value\(s\) in model.layers.1.mlp.up_proj.weight"):
        load_model(str(bad), max_memory=_budget(plain.model), offload_folder=str(tmp_path / "off"))
    import gc

    gc.collect()
    assert not any((tmp_path / "off").iterdir())


@pytest.mark.slow
def test_smollm2_prune_with_disk_offload_is_bit_identical(tmp_path):
    """Real weights: SmolLM2-135M with a quarter of it allowed in RAM, the rest on disk."""
    from hsr.data import Sample
    from hsr.pruning import PruneConfig, prune_model, save_pruned

    samples = [Sample("How do I make a cup of tea?", "Boil water and pour it over a tea bag."),
               Sample("Name three primary colors.", "Red, yellow and blue.")]
    cfg = PruneConfig(max_length=64)
    plain = load_model("default")
    a = prune_model(plain, samples, cfg, progress=False)
    save_pruned(tmp_path / "a", plain, a)
    budget = _budget(plain.model)
    del plain
    placed = load_model("default", max_memory=budget, offload_folder=str(tmp_path / "off"))
    assert "disk" in placed.model.hf_device_map.values()
    b = prune_model(placed, samples, cfg, progress=False)
    _assert_same_tensors(a.masks, b.masks)
    save_pruned(tmp_path / "b", placed, b)
    _assert_same_tensors(_saved_weights(tmp_path / "a"), _saved_weights(tmp_path / "b"))


def test_hsr_run_with_disk_offload_equals_the_plain_run(tiny_dirs, tmp_path):
    """The whole pipeline (prune, heads, importance, realign, evaluate) with most of the model on disk."""
    from hsr.pipeline.config import load_run_config
    from hsr.pipeline.run import run_pipeline

    model = tiny_dirs["llama"]
    common = [f"model={model}", "prune.n_samples=4", "heads.limit=3", "importance.limit=4", "realign.top_h=2",
              "realign.control=false", "evaluate.limit=3", "evaluate.models=[pruned, realigned]", "evaluate.mcq=none",
              "evaluate.ppl_max_tokens=128", "max_length=128"]
    budget = _budget(load_model(str(model)).model)
    runs = {}
    for name, extra in (("plain", []), ("placed", [f"max_memory={budget}", f"offload_folder={tmp_path / 'off'}"])):
        run_pipeline(load_run_config(None, [*common, *extra, f"out={tmp_path / name}"]), progress=False, echo=lambda _m: None)
        runs[name] = tmp_path / name
    plain, placed = runs["plain"], runs["placed"]
    assert len(list((placed / "realigned").glob("model-*.safetensors"))) > 1  # offloaded: saved layer by layer
    assert (plain / "pruned" / "mask.safetensors").read_bytes() == (placed / "pruned" / "mask.safetensors").read_bytes()
    assert (plain / "realigned" / "restored.safetensors").read_bytes() == (placed / "realigned" / "restored.safetensors").read_bytes()
    heads = [json.loads((r / "heads" / "heads.json").read_text())["heads"] for r in (plain, placed)]
    assert heads[0] == heads[1]
    _assert_same_tensors(_saved_weights(plain / "realigned"), _saved_weights(placed / "realigned"))
    for m in ("pruned", "realigned"):
        a, b = (r / "eval" / m for r in (plain, placed))
        assert (a / "generations_harmful.jsonl").read_bytes() == (b / "generations_harmful.jsonl").read_bytes()
        assert json.loads((a / "metrics.json").read_text())["perplexity"] == json.loads((b / "metrics.json").read_text())["perplexity"]
