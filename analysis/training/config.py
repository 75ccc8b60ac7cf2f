"""A training run's settings: :class:`TrainConfig`, and the defaults of every training setting.

The ``train`` command's flags, the Training page and :func:`analysis.settings.train_settings`
read their defaults from :data:`TRAIN_DEFAULTS` (the page from :data:`PAGE_TRAIN_DEFAULTS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.errors import VariscopeError
from analysis.pipeline import AnalysisConfig
from analysis.training.selection import Selection

DEFAULT_STEPS = 200
#: Training settings (``train`` flags, the Training page) and their defaults; None: not set.
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": None,  # neither steps nor epochs: DEFAULT_STEPS
    "epochs": None,
    "lr": 1e-4,
    "train_batch": 16,  # examples per optimizer step, all processes together
    "eval_n": 500,
    "eval_every": None,
    "k": 2,
    "lora_r": 8,
    "classifier_layer": None,
    "train_seed": None,  # None: the sampling seed (--seed)
}


def default_eval_every(steps: int) -> int:
    """Steps between held-out evaluations when ``eval_every`` is not set: five evaluations per run."""
    return max(1, steps // 5)


#: The Training page starts shorter runs than ``train``: a person waits in front of it.
PAGE_TRAIN_DEFAULTS: dict[str, Any] = {**TRAIN_DEFAULTS, "steps": 150, "eval_n": 300}
# The frozen-prefix cache keeps a run's states (tokens × d floats per text, training and held-out texts) in
# memory up to this many bytes; above, they go to a memory-mapped entry of the disk cache.
PREFIX_MEMORY_BYTES = 2 << 30


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``analysis`` gives model, task and sampling of the training data."""

    analysis: AnalysisConfig
    selection: Selection
    steps: int | None = DEFAULT_STEPS
    epochs: float | None = TRAIN_DEFAULTS["epochs"]
    lr: float = TRAIN_DEFAULTS["lr"]
    batch_size: int = TRAIN_DEFAULTS["train_batch"]
    eval_n: int = TRAIN_DEFAULTS["eval_n"]
    eval_every: int | None = TRAIN_DEFAULTS["eval_every"]
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0
    remeasure: bool = False
    strategy: str | None = None
    # the learning-rate search: held out is a stratified fifth of the training sample (seed 0), never test texts
    validation: bool = False
    prefix_cache: bool = True  # run the frozen prefix once per text (analysis.training.prefix), where exact
    full_vocab: bool = False  # train the whole embedding matrix, not the task's rows (analysis.training.vocab)

    def label(self) -> str:
        s = self.selection
        kind = self.strategy or ("full" if s.tune_embeddings else "custom")
        return f"{kind}: ℓ*={s.classifier_layer}, tune {','.join(map(str, s.tuned_layers))}" + (
            " (LoRA)" if s.adapter else ""
        )

    def check(self) -> None:
        self.analysis.validate()
        if self.steps is None and self.epochs is None:
            raise VariscopeError("give a number of steps or of epochs")
        if self.steps is not None and self.steps < 1:
            raise VariscopeError(f"steps must be at least 1, got {self.steps}")
        if self.lr <= 0:
            raise VariscopeError(f"learning rate must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise VariscopeError(f"batch size must be at least 1, got {self.batch_size}")
