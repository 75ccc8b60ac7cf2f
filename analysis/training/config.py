"""A training run's settings: :class:`TrainConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.errors import VariscopeError
from analysis.pipeline import AnalysisConfig
from analysis.training.selection import Selection

# The frozen-prefix cache keeps a run's states (tokens × d floats per text, training and held-out texts) in
# memory up to this many bytes; above, they go to a memory-mapped entry of the disk cache.
PREFIX_MEMORY_BYTES = 2 << 30


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``analysis`` gives model, task and sampling of the training data."""

    analysis: AnalysisConfig
    selection: Selection
    steps: int | None = 200
    epochs: float | None = None
    lr: float = 1e-4
    batch_size: int = 16
    eval_n: int = 500
    eval_every: int | None = None
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0
    remeasure: bool = False
    strategy: str | None = None
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
