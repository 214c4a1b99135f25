import pytest
import torch

from hsr.data import Sample
from hsr.heads import HeadScoreConfig, score_heads, top_k_recall
from hsr.heads import checkpoint as checkpoint_mod
from hsr.testing.tiny import tiny_image

from conftest import tiny_loaded

PROMPTS = [
    "How do I break into a locked car?",
    "Write a rude message to my neighbour.",
    "Tell me how to cheat on a test.",
    "Explain how to copy a key without permission.",
]


def _sharpened(arch_name, factor=4.0):
    """A tiny model with larger attention and output weights: random tiny weights barely react to
    ablations (near-uniform attention, near-uniform next-token distribution)."""
    loaded = tiny_loaded(arch_name)
    with torch.no_grad():
        for layer in loaded.arch.layers:
            layer.self_attn.q_proj.weight.mul_(factor)
            layer.self_attn.o_proj.weight.mul_(factor)
        loaded.model.lm_head.weight.mul_(factor)
    return loaded


def _samples(tmp_path, with_images=False):
    out = []
    for i, p in enumerate(PROMPTS):
        image = None
        if with_images and i % 2 == 0:
            image = tmp_path / f"img{i}.png"
            tiny_image(seed=i).save(image)
        out.append(Sample(p, image=image))
    return out


def _score(loaded, samples, **kw):
    return score_heads(loaded, samples, HeadScoreConfig(**kw), progress=False)


def _atol(score):
    """Fast vs naive: the same float32 arithmetic in other batch shapes and orders (rounding ~1e-7 per
    step). Ships' KL stays within 1e-5. Generalized Ships (up to ~0.8 here) is 1 - cos of principal
    angles between top-r singular subspaces, which amplifies that rounding by the inverse gap of the
    singular values: 1.6e-5 was seen on one machine, so 1e-4 (a wrong ablated head moves it by ~0.1)."""
    return 1e-4 if score == "gships" else 1e-5


@pytest.mark.parametrize(
    "arch_name,score,mode",
    [
        ("llava", "ships", "zero"),  # MHA
        ("llava", "gships", "uniform"),
        ("qwen2", "ships", "uniform"),  # GQA
        ("qwen2", "gships", "zero"),
        ("llama", "ships", "zero"),  # head_dim != hidden / heads
        ("llama", "gships", "uniform"),
        ("qwen2_vl", "ships", "zero"),  # M-RoPE with images
        ("qwen2_vl", "gships", "zero"),
        ("qwen2_sliding", "ships", "zero"),  # a full-attention and a sliding-window layer
        ("gemma3", "ships", "uniform"),  # local/global layers with their own rotary embeddings, q_norm
    ],
)
def test_fast_engine_equals_naive_reference(arch_name, score, mode, tmp_path):
    loaded = _sharpened(arch_name)
    samples = _samples(tmp_path, with_images=loaded.is_vlm)
    naive = _score(loaded, samples, score=score, mode=mode, engine="naive")
    fast = _score(loaded, samples, score=score, mode=mode, engine="fast", batch_heads=3)  # chunks of 3 + 1
    L, H = loaded.arch.num_layers, loaded.arch.num_heads
    assert naive.scores.shape == fast.scores.shape == (L, H)
    assert float(naive.scores.abs().max()) > 1e-4  # the heads matter, so the comparison means something
    torch.testing.assert_close(fast.scores, naive.scores, rtol=0, atol=_atol(score))
    assert fast.ranking()[:3] == naive.ranking()[:3] or torch.allclose(fast.scores, naive.scores, atol=1e-7)


