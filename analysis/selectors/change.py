"""How much a layer changes the representation: 1 − linear CKA and 1 − cosine between consecutive layers.

- 1 − CKA(X_{ℓ−1}, X_ℓ) with linear CKA (Kornblith et al. 2019) of centred pooled states,
  CKA(X, Y) = ‖XᵀY‖²_F / (‖XᵀX‖_F‖YᵀY‖_F); the consecutive-layer score of arXiv 2602.05988.
- 1 − mean_i cos(x_i^{ℓ−1}, x_i^ℓ), each text's pooled state at ℓ−1 against ℓ (PRiSM, LREC 2026).

A layer that still changes the states a lot is read as one not yet settled (higher = better pick).
Layer 0 (the embeddings) has no predecessor: its score is None.
"""

from __future__ import annotations

import numpy as np


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA of X (n, d1) and Y (n, d2), both centred here; 1 for identical (or rescaled) X and Y."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    if len(X) < max(X.shape[1], Y.shape[1]):  # the n×n Gram matrices are smaller: same value
        kx, ky = X @ X.T, Y @ Y.T
        num, den = float(np.sum(kx * ky)), float(np.linalg.norm(kx) * np.linalg.norm(ky))
    else:
        num = float(np.linalg.norm(X.T @ Y) ** 2)
        den = float(np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))
    return num / den if den > 0 else 0.0


def cka_change_scores(states: np.ndarray) -> list[float | None]:
    """1 − CKA(X_{ℓ−1}, X_ℓ) per layer: states (L+1, n, d) → (L+1,), None at layer 0."""
    return [None] + [1.0 - linear_cka(states[i - 1], states[i]) for i in range(1, len(states))]


def cosine_change_scores(states: np.ndarray) -> list[float | None]:
    """1 − mean cosine of each text's state at ℓ−1 and ℓ: states (L+1, n, d) → (L+1,), None at layer 0."""
    out: list[float | None] = [None]
    for i in range(1, len(states)):
        a, b = np.asarray(states[i - 1], np.float64), np.asarray(states[i], np.float64)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cos = np.sum(a * b, axis=1) / np.where(na * nb > 0, na * nb, 1.0)
        out.append(float(1.0 - cos.mean()))
    return out
