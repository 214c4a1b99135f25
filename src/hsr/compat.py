"""Compatibility shims for transformers 5 on machines without optional packages.

Qwen2-VL / Qwen2.5-VL / SmolVLM processors require a video processor, and the real ones import
torchvision; SmolVLM's processor also wants ``num2words``. hsr only feeds images, so on a
machine without those packages :func:`install_no_video_processor_workaround` lets such
processors build and load from disk. Loading calls it before every ``AutoProcessor`` load.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

__all__ = ["install_no_video_processor_workaround", "no_video_processor_class"]


def _ensure_num2words() -> None:
    """SmolVLM's processor refuses to start without ``num2words`` (used only for videos).

    When the package is missing, install a minimal stand-in (numbers as words are only
    needed in video prompts, which tiny models never see) so the processor can be built
    and reloaded offline.
    """
    from transformers.models.smolvlm import processing_smolvlm

    if not getattr(processing_smolvlm, "num2words", None):
        processing_smolvlm.num2words = lambda n, *a, **k: str(n)


def _saved_video_processor(path: Any) -> dict[str, Any]:
    """The real video processor's saved settings in a model folder (empty when unknown)."""
    if path is None or not Path(str(path)).is_dir():
        return {}
    folder = Path(str(path))
    for name, key in (("video_preprocessor_config.json", None), ("processor_config.json", "video_processor")):
        file = folder / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        data = data.get(key) if key and isinstance(data, dict) else data
        if isinstance(data, dict) and data.get("video_processor_type") not in (None, "NoVideoProcessor"):
            return data
    return {}


@functools.lru_cache(maxsize=None)
def no_video_processor_class() -> type:
    from transformers.video_processing_utils import VideoProcessorMixin

    class NoVideoProcessor(VideoProcessorMixin):
        """Stand-in video processor for machines without torchvision (images only).

        Qwen2-VL / Qwen2.5-VL / SmolVLM processors insist on a video processor, and the real
        ones import torchvision. This one carries the attributes the processors read, refuses
        actual videos, and saves itself under the real class name (``real_type``) so a
        machine with torchvision loads the real video processor from the same folder.
        """

        merge_size = 2
        temporal_patch_size = 2
        patch_size = 14
        num_frames = None
        fps = None

        def __init__(self, real_type: str | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.real_type = real_type

        def __call__(self, videos: Any = None, **kwargs: Any) -> Any:
            raise RuntimeError("Video inputs need torchvision (pip install torchvision); images work without it.")

        preprocess = __call__

        def to_dict(self) -> dict[str, Any]:
            out = super().to_dict()
            real = out.pop("real_type", None)
            if real:
                out["video_processor_type"] = real
                if real.startswith("Qwen2VL"):
                    out.update(patch_size=self.patch_size, merge_size=self.merge_size,
                               temporal_patch_size=self.temporal_patch_size)
            return out

        @classmethod
        def from_pretrained(cls, path: Any = None, *args: Any, **kwargs: Any) -> Any:
            # Keep what the folder says about its real video processor, so saving again (a pruned
            # or realigned model) still names the real class and its sizes, not this stand-in.
            saved = _saved_video_processor(path)
            stand_in = cls(real_type=saved.get("video_processor_type"))
            for key in ("patch_size", "merge_size", "temporal_patch_size"):
                if isinstance(saved.get(key), int):
                    setattr(stand_in, key, saved[key])
            return stand_in

    NoVideoProcessor.__module__ = __name__
    NoVideoProcessor.__qualname__ = "NoVideoProcessor"
    return NoVideoProcessor


@functools.lru_cache(maxsize=None)
def install_no_video_processor_workaround() -> bool:
    """Let video-capable processors build and reload without torchvision (idempotent).

    Without torchvision, transformers 5 cannot resolve the ``VideoProcessorMixin`` base class
    its processors check their ``video_processor`` argument against, and ``AutoVideoProcessor``
    cannot load anything, so ``Qwen2VLProcessor(...)`` and ``AutoProcessor.from_pretrained``
    of a Qwen2-VL / Qwen2.5-VL / SmolVLM folder both fail. This makes the base class
    resolvable and loads :class:`NoVideoProcessor` in place of video processors. It does
    nothing (returns False) when torchvision is installed. Also covers SmolVLM's optional
    ``num2words`` dependency.
    """
    from transformers import processing_utils
    from transformers.utils import is_torchvision_available

    _ensure_num2words()
    if is_torchvision_available():
        return False
    from transformers.video_processing_utils import VideoProcessorMixin

    setattr(processing_utils.transformers_module, "VideoProcessorMixin", VideoProcessorMixin)
    processing_utils._LazyAutoProcessorMapping._MAPPING_NAMES["video_processor"] = (__name__, "NoVideoProcessor")
    return True


def __getattr__(name: str) -> Any:
    # NoVideoProcessor is built lazily so importing hsr.compat does not import transformers.
    if name == "NoVideoProcessor":
        return no_video_processor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