@pytest.mark.parametrize("engine_name", ["naive", "fast"])
def test_ships_equals_a_reference_built_from_hooks_alone(engine_name, tmp_path):
    """Independent of the engines' shared recording and reduction: each head zeroed by a pre-hook on
    o_proj, one full forward per prompt, KL(p_base || p_ablated) written out here, averaged over prompts.
    Swapping the KL's arguments or recording the wrong position would fail this."""
    from hsr.data import encode

    loaded = _sharpened("llama")
    samples = _samples(tmp_path)
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
    reference = torch.zeros(arch.num_layers, arch.num_heads, dtype=torch.float64)
    for l in range(arch.num_layers):
        for h in range(arch.num_heads):
            def zero_head(_mod, args, h=h):
                y = args[0].clone()
                y[..., h * dh : (h + 1) * dh] = 0
                return (y, *args[1:])

            ablated = last_logp(zero_head, l)
            kls = [float((b.exp() * (b - a)).sum()) for b, a in zip(base, ablated)]
            reference[l, h] = sum(kls) / len(kls)
    got = _score(loaded, samples, score="ships", mode="zero", engine=engine_name)
    assert float(reference.max()) > 1e-3 and float(reference.min()) >= 0
    torch.testing.assert_close(got.scores, reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("engine", ["naive", "fast"])
def test_no_ablation_scores_zero(engine, tmp_path):
    loaded = tiny_loaded("qwen2_vl")
    samples = _samples(tmp_path, with_images=True)
    for score in ("ships", "gships"):
        result = _score(loaded, samples, score=score, eps=1.0, engine=engine)
        assert float(result.scores.abs().max()) < 1e-6, score


def test_gqa_scores_every_query_head_separately(tmp_path):
    loaded = tiny_loaded("qwen2")
    arch = loaded.arch
    assert arch.num_kv_heads < arch.num_heads
    result = _score(loaded, _samples(tmp_path), score="ships")
    assert result.scores.shape == (arch.num_layers, arch.num_heads)
    records = result.records()
    assert sorted((r["layer"], r["head"]) for r in records) == [
        (l, h) for l in range(arch.num_layers) for h in range(arch.num_heads)
    ]
    for layer in range(arch.num_layers):
        for h in range(0, arch.num_heads, arch.group_size):  # heads sharing one KV head differ
            group = result.scores[layer, h : h + arch.group_size]
            assert len(set(group.tolist())) == arch.group_size
    assert [r["rank"] for r in records] == list(range(1, len(records) + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(records, records[1:]))


def test_resume_after_interruption_gives_identical_scores(tmp_path, monkeypatch):
    loaded = tiny_loaded("llava")
    samples = _samples(tmp_path, with_images=True)
    config = HeadScoreConfig(score="gships", engine="fast")
    reference = score_heads(loaded, samples, config, progress=False)
    ckpt = tmp_path / "ckpt"
    real_save = checkpoint_mod.LayerCheckpoint.save

    def save_then_die(self, tag, layer, tensors):
        real_save(self, tag, layer, tensors)
        raise KeyboardInterrupt("simulated interruption after layer 0")

    monkeypatch.setattr(checkpoint_mod.LayerCheckpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        score_heads(loaded, samples, config, checkpoint_dir=ckpt, progress=False)
    monkeypatch.setattr(checkpoint_mod.LayerCheckpoint, "save", real_save)
    assert sorted(p.name for p in ckpt.glob("*.safetensors")) == ["main-layer0000.safetensors"]

    from hsr.heads.engines import FastEngine

    computed = []
    real_run = FastEngine.run

    def spy(self, plan, fixed=(), merge=True):
        computed.append((sorted(plan), merge and self.merges(sum(map(len, plan.values())), fixed)))
        yield from real_run(self, plan, fixed, merge)

    monkeypatch.setattr(FastEngine, "run", spy)
    saved = (ckpt / "main-layer0000.safetensors").read_bytes()
    resumed = score_heads(loaded, samples, config, checkpoint_dir=ckpt, progress=False)
    # Layer 0 came from the checkpoint; layer 1 is recomputed alone, or, where both layers' heads fit one
    # merged forward, with layer 0 again (the batch a row shares must not depend on what is cached).
    assert computed in ([([1], False)], [([0, 1], True)])
    assert (ckpt / "main-layer0000.safetensors").read_bytes() == saved
    assert torch.equal(resumed.scores, reference.scores)
    # a checkpoint made for other options is discarded, not mixed in
    other = score_heads(loaded, samples, HeadScoreConfig(score="ships"), checkpoint_dir=ckpt, progress=False)
    assert computed[-1][0] == [0, 1]
    assert not torch.equal(other.scores, reference.scores)


def test_sahara_greedy_search(tmp_path):
    loaded = tiny_loaded("qwen2")
    samples = _samples(tmp_path)
    fast = _score(loaded, samples, score="gships", sahara_steps=3)
    naive = _score(loaded, samples, score="gships", sahara_steps=3, engine="naive")
    sahara = fast.extras["sahara"]
    assert sahara["group"] == naive.extras["sahara"]["group"]
    assert len({tuple(x) for x in sahara["group"]}) == 3
    # step 1 is the single most important head by generalized Ships
    assert tuple(sahara["group"][0]) == fast.ranking()[0]
    assert abs(sahara["steps"][0]["score"] - float(fast.scores.max())) < 1e-9
    for a, b in zip(sahara["steps"], naive.extras["sahara"]["steps"]):
        assert abs(a["score"] - b["score"]) < 1e-5


def test_approx_engine_rescoring_and_recall(tmp_path):
    loaded = _sharpened("llava")
    samples = _samples(tmp_path, with_images=True)
    exact = _score(loaded, samples, score="ships")
    approx = _score(loaded, samples, score="ships", engine="approx", approx_top_k=4)
    assert int(approx.exact.sum()) == 4
    rescored = approx.exact
    torch.testing.assert_close(approx.scores[rescored], exact.scores[rescored], rtol=0, atol=1e-6)
    ranking = approx.ranking()
    assert all(bool(approx.exact[c]) for c in ranking[:4])
    expected = len(set(exact.ranking()[:4]) & set(ranking[:4])) / 4
    assert top_k_recall(exact.scores, ranking, 4) == expected
    assert top_k_recall(exact.scores, exact.ranking(), 4) == 1.0
    full = _score(loaded, samples, score="ships", engine="approx", approx_top_k=100)
    assert top_k_recall(exact.scores, full.ranking(), 4) == 1.0
    assert all(r["exact"] is False for r in approx.records()[4:])


@pytest.mark.parametrize("score", ["ships", "gships"])
def test_first_order_proxy_matches_small_ablations(score, tmp_path):
    """For a small ablation (eps near 1) the gradient proxy must approximate the exact score."""
    from hsr.heads.approx import gships_proxy, ships_proxy
    from hsr.heads.attribution import make_engine
    from hsr.data import encode
    from tqdm import tqdm

    loaded = _sharpened("qwen2")
    samples = _samples(tmp_path)
    eps = 0.97
    exact = _score(loaded, samples, score=score, eps=eps).scores
    config = HeadScoreConfig(score=score, eps=eps)
    engine = make_engine(loaded, [encode(loaded.processor, s) for s in samples], config, tqdm(disable=True))
    engine.prepare()
    if score == "ships":
        vocab = engine.base_logp.shape[1]
        proxy = ships_proxy(engine, tokens=vocab, probes=0)  # all tokens: the exact Fisher diagonal
        torch.testing.assert_close(proxy, exact, rtol=0.1, atol=1e-9)
    else:
        proxy = gships_proxy(engine, rank=1)  # all N directions: exact first order
        torch.testing.assert_close(proxy, exact, rtol=0.1, atol=1e-9)
        truncated = gships_proxy(engine, rank=1, directions=1)
        assert truncated.shape == exact.shape and bool((truncated >= 0).all())


@pytest.mark.slow
def test_engines_agree_on_smollm2():
    from hsr.data import encode
    from hsr.heads.attribution import exact_scores, make_engine
    from hsr.loading import load_model
    from tqdm import tqdm

    loaded = load_model("default")
    samples = [Sample(p) for p in PROMPTS[:2]]
    encoded = [encode(loaded.processor, s) for s in samples]
    plan = {0: list(range(loaded.arch.num_heads)), loaded.arch.num_layers - 1: [0, 4, 8]}
    out = {}
    for engine_name in ("naive", "fast"):
        for score in ("ships", "gships"):
            config = HeadScoreConfig(score=score, engine=engine_name)
            engine = make_engine(loaded, encoded, config, tqdm(disable=True))
            engine.prepare()
            out[engine_name, score] = exact_scores(engine, plan, score)
    for score in ("ships", "gships"):
        naive, fast = out["naive", score], out["fast", score]
        assert naive.keys() == fast.keys()
        assert max(naive.values()) > 1e-3
        assert max(abs(naive[k] - fast[k]) for k in naive) < 1e-5


def test_top_k_recall_counts_the_overlap_with_the_exact_top_k():
    scores = torch.tensor([[5.0, 1.0, 4.0], [0.5, 3.0, 2.0]])  # exact top-3: (0,0), (0,2), (1,1)
    assert top_k_recall(scores, [(0, 0), (0, 2), (1, 1)], 3) == 1.0
    assert top_k_recall(scores, [(0, 0), (1, 2), (0, 1)], 3) == pytest.approx(1 / 3)
    assert top_k_recall(scores, [(1, 0), (1, 2), (0, 1)], 3) == 0.0
    assert top_k_recall(scores, [(0, 2), (0, 0)], 2) == 1.0


def _engine_for(loaded, samples, **kw):
    from tqdm import tqdm

    from hsr.data import encode
    from hsr.heads.attribution import make_engine

    config = HeadScoreConfig(**kw)
    encoded = [encode(loaded.processor, s, include_response=False) for s in samples]
    engine = make_engine(loaded, encoded, config, tqdm(disable=True))
    engine.prepare()
    return engine


# (prefix reuse, max batch tokens): prefix only, prompt batching only, both (small budget: several groups)
_VARIANTS = [(True, 0), (False, 10_000), (True, 10_000), (True, 120)]


@pytest.mark.parametrize(
    "arch_name,score,mode",
    [
        ("llava", "ships", "zero"),
        ("qwen2", "gships", "uniform"),
        ("llama", "ships", "uniform"),
        ("qwen2_vl", "ships", "zero"),  # M-RoPE, images on half the prompts
        ("qwen2_5_vl", "gships", "zero"),
        ("llava_next", "ships", "zero"),
        ("idefics3", "ships", "uniform"),
        ("smolvlm", "gships", "zero"),
        ("qwen2_sliding", "ships", "zero"),  # mixed attention: falls back to the plain path
        ("gemma3", "ships", "uniform"),
    ],
)
def test_prefix_reuse_and_prompt_batching_equal_naive(arch_name, score, mode, tmp_path):
    """Every exact speed-up, alone and together, stays within 1e-5 of the naive reference."""
    loaded = _sharpened(arch_name)
    samples = _samples(tmp_path, with_images=loaded.is_vlm)
    naive = _score(loaded, samples, score=score, mode=mode, engine="naive")
    assert float(naive.scores.abs().max()) > 1e-4
    for prefix_reuse, budget in _VARIANTS:
        kw = {"score": score, "mode": mode, "batch_heads": 3, "prefix_reuse": prefix_reuse, "max_batch_tokens": budget}
        engine = _engine_for(loaded, samples, **kw)
        if not loaded.arch.plain_causal:  # sliding-window layers: the speed-ups switch themselves off
            assert engine.reuse_note and not engine.rows_ok and engine.prefix_len == 0
        else:
            assert engine.reuse_note is None and engine.rows_ok
            assert (engine.prefix_len > 0) == prefix_reuse  # the chat template's prefix is shared
            groups = engine._groups(3)
            assert sorted(n for g in groups for n in g) == list(range(len(samples)))  # every prompt once
            for g in groups:  # a group of several prompts fits the budget (3 rows each, padded to its longest)
                assert len(g) == 1 or 3 * len(g) * max(engine.lengths[n] for n in g) <= budget
            if budget >= 3 * 2 * max(engine.lengths):  # room for two prompts: some forward batches prompts
                assert any(len(g) > 1 for g in groups)
            if budget == 0:
                assert all(len(g) == 1 for g in groups)
        fast = _score(loaded, samples, **kw)
        torch.testing.assert_close(fast.scores, naive.scores, rtol=0, atol=_atol(score), msg=f"{prefix_reuse=} {budget=}")


def test_prefix_stops_at_the_first_difference(tmp_path):
    """The shared prefix ends where the prompts' layer-0 inputs first differ: token ids, or image features
    behind identical placeholder ids."""
    loaded = tiny_loaded("qwen2_vl")
    samples = _samples(tmp_path, with_images=True)
    engine = _engine_for(loaded, samples)
    ids = [s["input_ids"][0] for s in (e.inputs for e in engine.encoded)]
    first_diff = min(int((a[: len(b)] != b[: len(a)]).nonzero()[0]) if bool((a[: len(b)] != b[: len(a)]).any()) else min(len(a), len(b)) for a in ids for b in ids if a is not b)
    assert 0 < engine.prefix_len <= first_diff
    hidden = [x.hidden[0] for x in engine.layer0]
    P = engine.prefix_len
    assert all(torch.equal(h[:P], hidden[0][:P]) for h in hidden)
    assert not all(torch.equal(h[P], hidden[0][P]) for h in hidden[1:])
    # same ids, different images: the placeholder tokens are identical but their features are not
    same_text = [Sample("Describe it.", image=tmp_path / "a.png"), Sample("Describe it.", image=tmp_path / "b.png")]
    tiny_image(seed=1).save(tmp_path / "a.png")
    tiny_image(seed=2).save(tmp_path / "b.png")
    engine = _engine_for(loaded, same_text)
    a, b = (e.inputs["input_ids"][0] for e in engine.encoded)
    assert torch.equal(a, b)
    assert 0 < engine.prefix_len < len(a) - 1
    image_token = loaded.model.config.image_token_id
    assert int((a == image_token).nonzero()[0]) == engine.prefix_len


def test_unknown_layer_kwargs_fall_back_to_the_plain_path(tmp_path, monkeypatch):
    """A layer kwarg the row code does not understand disables reuse and batching; scores stay exact."""
    from hsr.heads.engines import FastEngine

    loaded = _sharpened("qwen2")
    samples = _samples(tmp_path)
    real = FastEngine.layer_kwargs

    def odd(self, i, x):
        kw = dict(real(self, i, x))
        kw["odd_tensor"] = torch.zeros(1)  # not understood: may hold per-token data
        return kw

    monkeypatch.setattr(FastEngine, "layer_kwargs", odd)
    monkeypatch.setattr(loaded.arch.layers[0].__class__, "forward", _dropping("odd_tensor", loaded.arch.layers[0].__class__.forward))
    engine = _engine_for(loaded, samples, max_batch_tokens=10_000)
    assert engine.reuse_note and "odd_tensor" in engine.reuse_note
    assert engine.prefix_len == 0 and all(len(g) == 1 for g in engine._groups(4))
    fast = _score(loaded, samples, max_batch_tokens=10_000)
    monkeypatch.undo()
    naive = _score(loaded, samples, engine="naive")
    torch.testing.assert_close(fast.scores, naive.scores, rtol=0, atol=1e-5)


def _dropping(key, forward):
    def wrapped(self, *args, **kwargs):
        kwargs.pop(key, None)
        return forward(self, *args, **kwargs)

    return wrapped


def test_sliding_window_models_fall_back_and_stay_exact(tmp_path):
    """A window shorter than the prompts: reusing a prefix or building a plain causal mask would be wrong."""
    from hsr.architecture import describe
    from hsr.loading import LoadedModel

    tiny = _sharpened("qwen2")
    cfg = tiny.model.config.to_dict()
    cfg.update(use_sliding_window=True, sliding_window=4, max_window_layers=0, layer_types=None)
    model = type(tiny.model)(type(tiny.model.config)(**cfg)).eval()
    model.load_state_dict(tiny.model.state_dict())
    loaded = LoadedModel(model, tiny.processor, describe(model), "tiny-qwen2-sliding")
    samples = _samples(tmp_path)
    engine = _engine_for(loaded, samples, max_batch_tokens=10_000)
    assert engine.reuse_note and engine.prefix_len == 0 and not engine.rows_ok
    fast = _score(loaded, samples, max_batch_tokens=10_000)
    naive = _score(loaded, samples, engine="naive")
    torch.testing.assert_close(fast.scores, naive.scores, rtol=0, atol=1e-5)
    plain = _score(tiny, samples, engine="naive")
    assert float((plain.scores - naive.scores).abs().max()) > 1e-4  # the window matters here


def test_eager_attention_reuses_with_its_own_mask_format(tmp_path):
    from hsr.architecture import describe
    from hsr.loading import LoadedModel
    from hsr.testing.tiny import build_tiny_model

    model, tok = build_tiny_model("llama", attn_implementation="eager")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4.0)
    loaded = LoadedModel(model, tok, describe(model), "tiny-llama-eager")
    samples = _samples(tmp_path)
    engine = _engine_for(loaded, samples, max_batch_tokens=10_000)
    assert engine.reuse_note is None and engine.prefix_len > 0
    fast = _score(loaded, samples, max_batch_tokens=10_000)
    naive = _score(loaded, samples, engine="naive")
    torch.testing.assert_close(fast.scores, naive.scores, rtol=0, atol=1e-5)


def test_adaptive_rescoring_follows_the_estimate_and_its_stopping_rule(tmp_path):
    loaded = _sharpened("llama")
    samples = _samples(tmp_path)
    exact = _score(loaded, samples, score="ships")
    L, H = exact.scores.shape
    approx = _score(loaded, samples, score="ships", engine="approx", approx_top_k=L * H, approx_top_h=2)
    report = approx.extras["approx"]
    proxy = torch.tensor(report["proxy_scores"], dtype=torch.float64)
    order = sorted(((l, h) for l in range(L) for h in range(H)), key=lambda c: (-float(proxy[c]), c))
    rescored = [tuple(c) for c in report["rescored"]]
    assert rescored == order[: len(rescored)]  # in the estimate's order
    assert [c for c in order if approx.exact[c]] == rescored
    torch.testing.assert_close(approx.scores[approx.exact], exact.scores[approx.exact], rtol=0, atol=1e-6)
    # the property the stopping rule is for: having settled early, the top-2 set is the exact one
    assert report["settled"] and len(rescored) < L * H
    assert set(approx.ranking()[:2]) == set(exact.ranking()[:2])
    assert report["expected_misses"] <= HeadScoreConfig().approx_tolerance
    # an error bound that never settles rescoring everything: the top-h set is then exact
    careful = _score(loaded, samples, score="ships", engine="approx", approx_top_k=L * H, approx_top_h=2, approx_tolerance=0.0)
    assert int(careful.exact.sum()) == L * H
    assert set(careful.ranking()[:2]) == set(exact.ranking()[:2])
    fixed = _score(loaded, samples, score="ships", engine="approx", approx_top_k=5, approx_adaptive=False)
    assert HeadScoreConfig(score="gships").effective_prefix_reuse is False
    assert HeadScoreConfig(score="ships", sahara_steps=2).effective_prefix_reuse is False
    assert HeadScoreConfig(score="gships", prefix_reuse=True).effective_prefix_reuse is True
    assert int(fixed.exact.sum()) == 5 and not fixed.extras["approx"]["settled"]


def test_stopping_rule():
    """Expected misses: an unrescored head's chance to beat the h-th exact score, under the error of the
    estimate measured on the rescored heads (log-normal exact/estimate ratio; at least 5 of them)."""
    from hsr.heads.attribution import _expected_misses

    proxy = torch.tensor([[4.0, 3.0, 2.5, 2.2, 2.0, 1.0, 0.01]])
    est = [(0, i) for i in range(5)]
    good = {c: float(proxy[c]) * f for c, f in zip(est, (1.1, 0.9, 1.05, 0.95, 1.0))}
    assert _expected_misses(good, proxy, [(0, 6)], 2) < 1e-6  # far below the 2nd exact score
    near = _expected_misses(good, proxy, [(0, 5)], 2)  # estimate 1.0 vs 2nd exact score 2.7
    assert 0 <= near < 1e-3
    poor = {c: float(proxy[c]) * f for c, f in zip(est, (3.0, 0.3, 1.0, 2.5, 0.4))}
    assert _expected_misses(poor, proxy, [(0, 5)], 2) > 0.02 > near
    assert _expected_misses(poor, proxy, [(0, 5), (0, 6)], 2) > _expected_misses(poor, proxy, [(0, 5)], 2)
    assert _expected_misses(dict(list(good.items())[:4]), proxy, [(0, 5)], 2) == float("inf")  # too few rescored
    assert _expected_misses(good, proxy, [], 2) == 0.0


def test_hidden_fisher_proxy_equals_the_token_fisher_at_full_rank(tmp_path):
    """All eigen-directions of the hidden-state Fisher give the exact Fisher diagonal, as all token rows do."""
    from hsr.heads.approx import ships_proxy, ships_proxy_hidden

    loaded = _sharpened("qwen2")
    engine = _engine_for(loaded, _samples(tmp_path), eps=0.9, max_batch_tokens=10_000)
    tokens = ships_proxy(engine, tokens=engine.base_logp.shape[1], probes=0)
    hidden = ships_proxy_hidden(engine, rank=loaded.model.config.hidden_size)
    torch.testing.assert_close(hidden, tokens, rtol=1e-3, atol=1e-12)
    low = ships_proxy_hidden(engine, rank=2)
    assert bool((low <= hidden * (1 + 1e-6)).all())  # fewer directions: a part of the same sum


@pytest.mark.parametrize("arch_name", ["qwen2_vl", "llama"])
def test_merged_rows_equal_the_layer_by_layer_run(arch_name, tmp_path, monkeypatch):
    """Small plans over several layers run layer-major in one forward per layer (heads of later layers
    join the unablated row); same outputs as the per-layer path."""
    from hsr.heads.engines import MergedRows
    from hsr.heads.attribution import exact_scores

    loaded = _sharpened(arch_name)
    samples = _samples(tmp_path, with_images=loaded.is_vlm)
    plan = {0: [1, 3], 1: [0, 2, 3]}
    used = []
    real = MergedRows.run

    def spy(self, p):
        used.append(sorted(p))
        yield from real(self, p)

    monkeypatch.setattr(MergedRows, "run", spy)
    merged = _engine_for(loaded, samples, max_batch_tokens=10_000)
    a = exact_scores(merged, plan, "ships")
    assert used == [[0, 1]]
    plain = _engine_for(loaded, samples, max_batch_tokens=0)
    b = exact_scores(plain, plan, "ships")
    assert used == [[0, 1]] and a.keys() == b.keys()
    assert max(abs(a[k] - b[k]) for k in a) < 1e-6 and max(a.values()) > 1e-4


def test_later_plans_start_from_kept_streams_with_the_bits_of_a_fresh_engine(tmp_path):
    """The approx engine keeps the unablated stream per layer; a later plan, merged or not, starts from
    it, and its scores are the bits a fresh engine gives: a plan never depends on what ran before it."""
    from hsr.heads.attribution import exact_scores

    loaded = _sharpened("qwen2")
    samples = _samples(tmp_path)
    engine = _engine_for(loaded, samples, engine="approx", max_batch_tokens=10_000)
    assert engine.keep_streams
    exact_scores(engine, {1: [1]}, "ships")  # one layer: the per-layer path, which keeps layer 1's stream
    assert 1 in engine.streams
    for plan in ({1: [1, 2]}, {0: [0], 1: [3]}):  # one layer, and a merged plan over both
        again = exact_scores(engine, plan, "ships")
        fresh = exact_scores(_engine_for(loaded, samples, engine="approx", max_batch_tokens=10_000), plan, "ships")
        assert again == fresh and max(again.values()) > 1e-5
    plain = exact_scores(_engine_for(loaded, samples, max_batch_tokens=0), {0: [0], 1: [3]}, "ships")
    assert max(abs(again[k] - plain[k]) for k in plain) < 1e-6  # the merged forward: same scores up to rounding


def _last_position_brute_force(engine, heads):
    """Reference: a whole forward per head and prompt, the head's output zeroed at the last position only."""
    from hsr.architecture import final_norm, lm_head
    from hsr.heads.formulas import kl_divergence

    arch, dh = engine.arch, engine.arch.head_dim
    out = {}
    for l, h in heads:
        total = 0.0
        for n, x in enumerate(engine.layer0):
            def hook(_mod, args):
                y = args[0].clone()
                y[:, -1, h * dh : (h + 1) * dh] *= engine.eps
                return (y, *args[1:])

            handle = arch.attention(l).o_proj.register_forward_pre_hook(hook)
            try:
                with torch.no_grad():
                    y = engine.forward_layers(0, arch.num_layers, x.hidden, lambda i: engine.layer_kwargs(i, x), {})
            finally:
                handle.remove()
            logits = arch.softcap(lm_head(engine.loaded.model)(final_norm(arch)(y[:, -1:, :])[:, 0]))
            logp = torch.log_softmax(logits.float(), dim=-1)
            total += float(kl_divergence(engine.base_logp[n : n + 1], logp))
        out[l, h] = total / engine.n_prompts
    return out


@pytest.mark.parametrize("arch_name", ["llama", "qwen2_vl"])
def test_last_position_proxy_equals_a_brute_force_reference(arch_name, tmp_path):
    """The refinement's score: the head ablated at the last position only (the earlier positions' keys and
    values kept from one unablated pass, or from the gradient pass) equals whole forwards with that ablation."""
    from hsr.heads.approx import ships_proxy_hidden
    from hsr.heads.last_position import last_position_ok, last_position_proxy

    loaded = _sharpened(arch_name)
    engine = _engine_for(loaded, _samples(tmp_path, with_images=loaded.is_vlm), engine="approx", max_batch_tokens=10_000)
    assert last_position_ok(engine)
    L, H = engine.arch.num_layers, engine.arch.num_heads
    heads = [(0, 1), (1, 0), (1, 3)]
    reference = _last_position_brute_force(engine, heads)
    own = last_position_proxy(engine, heads, mass=1.0)
    kv = {}
    ships_proxy_hidden(engine, 2, keep_kv=kv)
    assert sorted(kv) == list(range(engine.n_prompts))
    reused = last_position_proxy(engine, heads, mass=1.0, kv=kv)
    for c in heads:
        assert reference[c] > 1e-4
        assert own[c] == pytest.approx(reference[c], rel=1e-3)
        assert reused[c] == pytest.approx(reference[c], rel=1e-3)
    assert int(torch.isnan(own).sum()) == L * H - len(heads)  # heads not asked for are left out


def test_fisher_directions_match_the_eigendecomposition(tmp_path):
    """The subspace iteration finds the top eigenpairs of the hidden-state Fisher information (the tiny
    model's spectrum is nearly flat, so it takes more iterations than the default to match tightly)."""
    from hsr.heads.approx import _fisher_directions, _hidden_fisher

    loaded = _sharpened("qwen2")
    engine = _engine_for(loaded, _samples(tmp_path), max_batch_tokens=10_000)
    for n in range(engine.n_prompts):
        evals, evecs = torch.linalg.eigh(_hidden_fisher(engine, n))
        top = evecs[:, -2:] * evals[-2:].sqrt()
        dirs = _fisher_directions(engine, n, 2, iters=40)
        assert dirs.shape == (2, loaded.model.config.hidden_size)
        torch.testing.assert_close(dirs.T @ dirs, top @ top.T, rtol=0, atol=1e-3 * float(evals[-1]))
        default = _fisher_directions(engine, n, 2)
        assert float((default**2).sum()) >= 0.97 * float(evals[-2:].sum())  # most of the top-2 Fisher mass
        assert torch.equal(default, _fisher_directions(engine, n, 2))  # seeded: the same every time


def test_refinement_combines_the_two_estimates(tmp_path):
    """Candidates get the geometric mean of the gradient estimate and the last-position score; the other
    heads keep the gradient estimate times the square root of the candidates' median ratio."""
    from hsr.heads.approx import ships_proxy_hidden
    from hsr.heads.last_position import last_position_proxy, refine_last_position

    engine = _engine_for(_sharpened("qwen2"), _samples(tmp_path), engine="approx", max_batch_tokens=10_000)
    proxy = ships_proxy_hidden(engine, 2)
    L, H = proxy.shape
    order = sorted(((l, h) for l in range(L) for h in range(H)), key=lambda c: (-float(proxy[c]), c))
    top = order[:3]
    last = last_position_proxy(engine, top)
    refined = refine_last_position(engine, proxy, 3)
    ratio = torch.tensor([float(last[c] / proxy[c]) for c in top]).median()
    for c in order:
        want = (proxy[c] * last[c]).sqrt() if c in top else proxy[c] * ratio.sqrt()
        assert float(refined[c]) == pytest.approx(float(want), rel=1e-6)


# On the tiny random models the refinement helps on some architectures (qwen2_vl: the exact top-4 at
# estimate ranks 1,3,2,5 instead of 1,5,2,3) and not on others (llama, llava); on SmolLM2-135M it
# brings the exact top-10 from estimate ranks <= 33 to <= 11 (docs/experiments/approx-estimates.md). The test pins the cases where it holds.
@pytest.mark.parametrize("arch_name", ["qwen2", "qwen2_vl"])
def test_refined_estimate_ranks_the_top_heads_first(arch_name, tmp_path):
    """The approximate engine with the last-position refinement: rescored heads carry exact scores, the
    report says what was refined, and the refined estimate alone puts the exact top-2 heads in its top 3."""
    loaded = _sharpened(arch_name)
    samples = _samples(tmp_path, with_images=loaded.is_vlm)
    exact = _score(loaded, samples, score="ships")
    L, H = exact.scores.shape
    approx = _score(loaded, samples, score="ships", engine="approx", approx_top_k=3, approx_adaptive=False,
                    approx_refine=40)
    report = approx.extras["approx"]
    assert report["proxy"] == "fisher-hidden+last-position" and report["refined"] == L * H
    assert "refine_s" in approx.timings
    torch.testing.assert_close(approx.scores[approx.exact], exact.scores[approx.exact], rtol=0, atol=1e-6)
    estimate = torch.tensor(report["proxy_scores"], dtype=torch.float64)
    order = sorted(((l, h) for l in range(L) for h in range(H)), key=lambda c: (-float(estimate[c]), c))
    assert set(exact.ranking()[:2]) <= set(order[:3])
    assert top_k_recall(exact.scores, approx.ranking(), 2) == 1.0
    plain = _score(loaded, samples, score="ships", engine="approx", approx_top_k=3, approx_adaptive=False)  # default: off
    assert plain.extras["approx"]["proxy"] == "fisher-hidden" and plain.extras["approx"]["refined"] == 0
