"""Where weights live: the one module that knows devices, device maps and offloading.

Without ``max_memory`` / ``offload_folder`` a model is loaded whole onto one device (the default and
fast path). With them, accelerate places it: :func:`device_map_for` asks accelerate's
``infer_auto_device_map`` (decoder layers never split) which modules fit on the execution device,
on the CPU and on disk, and transformers dispatches the model with accelerate's hooks, so offloaded
modules hold meta tensors and are loaded for each forward.

Layer-wise stages do better than one load per forward: :func:`onloaded` materializes an offloaded
decoder layer on its execution device once for a whole walk step (every sample), and with
``write_back`` stores what the caller changed (pruning, restoring) where accelerate keeps the layer:
the CPU copy, or a new ``.dat`` file in this load's own offload folder (never the input checkpoint),
so later forwards and ``save_pretrained`` see the modified weights.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from .architecture import describe
from .errors import ConfigError, ModelLoadError

_GPU_KEY = re.compile(r"^(?:cuda:)?(\d+)$")
#: accelerate's names for "not a torch device" in a device map.
_OFFLOADED = ("cpu", "disk")


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def check_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a one-line error (``cuda:0`` on a CPU-only build, ``bogus``)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelLoadError(f"Unknown device {str(device)!r}; use cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"Device {str(device)!r} asked for, but this torch has no usable CUDA; use --device cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelLoadError(f"Device {str(device)!r} does not exist: {torch.cuda.device_count()} CUDA device(s) here.")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"Device {str(device)!r} asked for, but MPS is not available here; use --device cpu.")
    elif dev.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ModelLoadError(f"Unsupported device {str(device)!r}; use cpu, cuda, cuda:N or mps.")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in _DTYPES:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))} or 'auto'.")
    return _DTYPES[dtype]


def model_device(model: nn.Module) -> torch.device:
    """Where inputs go: the parameters' device, or the execution device of a model placed by accelerate
    (whose offloaded parameters sit on ``meta``)."""
    return execution_device(model)


@dataclass(frozen=True)
class Placement:
    """The execution device plus accelerate's budgets: ``max_memory`` in bytes per device key
    (GPU index, ``"cpu"``, ``"mps"``) and a folder for what fits nowhere else."""

    device: str = "cpu"
    max_memory: dict[int | str, int] | None = None
    offload_folder: str | None = None

    @property
    def dispatched(self) -> bool:
        """True when accelerate places the model (otherwise: all of it on ``device``)."""
        return self.max_memory is not None or self.offload_folder is not None


def parse_max_memory(text: str | None) -> dict[int | str, int] | None:
    """``"0=20GiB,1=20GiB,cpu=64GiB"`` -> ``{0: bytes, 1: bytes, "cpu": bytes}``; one-line errors."""
    if text is None or not str(text).strip():
        return None
    from accelerate.utils import convert_file_size_to_int

    out: dict[int | str, int] = {}
    for part in str(text).split(","):
        key, sep, size = part.strip().partition("=")
        key, size = key.strip().lower(), size.strip()
        if not sep or not key or not size:
            raise ConfigError(f"--max-memory (max_memory): {part.strip()!r} is not DEVICE=SIZE (e.g. 0=20GiB,cpu=64GiB).")
        gpu = _GPU_KEY.match(key)
        if gpu is None and key not in ("cpu", "mps"):
            raise ConfigError(f"--max-memory (max_memory): unknown device {key!r}; use a GPU index (0, cuda:1), cpu or mps "
                              "(disk is --offload-folder).")
        try:
            value = int(size) if size.isdigit() else convert_file_size_to_int(size)
        except ValueError:
            value = -1
        if value <= 0:
            raise ConfigError(f"--max-memory (max_memory): {size!r} is not a size such as 20GiB, 500MB or a byte count.")
        dev: int | str = int(gpu.group(1)) if gpu else key
        if dev in out:
            raise ConfigError(f"--max-memory (max_memory) names device {key!r} twice.")
        out[dev] = value
    return out


def placement_from(device: str, max_memory: str | None, offload_folder: str | None, share: int = 1) -> Placement:
    """Check the options together before any model loads; the budgets must include ``device``.
    ``share``: how many models are held at once (realign holds the dense and the pruned one), each
    getting that fraction of every budget, so that together they stay within ``--max-memory``."""
    budget = parse_max_memory(max_memory)
    if budget is None and offload_folder is None:
        return Placement(str(device))  # the default: no placement, devices checked where models load
    if budget is not None and share > 1:
        budget = {k: v // share for k, v in budget.items()}
    dev = check_device(device)
    if budget is not None:
        gpus = sorted(k for k in budget if isinstance(k, int))
        if gpus and not torch.cuda.is_available():
            raise ConfigError(f"--max-memory budgets GPU {gpus[0]}, but this torch has no usable CUDA; use cpu=SIZE.")
        if gpus and gpus[-1] >= torch.cuda.device_count():
            raise ConfigError(f"--max-memory budgets GPU {gpus[-1]}: only {torch.cuda.device_count()} GPU(s) here.")
        own: int | str = (dev.index or 0) if dev.type == "cuda" else dev.type
        if own not in budget:
            raise ConfigError(f"--max-memory gives no budget for --device {device} (add {own}=SIZE).")
        if dev.type == "cpu" and gpus:
            raise ConfigError("--max-memory budgets GPUs but --device is cpu; pass --device cuda:N.")
        if dev.type != "cpu":
            budget.setdefault("cpu", _available_cpu())  # offload to CPU RAM before disk
    if offload_folder is not None and not str(offload_folder).strip():
        raise ConfigError("--offload-folder is empty; give a folder or leave it out.")
    return Placement(device, budget, str(Path(offload_folder).expanduser()) if offload_folder else None)


def _available_cpu() -> int:
    from accelerate.utils import get_max_memory

    return int(get_max_memory().get("cpu", 0))


# ---------------------------------------------------------------------------- loading
def _layer_granular(meta: nn.Module, device_map: dict[str, Any], layers_path: str, num_layers: int) -> dict[str, Any]:
    """Split map entries that hold several decoder layers into children, so that every offloaded
    decoder layer gets its own accelerate hook (what :func:`onloaded` materializes)."""
    layer_names = [f"{layers_path}.{i}" for i in range(num_layers)]

    def holds_layers(key: str) -> bool:
        return any(key == "" or (name.startswith(key + ".") and name != key) for name in layer_names)

    out = dict(device_map)
    while any(holds_layers(k) for k in out):
        key = next(k for k in out if holds_layers(k))
        device = out.pop(key)
        module = meta.get_submodule(key)
        prefix = f"{key}." if key else ""
        for name, _ in module.named_children():
            out[prefix + name] = device
        for name, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            out[prefix + name] = device
    return out


def device_map_for(model_cls: type, config: Any, placement: Placement, dtype: Any, trust_remote_code: bool) -> dict:
    """accelerate's device map for ``config`` under ``placement``, decoder layers unsplit and one per entry."""
    from accelerate import infer_auto_device_map, init_empty_weights

    with init_empty_weights():
        meta = model_cls.from_config(config, trust_remote_code=trust_remote_code)
    if isinstance(dtype, torch.dtype):
        meta.to(dtype)
    meta.tie_weights()  # tied embeddings / lm_head share one device
    arch = describe(meta)
    no_split = sorted({type(layer).__name__ for layer in arch.layers} | set(getattr(meta, "_no_split_modules", None) or []))
    budget = dict(placement.max_memory) if placement.max_memory is not None else None
    device_map = infer_auto_device_map(meta, max_memory=budget, no_split_module_classes=no_split,
                                       dtype=dtype if isinstance(dtype, torch.dtype) else None)
    if "disk" in device_map.values() and placement.offload_folder is None:
        raise ConfigError("The model does not fit in --max-memory; pass --offload-folder DIR for the rest.")
    return _layer_granular(meta, device_map, arch.layers_path, arch.num_layers)


