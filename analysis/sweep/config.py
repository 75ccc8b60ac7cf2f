"""A sweep's settings: which layers, seeds and learning rates, and the shape of every run."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.errors import VariscopeError

#: the fixed shape of shipped results (issue: "so they compare")
LR_GRID = (3e-4, 1e-3, 3e-3)
LR_STEPS = 60
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class SweepConfig:
    """layers : classifier layers ℓ (1-based); k : blocks ending at ℓ that train; seeds : training seeds.

    lr_grid : learning rates tried on a validation split of the training texts (seed 0, ``lr_steps``
    steps each); one rate skips the search. steps / batch_size / eval_n : every final run's shape.
    """

    layers: tuple[int, ...]
    k: int = 1
    seeds: tuple[int, ...] = SEEDS
    steps: int = 200
    batch_size: int = 16
    eval_n: int = 600
    lr_grid: tuple[float, ...] = LR_GRID
    lr_steps: int = LR_STEPS

    def check(self, n_layers: int) -> None:
        """One-line errors for settings this model cannot take (before any work)."""
        if not self.layers or min(self.layers) < 1 or max(self.layers) > n_layers:
            raise VariscopeError(f"--layers must lie within 1-{n_layers} for this model")
        if self.k < 1 or not self.seeds or min(self.seeds) < 0:
            raise VariscopeError("the sweep needs k ≥ 1 and at least one seed ≥ 0")
        if min(self.steps, self.lr_steps, self.batch_size) < 1 or self.eval_n < 2:
            raise VariscopeError("steps, learning-rate steps and batch size must be ≥ 1, held-out texts ≥ 2")
        if not self.lr_grid or min(self.lr_grid) <= 0:
            raise VariscopeError("every learning rate must be positive")

    @property
    def runs(self) -> int:
        """Training runs of the whole sweep: the grid (when searched) and the final runs."""
        grid = len(self.lr_grid) if len(self.lr_grid) > 1 else 0
        return len(self.layers) * (grid + len(self.seeds))

    @property
    def total_steps(self) -> int:
        grid = len(self.lr_grid) * self.lr_steps if len(self.lr_grid) > 1 else 0
        return len(self.layers) * (grid + len(self.seeds) * self.steps)


def parse_layers(text: str, n_layers: int) -> tuple[int, ...]:
    """ "1-18", "3,5,7" or "2-4,8" → sorted layers; a one-line error otherwise."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise VariscopeError(f"--layers must look like 1-{n_layers} or 2,4,6; got '{text}'") from None
    if not out:
        raise VariscopeError(f"--layers names no layer: '{text}'")
    return tuple(sorted(out))
