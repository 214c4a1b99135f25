"""The one place that knows model architectures.

Everything else asks :func:`describe` where the language-model decoder layers live, which
linears they hold, how many query / key-value heads there are and how wide a head is, and
which modules belong to the vision side (never pruned, never realigned).
Layouts are probed rather than hard-coded, because transformers moved them between
major versions (LLaVA's layers sat at ``language_model.model.layers`` in 4.x).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import HsrError

#: Architectures tested end to end (tiny random builds of each run in the test suite).
SUPPORTED_ARCHITECTURES: tuple[str, ...] = (
    "LlavaForConditionalGeneration",
    "LlavaNextForConditionalGeneration",
    "Qwen2VLForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration",
    "Idefics3ForConditionalGeneration",
    "SmolVLMForConditionalGeneration",
    "LlamaForCausalLM",
    "Qwen2ForCausalLM",
    "Gemma3ForCausalLM",
)

#: Where the text decoder (a module with ``.layers``) may live, most specific first.
_TEXT_MODEL_PATHS: tuple[str, ...] = (
    "model.language_model",  # LLaVA, LLaVA-NeXT, Qwen2(.5)-VL in transformers 5
    "model.text_model",  # Idefics3, SmolVLM
    "language_model.model",  # LLaVA in transformers 4
    "model",  # Llama, Qwen2 and most causal LMs
    "language_model",
)

#: Modules of the vision side, left alone by every stage.
_VISION_PATHS: tuple[str, ...] = (
    "model.vision_tower",
    "model.multi_modal_projector",
    "model.visual",
    "model.vision_model",
    "model.connector",
    "vision_tower",
    "multi_modal_projector",
    "visual",
    "model.image_newline",
)

#: Text model types whose ``q_norm`` runs on queries already laid out ``[B, H, T, d]`` (after the
#: head transpose); others (Qwen3, ...) normalize ``[B, T, H, d]`` before it.
_QUERY_NORM_HEADS_FIRST = frozenset({"gemma3_text", "gemma3n_text"})

#: Processor classes (name prefixes) that take one list of images per text instead of a flat list.
_NESTED_IMAGE_PROCESSORS: tuple[str, ...] = ("Idefics3", "SmolVLM")

ATTENTION_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")


class UnsupportedArchitectureError(HsrError, ValueError):
    """The model's layout is not one hsr knows how to handle."""


@dataclass(frozen=True)
class HeadGeometry:
    """Head counts and width of one attention block: the facts every head slice is computed from.

    Pure data, so the slice arithmetic can be tested without a model; :attr:`ArchInfo.geometry`
    gives a model's.
    """

    num_heads: int
    num_kv_heads: int
    head_dim: int

    @classmethod
    def from_arch(cls, arch: "ArchInfo") -> "HeadGeometry":
        return arch.geometry

    @property
    def group_size(self) -> int:
        """Query heads sharing one key/value head (GQA group size G = H / K)."""
        return self.num_heads // self.num_kv_heads

    def kv_head_of(self, head: int) -> int:
        """The key/value head that query head ``head`` reads from."""
        return head // self.group_size

    def check_head(self, head: int) -> None:
        if not 0 <= head < self.num_heads:
            raise ValueError(f"head {head} out of range [0, {self.num_heads})")


@dataclass(frozen=True)
class QueryPoint:
    """Where a layer's queries are final before attention (the module whose output to scale for
    uniform-attention ablation) and how that output is laid out."""

    module: nn.Module
    heads_first: bool  # output is [B, H, T, d] instead of [B, T, H*d] / [B, T, H, d]


