"""Calibration and evaluation data: reading it, and turning it into model inputs.

JSONL format (one object per line)::

    {"prompt": "How do I ...?", "response": "Sure, ...", "image": "imgs/001.jpg"}

``prompt`` is required; ``response`` is needed where response tokens matter (importance
scores, calibration on responses); ``image`` is optional and resolved relative to the JSONL
file's folder (or ``image_root``). VLGuard's layout (``train.json`` / ``test.json`` plus an
image folder) is read by :func:`read_vlguard`.

Encoding applies the model's own chat template through its processor, and marks which
tokens belong to the response, so that statistics can be restricted to them.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .architecture import processor_images
from .errors import HsrError
from .values import first_surrogate

#: VLGuard splits: safe image + safe instruction, safe image + unsafe instruction, unsafe image.
VLGUARD_SPLITS: tuple[str, ...] = ("safe_safes", "safe_unsafes", "unsafes")
DEFAULT_MAX_LENGTH = 512

log = logging.getLogger(__name__)


class DataError(HsrError, ValueError):
    """Malformed data; the message names the file and row."""


@dataclass
class Sample:
    """One prompt, optionally with a response and an image."""

    prompt: str
    response: str | None = None
    image: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)



def resolve_data_path(spec: str | Path, what: str = "Data file") -> Path:
    """A file named by ``builtin:NAME`` (shipped with hsr) or by a path; missing files are a DataError."""
    spec = str(spec)
    if spec.startswith("builtin:"):
        from .resources import builtin_path

        try:
            path = builtin_path(spec.split(":", 1)[1])
        except ValueError as exc:
            raise DataError(str(exc)) from exc
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def iter_jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for each non-blank line; bad JSON or non-objects fail naming file and line."""
    with path.open(encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(f"{path}, line {lineno}: not valid UTF-8 text.") from None
            if not line.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg}).") from exc
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}.")
            _refuse_surrogates(row, where)
            yield where, row


def _refuse_surrogates(obj: Any, where: str) -> None:
    """JSON may spell a lone UTF-16 surrogate (``"\\ud800"``); such text cannot be tokenized or written."""
    at = first_surrogate(obj)
    if at is not None:
        raise DataError(f"{where}: {at} holds a lone UTF-16 surrogate (such as \\ud800), which is not text.")


def read_jsonl(path: str | Path, image_root: str | Path | None = None, check_images: bool = True) -> list[Sample]:
    """Read the documented JSONL format; every problem names ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file not found: {path}")
    root = Path(image_root) if image_root else path.parent
    samples: list[Sample] = []
    for where, row in iter_jsonl_rows(path):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{where}: missing or empty 'prompt' (a string is required).")
        response = row.get("response")
        if response is not None and not isinstance(response, str):
            raise DataError(f"{where}: 'response' must be a string.")
        image = row.get("image")
        image_path = None
        if image:
            if not isinstance(image, str):
                raise DataError(f"{where}: 'image' must be a path string.")
            image_path = (root / image) if not Path(image).is_absolute() else Path(image)
            if check_images:
                check_image(image_path, where)
        meta = {k: v for k, v in row.items() if k not in ("prompt", "response", "image")}
        meta["source"] = where
        samples.append(Sample(prompt=prompt, response=response, image=image_path, meta=meta))
    if not samples:
        raise DataError(f"{path}: no rows.")
    return samples


def read_vlguard(
    root: str | Path, split: str, annotation: str = "train.json", image_dir: str | None = None, check_images: bool = True
) -> list[Sample]:
    """Read VLGuard (``root/train.json`` + ``root/train/`` images by default).

    Each entry has ``image``, ``safe`` and ``instr-resp``: safe images carry one
    ``safe_instruction`` and one ``unsafe_instruction``; unsafe images one ``instruction``.
    """
    if split not in VLGUARD_SPLITS:
        raise DataError(f"Unknown VLGuard split {split!r}; choose one of {', '.join(VLGUARD_SPLITS)}.")
    root = Path(root)
    ann = root / annotation
    if not ann.is_file():
        raise DataError(f"VLGuard annotation file not found: {ann}")
    try:
        entries = json.loads(ann.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{ann}: not valid JSON ({exc.msg}).") from exc
    except UnicodeDecodeError:
        raise DataError(f"{ann}: not valid UTF-8 text.") from None
    _refuse_surrogates(entries, str(ann))
    if not isinstance(entries, list):
        raise DataError(f"{ann}: expected a JSON list of entries, got {type(entries).__name__}.")
    images = root / (image_dir or Path(annotation).stem)
    if not images.is_dir():
        images = root
    want_key = {"safe_safes": "safe_instruction", "safe_unsafes": "unsafe_instruction", "unsafes": "instruction"}[split]
    want_safe_image = split != "unsafes"
    samples: list[Sample] = []
    for idx, entry in enumerate(entries):
        where = f"{ann}[{idx}]"
        if not isinstance(entry, dict) or "image" not in entry or "instr-resp" not in entry:
            raise DataError(f"{where}: expected keys 'image', 'safe', 'instr-resp'.")
        if not isinstance(entry["image"], str) or not isinstance(entry["instr-resp"], list):
            raise DataError(f"{where}: 'image' must be a path string and 'instr-resp' a list.")
        if bool(entry.get("safe")) != want_safe_image:
            continue
        image = images / entry["image"]
        if check_images and not image.is_file():
            raise DataError(f"{where}: image file not found: {image}")
        before = len(samples)
        for pair in entry["instr-resp"]:
            if not isinstance(pair, dict):
                raise DataError(f"{where}: each 'instr-resp' item must be an object.")
            if want_key in pair:
                if not isinstance(pair[want_key], str) or not pair[want_key].strip():
                    raise DataError(f"{where}: {want_key!r} must be a non-empty string.")
                if pair.get("response") is not None and not isinstance(pair["response"], str):
                    raise DataError(f"{where}: 'response' must be a string.")
                samples.append(
                    Sample(
                        prompt=pair[want_key],
                        response=pair.get("response"),
                        image=image,
                        meta={"source": where, "id": entry.get("id"), "split": split},
                    )
                )
        if check_images and len(samples) > before:
            check_image(image, where)
    if not samples:
        raise DataError(f"{ann}: no samples in split {split!r}.")
    return samples


def check_image(path: Path, where: str) -> None:
    """An image a row names must exist and decode: checked when the data is read, so a missing, unreadable
    or corrupt file fails before any model loads, naming the data file's row (``where``) and the image."""
    if not path.is_file():
        raise DataError(f"{where}: image file not found: {path}")
    st = path.stat()
    problem = _image_problem(str(path), st.st_size, st.st_mtime_ns)
    if problem:
        raise DataError(f"{where}: cannot read image {path} ({problem}).")


