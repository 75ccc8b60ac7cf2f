"""ν as a layer selector: the paper's argmin, today's plateau rule, and ν of standardised states.

ν itself comes from :func:`analysis.variability.variability_curve` (the one implementation); these
only turn it into a per-layer score (higher = better pick) or a layer.
"""

from __future__ import annotations

import numpy as np

from analysis.recommend import recommend_layer
from analysis.variability import variability_curve


def nu_scores(states: np.ndarray, labels: np.ndarray) -> list[float]:
    """−ν per layer (states (L+1, n, d), labels (n,)) → (L+1,): the argmin of ν is the argmax (Xie et al. 2022)."""
    return [-v for v in variability_curve(states, labels).variability]


def nu_plateau_layer(nu: list[float], tolerance: float = 10.0, min_layer: int = 1) -> int:
    """The plateau rule's layer (analysis.recommend): the lowest layer within ``tolerance`` % of ν's minimum."""
    return recommend_layer(nu, rule="plateau", tolerance=tolerance, min_layer=min_layer)


def standardise(X: np.ndarray) -> np.ndarray:
    """Each feature of X (n, d) to mean 0 and sd 1 (constant features stay 0), in float64."""
    X = np.asarray(X, dtype=np.float64)
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def nu_standardised_scores(states: np.ndarray, labels: np.ndarray) -> list[float]:
    """−ν per layer of the states with every feature standardised: (L+1, n, d) → (L+1,).

    ν is not invariant to rescaling features, and decoder residual streams have a few "rogue"
    dimensions of very large variance that dominate Σ_w; standardising removes their weight.
    """
    z = np.stack([standardise(x) for x in states])
    return nu_scores(z, labels)
