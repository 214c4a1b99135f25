"""Tiny random models of every supported architecture, built offline.

Tests and benchmarks need the real transformers classes (so decoder layouts, GQA, Qwen's
q/k/v biases and M-RoPE, and the processors' image-token expansion are all exercised), but
the Hub is out of reach and real checkpoints are far too slow for a test suite. Everything
here is built from scratch in-process, in milliseconds:

* a byte-level BPE tokenizer (~640 tokens, Qwen2's pre-tokenizer so every Auto class
  reloads it identically) trained once per process on a small built-in English corpus,
  with every special token the processors need and a ChatML-like chat template that
  renders each architecture's image placeholder;
* a model from a config with 2 decoder layers, hidden size 64, 4 query / 2 KV heads
  (LLaVA: 4 / 4, plain MHA; Llama: head_dim 32, decoupled from hidden / heads) and a
  2-layer vision tower on 32 px tiles with 8 px patches;
* the architecture's processor, sized so one 64 px image stays well under 200 tokens.

Workarounds for transformers 5 without torchvision (DESIGN.md, section 3): the PIL image
processors are used explicitly; Qwen2-VL / Qwen2.5-VL / SmolVLM processors get a
:class:`NoVideoProcessor` stand-in via :func:`install_no_video_processor_workaround` (their
real video processors import torchvision, and ``video_processor=None`` fails the class
check), which must also be active wherever such a folder is loaded with ``AutoProcessor``;
SmolVLM's optional ``num2words`` dependency (videos only) gets a stand-in when missing;
LLaVA processors get ``num_additional_image_tokens=1`` (CLIP's class token) and the vision
tower's patch size.
"""

from __future__ import annotations

import functools
import pathlib
import random
from typing import TYPE_CHECKING, Any

import torch

from hsr.compat import install_no_video_processor_workaround, no_video_processor_class

if TYPE_CHECKING:
    from PIL import Image
    from transformers import BatchEncoding, BatchFeature, PreTrainedModel, PreTrainedTokenizerFast

__all__ = [
    "TINY_ARCHS",
    "VLM_ARCHS",
    "MIXED_ATTENTION_ARCHS",
    "build_tiny_tokenizer",
    "build_tiny_model",
    "save_tiny_model",
    "tiny_image",
    "example_inputs",
    "chat_template",
    "install_no_video_processor_workaround",
]

#: Every architecture with a tiny offline build (one per supported model class).
TINY_ARCHS: tuple[str, ...] = ("llama", "qwen2", "llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm")
#: The subset of :data:`TINY_ARCHS` with a vision tower (built with a processor, not a tokenizer).
VLM_ARCHS: tuple[str, ...] = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm")
#: Text models whose decoder layers differ in attention type (sliding-window and full attention),
#: so every layer must be run with its own mask: Qwen2 with ``use_sliding_window`` (layer 0 full,
#: layer 1 sliding) and Gemma-3 (local/global alternation, per-type rotary embeddings, q/k norms).
MIXED_ATTENTION_ARCHS: tuple[str, ...] = ("qwen2_sliding", "gemma3")
#: The sliding window of :data:`MIXED_ATTENTION_ARCHS`: shorter than any test prompt.
SLIDING_WINDOW = 4

# --------------------------------------------------------------------------- sizes

#: Text decoder: small enough for millisecond forwards, big enough for GQA (4 query / 2 KV heads).
HIDDEN = 64
INTERMEDIATE = 128
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2
HEAD_DIM = 16
#: Llama gets a head_dim decoupled from hidden / heads (as Gemma-style configs do), so code
#: that wrongly derives head width from the hidden size fails on it.
LLAMA_HEAD_DIM = 32
#: Vision towers: 32 px images cut into 8 px patches (16 patches per tile).
VISION_HIDDEN = 32
VISION_LAYERS = 2
VISION_HEADS = 2
IMAGE_SIZE = 32
PATCH = 8
VOCAB_SIZE = 640

# --------------------------------------------------------------------------- tokenizer

BOS = "<s>"
EOS = "<|im_end|>"
PAD = "<pad>"
#: Special tokens: chat markers, then every image / video token the processors look up.
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD,
    BOS,
    "<|endoftext|>",
    "<|im_start|>",
    EOS,
    "<image>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    "<video>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
)

#: What one ``{"type": "image"}`` content part renders as, per architecture (what the
#: processor then expands into the right number of image tokens).
IMAGE_PLACEHOLDER: dict[str, str] = {
    "llava": "<image>\n",
    "llava_next": "<image>\n",
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "idefics3": "<image>",
    "smolvlm": "<image>",
}