@functools.lru_cache(maxsize=65536)
def _image_problem(path: str, size: int, mtime_ns: int) -> str | None:
    """Why ``path`` is not a readable image, or None (keyed on size and mtime: data is read several times)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()  # the whole file's structure (PNG chunks and CRCs), without decoding pixels
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, struct.error, ...)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def load_samples(spec: str | Path, limit: int | None = None, seed: int = 0, check_images: bool = True) -> list[Sample]:
    """Resolve a data spec: a JSONL path, ``vlguard:ROOT:SPLIT``, or ``builtin:NAME``.

    With ``limit``, a seeded random subset of that size is taken (order kept stable).
    """
    spec = str(spec)
    if spec.startswith("vlguard:"):
        parts = spec.split(":")
        if len(parts) < 3:
            raise DataError(f"VLGuard spec must be vlguard:ROOT:SPLIT[:ANNOTATION.json], got {spec!r}.")
        samples = read_vlguard(parts[1], parts[2], *(parts[3:4]), check_images=check_images)
    elif spec.startswith("builtin:"):
        samples = read_jsonl(resolve_data_path(spec))
    else:
        samples = read_jsonl(spec, check_images=check_images)
    return subsample(samples, limit, seed)


def data_files(spec: str | Path | None, text: bool = False) -> list[Path]:
    """Every file a data spec makes a stage read (the JSONL/JSON file and the images its rows name), for
    content fingerprints. Parses the data, so a broken file fails here, before any model loads.
    ``text=True`` for a file read as a whole by its own reader (perplexity text, multiple-choice questions);
    ``None``/``"none"`` reads nothing."""
    if spec is None or str(spec).lower() == "none":
        return []
    spec = str(spec)
    if text:
        return [resolve_data_path(spec, "Text file")]
    samples = load_samples(spec)
    if spec.startswith("vlguard:"):
        parts = spec.split(":")
        head = [Path(parts[1]) / (parts[3] if len(parts) > 3 else "train.json")]
    else:
        head = [resolve_data_path(spec)]
    return head + sorted({s.image for s in samples if s.image is not None})


def require_responses(samples: Sequence[Sample], what: str) -> None:
    """Stages that score response tokens (importance) need a response on every row they use: checked
    when the data is read, before any model loads, naming the first row without one."""
    for s in samples:
        if not s.response:
            where = s.meta.get("source", what)
            raise DataError(f"{where}: a 'response' is required for {what} (its response tokens are scored).")


def subsample(samples: Sequence[Sample], limit: int | None, seed: int = 0) -> list[Sample]:
    if limit is None or limit >= len(samples):
        return list(samples)
    if limit <= 0:
        raise DataError(f"limit must be positive, got {limit}.")
    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]


# --------------------------------------------------------------------------- encoding


def is_processor(processor: Any) -> bool:
    return hasattr(processor, "tokenizer") and hasattr(processor, "image_processor")


@functools.lru_cache(maxsize=1)
def _warn_images_ignored() -> None:
    """Said once per process: a text-only model cannot see images, so they are left out, not an error."""
    log.warning("The data has images but the model is text-only: images are ignored (prompts are used as text).")


def chat_messages(sample: Sample, *, vlm: bool, response: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for ``sample``: content parts (with an image slot) for VLMs, plain strings otherwise."""
    if not vlm:
        if sample.image is not None:
            _warn_images_ignored()
        msgs: list[dict[str, Any]] = [{"role": "user", "content": sample.prompt}]
        if response is not None:
            msgs.append({"role": "assistant", "content": response})
        return msgs
    parts: list[dict[str, Any]] = [{"type": "image"}] if sample.image is not None else []
    parts.append({"type": "text", "text": sample.prompt})
    msgs = [{"role": "user", "content": parts}]
    if response is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
    return msgs