@dataclass
class ArchInfo:
    """What hsr needs to know about a model, found by probing it once."""

    class_name: str
    text_model: nn.Module
    text_model_path: str
    layers: nn.ModuleList
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    is_vlm: bool
    vision_paths: list[str] = field(default_factory=list)
    model_type: str = ""  # the text config's model_type
    logit_softcap: float | None = None  # final_logit_softcapping (Gemma-2 style), applied after lm_head
    #: Per decoder layer: "full_attention", "sliding_attention", ... (config.layer_types, or derived
    #: from a sliding window when the config has none).
    attention_types: tuple[str, ...] = ()
    attn_implementation: str = "eager"  # sdpa, eager, flash_attention_2, ...

    @property
    def plain_causal(self) -> bool:
        """Every layer attends causally to all earlier tokens (no sliding windows, no local layers)."""
        return all(t == "full_attention" for t in self.attention_types)

    @property
    def geometry(self) -> HeadGeometry:
        return HeadGeometry(self.num_heads, self.num_kv_heads, self.head_dim)

    @property
    def group_size(self) -> int:
        """Query heads sharing one key/value head (GQA group size G = H / K)."""
        return self.geometry.group_size

    @property
    def layers_path(self) -> str:
        return f"{self.text_model_path}.layers"

    def kv_head_of(self, head: int) -> int:
        """The key/value head that query head ``head`` reads from."""
        return self.geometry.kv_head_of(head)

    def attention(self, layer_idx: int) -> nn.Module:
        return self.layers[layer_idx].self_attn

    def query_point(self, layer_idx: int) -> QueryPoint:
        """``q_norm`` when the layer has one (scaling before a per-head norm would be undone by it),
        else ``q_proj``."""
        attn = self.attention(layer_idx)
        q_norm = getattr(attn, "q_norm", None)
        if isinstance(q_norm, nn.Module):
            return QueryPoint(q_norm, self.model_type in _QUERY_NORM_HEADS_FIRST)
        return QueryPoint(attn.q_proj, False)

    def softcap(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's final logit soft-capping (``cap * tanh(logits / cap)``), if it has one."""
        cap = self.logit_softcap
        return torch.tanh(logits / cap) * cap if cap else logits

    def linear_names(self, include_mlp: bool = True) -> tuple[str, ...]:
        """Relative names (inside a decoder layer) of the linears hsr works on."""
        attn = tuple(f"self_attn.{p}" for p in ATTENTION_PROJECTIONS)
        return attn + tuple(f"mlp.{p}" for p in MLP_PROJECTIONS) if include_mlp else attn

    def layer_linears(self, layer_idx: int, include_mlp: bool = True) -> dict[str, nn.Linear]:
        """``{relative name: nn.Linear}`` for one decoder layer."""
        layer = self.layers[layer_idx]
        return {name: layer.get_submodule(name) for name in self.linear_names(include_mlp)}

    def full_name(self, layer_idx: int, relative: str) -> str:
        """Parameter-path prefix of a linear, as in ``model.named_modules()``."""
        return f"{self.layers_path}.{layer_idx}.{relative}"

    def decoder_linears(self, include_mlp: bool = True) -> dict[str, nn.Linear]:
        """Every decoder linear of the language model, keyed by its full module name."""
        out: dict[str, nn.Linear] = {}
        for i in range(self.num_layers):
            for rel, mod in self.layer_linears(i, include_mlp).items():
                out[self.full_name(i, rel)] = mod
        return out

    def language_model_param_count(self, model: nn.Module) -> int:
        """Parameters of the language side (everything but the vision modules)."""
        vision = {id(p) for path in self.vision_paths for p in model.get_submodule(path).parameters()}
        seen: set[int] = set()
        total = 0
        for p in model.parameters():
            if id(p) in vision or id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
        return total


def _get(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _find_text_model(model: nn.Module) -> tuple[str, nn.Module]:
    for path in _TEXT_MODEL_PATHS:
        mod = _get(model, path)
        layers = getattr(mod, "layers", None) if mod is not None else None
        if isinstance(layers, nn.ModuleList) and len(layers) > 0 and hasattr(layers[0], "self_attn"):
            return path, mod
    raise UnsupportedArchitectureError(
        f"{type(model).__name__}: could not find the language-model decoder layers "
        f"(looked for a module with `.layers[i].self_attn` at {', '.join(_TEXT_MODEL_PATHS)}). "
        f"Supported: {', '.join(SUPPORTED_ARCHITECTURES)}."
    )


def _check_layer(model: nn.Module, layer: nn.Module) -> None:
    missing = [
        name
        for name in (f"self_attn.{p}" for p in ATTENTION_PROJECTIONS)
        if not isinstance(_get(layer, name), nn.Linear)
    ]
    if missing:
        fused = [n for n in ("qkv_proj", "W_pack", "query_key_value", "c_attn") if _get(layer.self_attn, n) is not None]
        hint = f" It has a fused projection ({fused[0]}), which hsr does not map yet." if fused else ""
        raise UnsupportedArchitectureError(
            f"{type(model).__name__}: decoder layer lacks separate linear projections "
            f"{', '.join(missing)}.{hint} Supported: {', '.join(SUPPORTED_ARCHITECTURES)}."
        )


def describe(model: nn.Module) -> ArchInfo:
    """Probe ``model`` and return its :class:`ArchInfo`; raise a clear error when unsupported."""
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedArchitectureError(f"{type(model).__name__} has no `.config`; pass a Hugging Face model.")
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    path, text_model = _find_text_model(model)
    layers = text_model.layers
    _check_layer(model, layers[0])

    num_heads = getattr(text_config, "num_attention_heads", None)
    hidden = getattr(text_config, "hidden_size", None)
    if num_heads is None or hidden is None:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__}: text config lacks num_attention_heads/hidden_size."
        )
    num_kv = getattr(text_config, "num_key_value_heads", None) or num_heads
    head_dim = getattr(text_config, "head_dim", None) or hidden // num_heads
    q_out = layers[0].self_attn.q_proj.out_features
    k_out = layers[0].self_attn.k_proj.out_features
    if q_out != num_heads * head_dim or k_out != num_kv * head_dim or num_heads % num_kv:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__}: head geometry does not add up (heads={num_heads}, kv_heads={num_kv}, "
            f"head_dim={head_dim}, q_proj out={q_out}, k_proj out={k_out})."
        )
    vision_paths = [p for p in _VISION_PATHS if _get(model, p) is not None and not p.startswith(path + ".")]
    # Drop nested duplicates (e.g. "visual" when "model.visual" already matched the same module).
    uniq: list[str] = []
    seen: set[int] = set()
    for p in vision_paths:
        mod = model.get_submodule(p)
        if id(mod) not in seen and isinstance(mod, nn.Module) and any(True for _ in mod.parameters()):
            seen.add(id(mod))
            uniq.append(p)
    is_vlm = hasattr(config, "vision_config") or bool(uniq)
    return ArchInfo(
        class_name=type(model).__name__,
        text_model=text_model,
        text_model_path=path,
        layers=layers,
        num_layers=len(layers),
        num_heads=int(num_heads),
        num_kv_heads=int(num_kv),
        head_dim=int(head_dim),
        hidden_size=int(hidden),
        is_vlm=is_vlm,
        model_type=str(getattr(text_config, "model_type", "") or ""),
        logit_softcap=getattr(text_config, "final_logit_softcapping", None) or None,
        attention_types=_attention_types(text_config, len(layers)),
        attn_implementation=str(getattr(config, "_attn_implementation", None) or "eager"),
        vision_paths=uniq,
    )


