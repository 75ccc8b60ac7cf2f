"""Fisher / LDA criterion tr(Σ_w⁻¹Σ_b) on standardised states, Σ_w shrunk by Ledoit–Wolf.

The classical multi-class Fisher discriminant criterion (Fisher 1936; Rao 1948): the total
between-class spread measured in units of the within-class covariance. Ledoit & Wolf (2004)
shrinkage keeps Σ_w invertible when d is comparable to n. Higher = classes further apart.
"""

from __future__ import annotations

import numpy as np

from analysis.selectors.nu import standardise


def fisher_lda(X: np.ndarray, labels: np.ndarray) -> float:
    """tr(Σ_w⁻¹Σ_b) of one layer X (n, d), standardised first; classes weighted equally, like ν."""
    from sklearn.covariance import ledoit_wolf

    Z = standardise(X)
    classes, y = np.unique(labels, return_inverse=True)
    means = np.stack([Z[y == c].mean(axis=0) for c in range(len(classes))])  # (C, d)
    within = Z - means[y]  # each text minus its class mean
    sw, _ = ledoit_wolf(within, assume_centered=True)
    centred = means - means.mean(axis=0)  # (C, d)
    # tr(Σ_w⁻¹ Σ_b) with Σ_b = 1/C Σ_c m̃_c m̃_cᵀ equals 1/C Σ_c m̃_cᵀ Σ_w⁻¹ m̃_c: no d×d inverse
    sol = np.linalg.solve(sw, centred.T)  # (d, C)
    return float(np.sum(centred.T * sol) / len(classes))


def fisher_scores(states: np.ndarray, labels: np.ndarray) -> list[float]:
    """:func:`fisher_lda` per layer: states (L+1, n, d) → (L+1,)."""
    return [fisher_lda(x, labels) for x in states]
