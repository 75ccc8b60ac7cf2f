"""Texts with integer labels: what every task loader returns and every sampler takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TaskData:
    """Texts and integer labels.

    texts : list of str, length N.
    pairs : list of str (second sentence) or None.
    labels : int array of shape (N,), values in 0..C-1.
    label_names : list of C class names.
    info : where it came from, what was dropped, warnings.
    """

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    pairs: list[str] | None = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.labels, minlength=len(self.label_names))
        return {n: int(k) for n, k in zip(self.label_names, c, strict=True)}

    def subset(self, idx: Sequence[int] | np.ndarray) -> TaskData:
        rows = np.asarray(idx, dtype=np.int64)
        return TaskData(
            [self.texts[i] for i in rows],
            self.labels[rows],
            list(self.label_names),
            None if self.pairs is None else [self.pairs[i] for i in rows],
            dict(self.info),
        )
