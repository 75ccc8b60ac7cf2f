"""Toy data for teaching: Gaussian classes in 2-D whose ν a student can steer."""

from __future__ import annotations

import numpy as np

from analysis.variability import variability


def gaussian_classes(
    n_classes: int = 2, spread: float = 1.0, distance: float = 3.0, sizes=(100, 100, 100), seed: int = 0
):
    """Points (N, 2), labels (N,), class means (C, 2) and ν.

    Class means sit on a circle of diameter ``distance``; every class is an
    isotropic Gaussian with standard deviation ``spread``; class c has
    ``sizes[c]`` points.
    """
    rng = np.random.default_rng(seed)
    angles = np.pi / 2 + 2 * np.pi * np.arange(n_classes) / n_classes
    centers = distance / 2 * np.stack([np.cos(angles), np.sin(angles)], 1)
    sizes = [max(2, int(s)) for s in sizes[:n_classes]]
    y = np.repeat(np.arange(n_classes), sizes)
    X = centers[y] + spread * rng.standard_normal((len(y), 2))
    means = np.stack([X[y == c].mean(0) for c in range(n_classes)])
    return {"X": X, "y": y, "means": means, "nu": variability(X, y)}