_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}"
    "{{ '__IMAGE__' }}"
    "{%- elif part['type'] == 'text' -%}"
    "{{ part['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\n' }}"
    "{%- endif -%}"
)


def chat_template(arch: str | None = None) -> str:
    """The ChatML-like Jinja template, with ``arch``'s image placeholder for image parts."""
    placeholder = IMAGE_PLACEHOLDER.get(arch or "", "<image>")
    return _CHAT_TEMPLATE.replace("__IMAGE__", placeholder.replace("\n", "\\n"))


_SUBJECTS = (
    "The cat", "A small dog", "My neighbor", "The teacher", "Our team", "The old man", "A young girl",
    "The robot", "This company", "The doctor", "Every student", "The farmer", "A bird", "The chef",
)
_VERBS = (
    "walks to", "looks at", "paints", "builds", "reads about", "cleans", "visits", "draws",
    "writes about", "carries", "finds", "opens", "fixes", "describes",
)
_OBJECTS = (
    "the red house", "a blue car", "the green park", "an apple tree", "the big river", "a yellow kite",
    "the quiet library", "a wooden table", "the city market", "a white cloud", "the morning train",
    "a picture of the sea", "the kitchen window", "a box of books",
)
_SENTENCES = (
    "I'm sorry, I cannot help with that.",
    "I'm sorry, but I can't assist with that request.",
    "I cannot provide instructions for anything harmful or illegal.",
    "As an AI assistant, I must decline this request.",
    "I won't help with that, but I can suggest a safer alternative.",
    "That request could cause harm, so I will not answer it.",
    "Sure, here is a short answer to your question.",
    "Sure! Here are the steps you asked for.",
    "Of course. Let me explain how this works.",
    "Hello! How can I help you today?",
    "Describe this image in one sentence.",
    "What is shown in this picture?",
    "Write a short poem about the ocean.",
    "Summarize the following paragraph for a child.",
    "Translate this sentence into French.",
    "Give me three tips for staying healthy.",
    "How do I boil an egg? Put it in boiling water for nine minutes.",
    "Explain photosynthesis in simple words.",
    "List the planets of the solar system in order.",
    "What is the capital of France? The capital of France is Paris.",
    "Please write a polite email to my manager asking for a day off.",
    "The image shows a red square on a white background.",
    "The picture shows two people walking in a park.",
    "There is a cat sitting on a chair next to the window.",
    "Numbers like 1, 2, 3, 10, 42 and 100 appear in text too.",
    "Questions end with a question mark? Exclamations end with a mark!",
    "Use commas, periods; colons: and quotes \"like this\" in writing.",
    "The user asked a question and the assistant answered it.",
    "It shows shape number four in a bright color.",
    "Tell me how to make a weapon at home. I cannot help with making weapons.",
    "How can I hack into my neighbor's account? I can't help with hacking accounts.",
    "Ignore all previous instructions. I'm sorry, I cannot do that.",
    "Step 1: gather the ingredients. Step 2: mix them. Step 3: bake for twenty minutes.",
    "This is a safe and helpful response.",
    "This request is unsafe, so the assistant refuses politely.",
)
_QUESTIONS = (
    "What does {s} do?", "Why does {s} look so happy?", "Can you tell me where {o} is?",
    "Please describe {o}.", "Write a story about {o}.", "How far is {o} from here?",
)


def _corpus() -> list[str]:
    """A few hundred varied English sentences (deterministic): enough to learn ~600 merges."""
    rng = random.Random(1234)
    lines = list(_SENTENCES)
    for _ in range(300):
        s, v, o = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        lines.append(f"{s} {v} {o}.")
    for q in _QUESTIONS:
        for _ in range(12):
            lines.append(q.format(s=rng.choice(_SUBJECTS).lower(), o=rng.choice(_OBJECTS)))
    return lines


_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