def offload_dir(placement: Placement) -> str | None:
    """A fresh folder inside ``--offload-folder`` for one loaded model (two models loaded together,
    e.g. dense and pruned in realign, never share files); removed with the model."""
    if placement.offload_folder is None:
        return None
    root = Path(placement.offload_folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
        return tempfile.mkdtemp(prefix="hsr-offload-", dir=root)
    except OSError as exc:
        raise ConfigError(f"--offload-folder {str(root)!r} is not writable ({exc.strerror or exc}).") from None


def remove_with(model: nn.Module, folder: str | None) -> None:
    """Delete ``folder`` once ``model`` is garbage-collected (or at exit)."""
    if folder is not None:
        weakref.finalize(model, shutil.rmtree, folder, True)


def execution_device(model: nn.Module) -> torch.device:
    """The device inputs go to: the first accelerator in a dispatched model's map, else the parameters' device."""
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        for dev in device_map.values():
            if dev not in _OFFLOADED:
                return torch.device(f"cuda:{dev}" if isinstance(dev, int) else dev)
        return torch.device("cpu")
    return next(model.parameters()).device


# ---------------------------------------------------------------------------- onloading
def offload_hook(module: nn.Module) -> Any | None:
    """accelerate's hook that keeps ``module``'s own weights offloaded, or None (resident module)."""
    from accelerate.hooks import AlignDevicesHook, SequentialHook

    hook = getattr(module, "_hf_hook", None)
    hooks = hook.hooks if isinstance(hook, SequentialHook) else [hook]
    for h in hooks:
        if isinstance(h, AlignDevicesHook) and h.offload and h.weights_map is not None:
            return h
    return None


def _write_back(module: nn.Module, hook: Any) -> None:
    """Store ``module``'s current (materialized) tensors where ``hook`` loads them from."""
    from accelerate.utils import offload_weight
    from accelerate.utils.offload import PrefixedDataset

    weights_map = hook.weights_map
    prefix = weights_map.prefix if isinstance(weights_map, PrefixedDataset) else ""
    loader = weights_map.dataset if isinstance(weights_map, PrefixedDataset) else weights_map
    for name, tensor in module.state_dict(keep_vars=True).items():
        key = prefix + name
        if tensor.device.type == "meta" or key not in loader.all_keys:
            continue
        value = tensor.detach().to("cpu")
        if key in loader.state_dict:
            loader.state_dict[key] = value.clone()
        else:
            if loader.save_folder is None:
                raise RuntimeError(f"{key}: offloaded to disk but accelerate has no folder to write it to.")
            offload_weight(value, key, loader.save_folder, index=loader.index)


@contextlib.contextmanager
def _onloaded_one(module: nn.Module, hook: Any, write_back: bool) -> Iterator[None]:
    from accelerate.utils import align_module_device

    with align_module_device(module):
        hook.offload = False  # forwards inside the block keep the materialized weights
        try:
            yield
            if write_back:
                _write_back(module, hook)
        finally:
            hook.offload = True  # align_module_device's exit then returns the weights to meta


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


def return_freed_memory() -> None:
    """Hand freed heap pages back to the OS. glibc keeps freed chunks for reuse, and weights materialized
    layer after layer leave them fragmented, so without this a walk over offloaded layers grows the
    process by many layers' worth of memory it no longer uses."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@contextlib.contextmanager
def onloaded(module: nn.Module, write_back: bool = False) -> Iterator[nn.Module]:
    """``module`` with its offloaded weights materialized on their execution device for the whole block
    (forwards inside it do not reload them); with ``write_back`` its changes are stored for later
    forwards and saving. accelerate hooks the submodules that hold weights (a decoder layer's linears
    and norms), so every offloaded submodule is onloaded. A resident module is yielded as is."""
    hooked = [(sub, hook) for sub in module.modules() if (hook := offload_hook(sub)) is not None]
    with contextlib.ExitStack() as stack:
        if hooked:
            stack.callback(return_freed_memory)  # registered first, so it runs last: weights are back on meta
        for sub, hook in hooked:
            stack.enter_context(_onloaded_one(sub, hook, write_back))
        yield module


@contextlib.contextmanager
def onloaded_layers(layers: Sequence[nn.Module], write_back: Sequence[bool]) -> Iterator[None]:
    """Several modules onloaded together (e.g. the same decoder layer of the dense and the pruned model)."""
    with contextlib.ExitStack() as stack:
        for layer, wb in zip(layers, write_back):
            stack.enter_context(onloaded(layer, write_back=wb))
        yield


def offloaded_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(state-dict name, tensor)`` of every weight accelerate keeps off ``model`` (its parameters there
    are meta tensors), read one at a time from where accelerate stores it: the CPU copy, a ``.dat``
    file of the offload folder, or the input checkpoint's safetensors file. Nothing else is held."""
    from accelerate.utils.offload import PrefixedDataset

    seen: set[int] = set()
    for module in model.modules():
        hook = offload_hook(module)
        if hook is None:
            continue
        store = hook.weights_map.dataset if isinstance(hook.weights_map, PrefixedDataset) else hook.weights_map
        if id(store) in seen:
            continue  # one store serves every hooked module of the model
        seen.add(id(store))
        for name in list(store.keys()):
            yield name, store[name]


def is_offloaded(model: nn.Module) -> bool:
    """True when some of ``model``'s weights live off the execution device (CPU or disk offload)."""
    return any(offload_hook(m) is not None for m in model.modules())


def _owner(model: nn.Module, name: str) -> str | None:
    """The nearest module at or above ``name`` whose weights accelerate keeps offloaded, or None."""
    parts = name.split(".")
    for n in range(len(parts), -1, -1):
        path = ".".join(parts[:n])
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if offload_hook(module) is not None:
            return path
    return None


def onloaded_each(models: Sequence[nn.Module], names: Sequence[str], write_back: Sequence[bool] = ()) -> Iterator[str]:
    """Yield ``names`` (module names shared by ``models``, e.g. a dense and a pruned model) in order, with
    each name's offloaded owner (its decoder layer) materialized in every model for its turn; names with
    the same owners share one onload. Changes are written back (per ``write_back``) when the owner
    changes and at the end, so consume the whole iterator."""
    flags = list(write_back) or [False] * len(models)
    current: tuple[str | None, ...] | None = None
    stack = contextlib.ExitStack()
    try:
        for name in names:
            owners = tuple(_owner(m, name) for m in models)
            if owners != current:
                stack.close()
                stack = contextlib.ExitStack()
                for model, owner, wb in zip(models, owners, flags):
                    if owner is not None:
                        stack.enter_context(onloaded(model.get_submodule(owner), write_back=wb))
                current = owners
            yield name
    except BaseException:
        import sys

        stack.__exit__(*sys.exc_info())  # nothing is written back after an error
        raise
    stack.close()


# ---------------------------------------------------------------------------- saving
def _layer_bytes(model: nn.Module) -> int:
    layer = describe(model).layers[0]
    return sum(t.numel() * t.element_size() for t in layer.state_dict(keep_vars=True).values())


def save_model(model: nn.Module, folder: str | Path) -> None:
    """``save_pretrained`` as safetensors. An offloaded model is written in shards of about one decoder
    layer: transformers materializes a whole shard of offloaded weights at once (50 GB by default)."""
    kwargs: dict[str, Any] = {"safe_serialization": True}
    if not is_offloaded(model):
        model.save_pretrained(folder, **kwargs)
        return
    kwargs["max_shard_size"] = max(_layer_bytes(model), 1)
    with _tied_for_saving(model):
        model.save_pretrained(folder, **kwargs)


@contextlib.contextmanager
def _tied_for_saving(model: nn.Module) -> Iterator[None]:
    """accelerate's onload/offload cycles leave tied parameters (lm_head = embeddings) as separate meta
    tensors, which transformers would save twice; point each tied one at its source while saving."""
    saved = []
    for target, source in (getattr(model, "all_tied_weights_keys", None) or {}).items():
        owner, _, attr = target.rpartition(".")
        module, src = model.get_submodule(owner), model.get_parameter(source)
        if getattr(module, attr) is not src:
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, src)
    try:
        yield
    finally:
        for module, attr, old in saved:
            setattr(module, attr, old)