def render_chat(processor: Any, sample: Sample, *, add_generation_prompt: bool = True, response: str | None = None) -> str:
    """The chat-templated text for ``sample`` (user turn, optionally the assistant's response)."""
    vlm = is_processor(processor)
    target = processor if getattr(processor, "chat_template", None) else getattr(processor, "tokenizer", processor)
    if not getattr(target, "chat_template", None):
        raise DataError(f"{type(processor).__name__} has no chat template; hsr needs an instruction-tuned model.")
    msgs = chat_messages(sample, vlm=vlm, response=response)
    return target.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)


def load_image(path: Path, where: str = "sample") -> Any:
    """The image at ``path`` as RGB; one that would decompress beyond PIL's pixel limit (a decompression
    bomb: a small file that expands to gigabytes) is refused, as is any unreadable one. ``where`` names
    the data row in the message."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # the warning level is refused too
            with Image.open(path) as im:
                return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{where}: image {path} is too large to decode safely ({exc}); resize it first.") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{where}: cannot read image {path} ({exc}).") from exc


def tokenize(processor: Any, texts: list[str], images: list[Any] | None, padding_side: str = "left") -> dict[str, torch.Tensor]:
    """Tokenize chat texts (with images for VLMs) into a batch of tensors."""
    tok = getattr(processor, "tokenizer", processor)
    old_side = tok.padding_side
    tok.padding_side = padding_side
    try:
        if is_processor(processor):
            kw: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
            if images:
                kw["images"] = processor_images(processor, images)
            out = processor(**kw)
        else:
            out = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tok.padding_side = old_side
    return dict(out)


@dataclass
class Encoded:
    """Model inputs for one sample, plus which positions are response tokens."""

    inputs: dict[str, torch.Tensor]
    response_mask: torch.Tensor  # bool [1, T]
    prompt_length: int
    sample: Sample

    @property
    def length(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


def encode(
    processor: Any,
    sample: Sample,
    *,
    include_response: bool = False,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> Encoded:
    """Chat-template and tokenize one sample.

    Without ``include_response`` the text ends with the generation prompt (what the model sees
    before it answers). With it, the response follows and ``response_mask`` marks its tokens.
    Sequences are capped at ``max_length`` by cutting the response; a prompt longer than that
    is an error (cutting image tokens would corrupt the input).
    """
    if max_length <= 0:
        raise DataError(f"max_length must be positive, got {max_length}.")
    where = sample.meta.get("source", "sample")
    images = [load_image(sample.image, where)] if (sample.image is not None and is_processor(processor)) else None
    prompt_text = render_chat(processor, sample, add_generation_prompt=True)
    prompt_inputs = tokenize(processor, [prompt_text], images)
    prompt_len = int(prompt_inputs["input_ids"].shape[1])
    if prompt_len > max_length:
        raise DataError(
            f"{where}: prompt is {prompt_len} tokens, longer than max_length={max_length}; raise max_length."
        )
    if not include_response:
        return Encoded(prompt_inputs, torch.zeros(1, prompt_len, dtype=torch.bool), prompt_len, sample)
    if not sample.response:
        raise DataError(f"{where}: a 'response' is required for this data (response tokens are scored).")
    full_text = render_chat(processor, sample, add_generation_prompt=False, response=sample.response)
    if not full_text.startswith(prompt_text):
        # Templates that rewrite earlier turns: fall back to prompt + response text.
        full_text = prompt_text + sample.response
    inputs = tokenize(processor, [full_text], images)
    ids = inputs["input_ids"]
    if not torch.equal(ids[0, :prompt_len], prompt_inputs["input_ids"][0]):
        inputs = tokenize(processor, [prompt_text + sample.response], images)
        ids = inputs["input_ids"]
    total = min(int(ids.shape[1]), max_length)
    for key in ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids"):
        if key in inputs and inputs[key].dim() == 2 and inputs[key].shape[1] == ids.shape[1]:
            inputs[key] = inputs[key][:, :total]
    mask = torch.zeros(1, total, dtype=torch.bool)
    mask[0, prompt_len:total] = True
    return Encoded(inputs, mask, prompt_len, sample)