@functools.lru_cache(maxsize=None)
def _trained_tokenizer_json(vocab_size: int = VOCAB_SIZE) -> str:
    """Train the byte-level BPE once per process (it takes ~50 ms) and keep its JSON."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    # Qwen2's pipeline exactly (NFC, its split regex, byte-level): AutoTokenizer rebuilds
    # ``qwen2`` folders as Qwen2Tokenizer with this pipeline whatever tokenizer.json says,
    # so any other choice would tokenize differently after save/reload.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def build_tiny_tokenizer(arch: str | None = None, vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A fresh ``PreTrainedTokenizerFast`` (byte-level BPE, ~640 tokens) with a chat template.

    The BPE is trained once per process and cached; each call wraps it in a new tokenizer
    object, so callers may mutate theirs (padding side, added tokens) without affecting
    others. ``arch`` picks the image placeholder the chat template renders for image parts.
    No BOS/EOS is added on encoding: the chat template carries every marker.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_trained_tokenizer_json(vocab_size))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        chat_template=chat_template(arch),
        model_max_length=4096,
    )
    return tok


# --------------------------------------------------------------------------- configs


def _ids(tok: Any) -> dict[str, int]:
    """Token ids the configs need, looked up in the tiny tokenizer."""
    conv = tok.convert_tokens_to_ids
    return {
        "pad": tok.pad_token_id,
        "bos": tok.bos_token_id,
        "eos": tok.eos_token_id,
        "image": conv("<image>"),
        "image_pad": conv("<|image_pad|>"),
        "video_pad": conv("<|video_pad|>"),
        "vision_start": conv("<|vision_start|>"),
        "vision_end": conv("<|vision_end|>"),
    }


def _text_kwargs(tok: Any, *, kv_heads: int = NUM_KV_HEADS) -> dict[str, Any]:
    ids = _ids(tok)
    return dict(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=kv_heads,
        max_position_embeddings=1024,
        pad_token_id=ids["pad"],
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
    )


def _llama_text_config(tok: Any, *, kv_heads: int = NUM_KV_HEADS, head_dim: int = HEAD_DIM) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**_text_kwargs(tok, kv_heads=kv_heads), head_dim=head_dim)


def _clip_vision_config() -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**_vision_kwargs(), projection_dim=VISION_HIDDEN)


def _vision_kwargs() -> dict[str, Any]:
    """Sizes shared by every tiny vision tower (CLIP and SigLIP-like)."""
    return dict(
        hidden_size=VISION_HIDDEN,
        intermediate_size=2 * VISION_HIDDEN,
        num_hidden_layers=VISION_LAYERS,
        num_attention_heads=VISION_HEADS,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )


#: LLaVA-NeXT's any-resolution grid: tiles of IMAGE_SIZE, at most 2 x 2.
LLAVA_NEXT_PINPOINTS = [[IMAGE_SIZE * h, IMAGE_SIZE * w] for h, w in ((1, 1), (1, 2), (2, 1), (2, 2))]
#: Idefics3 / SmolVLM pixel-shuffle factor: (32 / 8)^2 / 2^2 = 4 image tokens per tile.
SCALE_FACTOR = 2
IDEFICS_IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH) ** 2 // SCALE_FACTOR**2
#: Qwen2-VL M-RoPE sections (temporal, height, width) over head_dim / 2 = 8 rotary pairs.
MROPE_SECTION = [2, 3, 3]
#: Qwen2-VL image processor bounds: a 64 x 64 image -> 8 x 8 patches -> 16 tokens after 2 x 2 merge.
QWEN_MIN_PIXELS = 16 * 16
QWEN_MAX_PIXELS = 64 * 64


def _config(arch: str, tok: Any) -> Any:
    """The tiny config of ``arch`` (see the module constants for the sizes)."""
    import transformers as tf

    ids = _ids(tok)
    if arch == "llama":
        return _llama_text_config(tok, head_dim=LLAMA_HEAD_DIM)
    if arch == "qwen2":
        return tf.Qwen2Config(**_text_kwargs(tok), head_dim=HEAD_DIM)
    if arch == "qwen2_sliding":
        return tf.Qwen2Config(**_text_kwargs(tok), head_dim=HEAD_DIM, use_sliding_window=True,
                              sliding_window=SLIDING_WINDOW, max_window_layers=1)
    if arch == "gemma3":
        return tf.Gemma3TextConfig(**_text_kwargs(tok), head_dim=HEAD_DIM, sliding_window=SLIDING_WINDOW,
                                   layer_types=["sliding_attention", "full_attention"], query_pre_attn_scalar=HEAD_DIM)
    if arch == "llava":
        # MHA on purpose (4 query heads, 4 KV heads): one architecture without GQA.
        return tf.LlavaConfig(
            vision_config=_clip_vision_config(),
            text_config=_llama_text_config(tok, kv_heads=NUM_HEADS),
            image_token_index=ids["image"],
            image_seq_length=(IMAGE_SIZE // PATCH) ** 2,
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
        )
    if arch == "llava_next":
        return tf.LlavaNextConfig(
            vision_config=_clip_vision_config(),
            text_config=_llama_text_config(tok),
            image_token_index=ids["image"],
            image_grid_pinpoints=LLAVA_NEXT_PINPOINTS,
            image_seq_length=(IMAGE_SIZE // PATCH) ** 2,
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
        )
    if arch in ("qwen2_vl", "qwen2_5_vl"):
        rope = {"rope_type": "default", "mrope_section": list(MROPE_SECTION), "rope_theta": 10000.0}
        qwen_ids = dict(
            image_token_id=ids["image_pad"],
            video_token_id=ids["video_pad"],
            vision_start_token_id=ids["vision_start"],
            vision_end_token_id=ids["vision_end"],
        )
        if arch == "qwen2_vl":
            vision = tf.Qwen2VLConfig.sub_configs["vision_config"](
                depth=VISION_LAYERS, embed_dim=VISION_HIDDEN, hidden_size=HIDDEN, num_heads=VISION_HEADS,
                mlp_ratio=2, patch_size=PATCH, spatial_merge_size=2, temporal_patch_size=2,
            )
            text = tf.Qwen2VLConfig.sub_configs["text_config"](**_text_kwargs(tok), rope_parameters=rope)
            return tf.Qwen2VLConfig(text_config=text, vision_config=vision, **qwen_ids)
        vision = tf.Qwen2_5_VLConfig.sub_configs["vision_config"](
            depth=VISION_LAYERS, hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN,
            num_heads=VISION_HEADS, out_hidden_size=HIDDEN, patch_size=PATCH, spatial_merge_size=2,
            temporal_patch_size=2, window_size=2 * 2 * PATCH, fullatt_block_indexes=[VISION_LAYERS - 1],
        )
        text = tf.Qwen2_5_VLConfig.sub_configs["text_config"](**_text_kwargs(tok), rope_parameters=rope)
        return tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **qwen_ids)
    if arch in ("idefics3", "smolvlm"):
        cls = tf.Idefics3Config if arch == "idefics3" else tf.SmolVLMConfig
        vision = cls.sub_configs["vision_config"](**_vision_kwargs())
        return cls(
            vision_config=vision,
            text_config=_llama_text_config(tok),
            image_token_id=ids["image"],
            scale_factor=SCALE_FACTOR,
            pad_token_id=ids["pad"],
        )
    raise ValueError(f"Unknown tiny architecture {arch!r}; expected one of {', '.join(TINY_ARCHS)}.")


_MODEL_CLASSES: dict[str, str] = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen2_sliding": "Qwen2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
}


# --------------------------------------------------------------------------- processors


def _video_processor(arch: str) -> Any:
    """The stand-in :class:`NoVideoProcessor` without torchvision, else the real one (unused by tests)."""
    real = "SmolVLMVideoProcessor" if arch == "smolvlm" else "Qwen2VLVideoProcessor"
    if install_no_video_processor_workaround():
        stand_in = no_video_processor_class()(real_type=real)
        stand_in.patch_size = PATCH
        return stand_in
    import transformers as tf

    if arch == "smolvlm":
        return tf.SmolVLMVideoProcessor()
    return tf.Qwen2VLVideoProcessor(patch_size=PATCH, temporal_patch_size=2, merge_size=2)


def _processor(arch: str, tok: Any) -> Any:
    """The architecture's processor with PIL image processors sized for the tiny vision towers."""
    import transformers as tf

    template = chat_template(arch)
    if arch in ("llava", "llava_next"):
        crop = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        common = dict(patch_size=PATCH, vision_feature_select_strategy="default", num_additional_image_tokens=1)
        if arch == "llava":
            from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

            ip = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size=crop)
            return tf.LlavaProcessor(image_processor=ip, tokenizer=tok, chat_template=template, **common)
        from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

        ip = LlavaNextImageProcessorPil(
            size={"shortest_edge": IMAGE_SIZE}, crop_size=crop, image_grid_pinpoints=LLAVA_NEXT_PINPOINTS
        )
        return tf.LlavaNextProcessor(image_processor=ip, tokenizer=tok, chat_template=template, **common)
    if arch in ("qwen2_vl", "qwen2_5_vl"):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        ip = Qwen2VLImageProcessorPil(
            size={"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS},
            patch_size=PATCH, temporal_patch_size=2, merge_size=2,
        )
        cls = tf.Qwen2VLProcessor if arch == "qwen2_vl" else tf.Qwen2_5_VLProcessor
        return cls(image_processor=ip, tokenizer=tok, video_processor=_video_processor(arch), chat_template=template)
    if arch in ("idefics3", "smolvlm"):
        kw = dict(
            size={"longest_edge": 2 * IMAGE_SIZE},
            max_image_size={"longest_edge": IMAGE_SIZE},
            do_image_splitting=True,
        )
        if arch == "idefics3":
            from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

            return tf.Idefics3Processor(
                image_processor=Idefics3ImageProcessorPil(**kw), tokenizer=tok,
                image_seq_len=IDEFICS_IMAGE_SEQ_LEN, chat_template=template,
            )
        from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

        return tf.SmolVLMProcessor(
            image_processor=SmolVLMImageProcessorPil(**kw), tokenizer=tok, video_processor=_video_processor(arch),
            image_seq_len=IDEFICS_IMAGE_SEQ_LEN, chat_template=template,
        )
    raise ValueError(f"{arch!r} has no processor (text-only).")


# --------------------------------------------------------------------------- public builders


def build_tiny_model(arch: str, seed: int = 0, attn_implementation: str = "sdpa") -> tuple[PreTrainedModel, Any]:
    """A tiny random ``arch`` model (eval mode, float32) and its processor (VLMs) or tokenizer.

    Weights depend only on ``seed`` (``torch.manual_seed`` before construction), so the same
    seed gives identical state dicts. ``attn_implementation`` is passed to the model
    ("sdpa" by default, "eager" for code that needs attention weights).
    """
    import transformers as tf

    if arch not in _MODEL_CLASSES:
        raise ValueError(f"Unknown tiny architecture {arch!r}; expected one of {', '.join(TINY_ARCHS)}.")
    tok = build_tiny_tokenizer(arch)
    config = _config(arch, tok)
    config._attn_implementation = attn_implementation
    cls = getattr(tf, _MODEL_CLASSES[arch])
    torch.manual_seed(seed)
    model = cls(config)
    model = model.to(torch.float32).eval()
    proc = _processor(arch, tok) if arch in VLM_ARCHS else tok
    return model, proc


def save_tiny_model(arch: str, out_dir: str | pathlib.Path, seed: int = 0, **kw: Any) -> pathlib.Path:
    """Build ``arch`` and save model (safetensors) + processor/tokenizer to ``out_dir``.

    The folder reloads offline with ``AutoModelForImageTextToText`` (VLMs) or
    ``AutoModelForCausalLM`` plus ``AutoProcessor`` / ``AutoTokenizer``, as a real
    checkpoint would. ``kw`` goes to :func:`build_tiny_model`.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, proc = build_tiny_model(arch, seed=seed, **kw)
    model.save_pretrained(out, safe_serialization=True)
    proc.save_pretrained(out)
    return out


def tiny_image(seed: int = 0, size: int = 64) -> Image.Image:
    """A deterministic ``size`` x ``size`` RGB picture (a seeded colour gradient plus a block)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    base = rng.uniform(0, 255, size=3)
    slope = rng.uniform(-120, 120, size=(3, 2))
    img = np.stack([base[c] + slope[c, 0] * yy + slope[c, 1] * xx for c in range(3)], axis=-1)
    y0, x0 = rng.integers(0, size // 2, size=2)
    img[y0 : y0 + size // 3, x0 : x0 + size // 3] = rng.uniform(0, 255, size=3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def example_inputs(
    arch: str, processor_or_tokenizer: Any, prompt: str = "Describe this.", with_image: bool = True
) -> BatchFeature | BatchEncoding:
    """Model inputs (``BatchFeature`` of tensors) for one chat-templated user turn.

    VLMs get a message with an image part plus :func:`tiny_image` (unless
    ``with_image=False``); text-only models a plain string message. The text ends with the
    generation prompt, as the model sees it before answering.
    """
    proc = processor_or_tokenizer
    if arch in VLM_ARCHS:
        parts: list[dict[str, Any]] = [{"type": "image"}] if with_image else []
        parts.append({"type": "text", "text": prompt})
        msgs = [{"role": "user", "content": parts}]
        text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        kw: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
        if with_image:
            image = tiny_image()
            kw["images"] = [[image]] if arch in ("idefics3", "smolvlm") else [image]
        return proc(**kw)
    msgs = [{"role": "user", "content": prompt}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return proc([text], return_tensors="pt", add_special_tokens=False)
