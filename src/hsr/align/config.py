"""Settings of the alignment stage (safety fine-tuning of the dense model before pruning)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class AlignConfig:
    """Supervised fine-tuning on harmful prompts + refusals and benign prompts + the model's own answers.

    ``train_layers``: how many of the last decoder layers are trained (the lower ones stay frozen and
    their outputs are computed once, which is what makes CPU training take minutes); ``None`` = all.
    ``modules``: which linear projections of those layers are trained.
    """

    harmful: str = "builtin:advbench_align"
    benign: str = "builtin:align_benign"
    harmful_limit: int | None = None
    benign_limit: int | None = None
    response_tokens: int = 40  # cap on the self-distilled benign answers
    epochs: int = 3
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 4
    train_layers: int | None = 10
    modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_length: int = 256
    seed: int = 0

    def validate(self) -> None:
        self.modules = tuple(self.modules)
        for name in ("epochs", "batch_size", "response_tokens", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"align.{name} must be a positive integer, got {value!r}.")
        for name in ("harmful_limit", "benign_limit", "train_layers"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"align.{name} must be a positive integer or null, got {value!r}.")
        if not (isinstance(self.lr, (int, float)) and 0 < float(self.lr) < 1):
            raise ConfigError(f"align.lr must be in (0, 1), got {self.lr!r}.")
        if float(self.weight_decay) < 0 or self.warmup_steps < 0:
            raise ConfigError("align.weight_decay and align.warmup_steps must be >= 0.")
        bad = [m for m in self.modules if m not in PROJECTIONS]
        if bad or not self.modules:
            raise ConfigError(f"align.modules must be a non-empty subset of {', '.join(PROJECTIONS)}, got {list(self.modules)}.")