def _attention_types(text_config: object, num_layers: int) -> tuple[str, ...]:
    types = getattr(text_config, "layer_types", None)
    if types is not None:
        return tuple(str(t) for t in types)
    window = getattr(text_config, "sliding_window", None) and getattr(text_config, "use_sliding_window", True)
    return ("sliding_attention" if window else "full_attention",) * num_layers


def position_ids_batch_dim(ids: torch.Tensor) -> int:
    """The batch dimension of position ids a decoder layer receives: M-RoPE ids (Qwen2-VL family) are
    ``[3 or 4, B, T]`` (one row per rotary section), plain ones ``[B, T]``."""
    if ids.dim() == 3 and ids.shape[0] in (3, 4) and ids.dtype in (torch.long, torch.int):
        return 1
    return 0


def processor_images(processor: object, images: list) -> list:
    """The ``images`` argument a family's processor expects for one image per text."""
    if type(processor).__name__.startswith(_NESTED_IMAGE_PROCESSORS):
        return [[im] for im in images]
    return images


def final_norm(arch: ArchInfo) -> nn.Module:
    """The norm applied after the last decoder layer (the "final normed hidden state")."""
    norm = getattr(arch.text_model, "norm", None)
    if norm is None:
        raise UnsupportedArchitectureError(f"{arch.class_name}: text model has no final `.norm`.")
    return norm


def lm_head(model: nn.Module) -> nn.Module:
    head = getattr(model, "lm_head", None)
    if head is None:
        raise UnsupportedArchitectureError(f"{type(model).__name__}: no `lm_head`.")
    return head


def layer_hidden(out: object) -> torch.Tensor:
    """The hidden states a decoder layer returned (a tensor, or the first item of a tuple in older
    transformers)."""
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[return-value]
