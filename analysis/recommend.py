"""Picking the classifier layer ℓ* and the layers to tune from a ν curve."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis.errors import VariscopeError

RULES = ("argmin", "plateau")
#: The plateau rule's tolerance, percent above the minimum (read by settings.CURVE_DEFAULTS).
DEFAULT_TOLERANCE = 10.0


def recommend_layer(
    nu: Sequence[float], *, rule: str = RULES[0], tolerance: float = DEFAULT_TOLERANCE, min_layer: int = 1
) -> int:
    """Index of the recommended classifier layer ℓ*.

    nu : ν per layer, index 0 = embeddings (never recommended unless it is the only one).
    rule : "argmin" — the layer of lowest ν (the paper);
           "plateau" — the lowest layer whose ν is within ``tolerance`` percent
           of the minimum: fewer layers kept, less compute.
    """
    curve = np.asarray(nu, dtype=float)
    if curve.ndim != 1 or len(curve) == 0:
        raise VariscopeError("the variability curve is empty")
    lo = min(min_layer, len(curve) - 1)
    cand = curve[lo:]
    if rule == "argmin":
        return int(lo + np.nanargmin(cand))
    if rule == "plateau":
        if tolerance < 0:
            raise VariscopeError(f"plateau tolerance must be ≥ 0 %, got {tolerance}")
        best = np.nanmin(cand)
        ok = np.flatnonzero(cand <= best * (1 + tolerance / 100.0))
        return int(lo + ok[0])
    raise VariscopeError(f"unknown rule '{rule}'; use one of {', '.join(RULES)}")


def tuned_layers(classifier_layer: int, k: int) -> list[int]:
    """The k transformer layers ending at ℓ* (1-based), e.g. (5, 2) → [4, 5]."""
    if classifier_layer < 1:
        raise VariscopeError(f"the classifier layer must be ≥ 1, got {classifier_layer}")
    if k < 1:
        raise VariscopeError(f"the number of tuned layers must be ≥ 1, got {k}")
    return list(range(max(1, classifier_layer - k + 1), classifier_layer + 1))


def top_layers(n_layers: int, k: int) -> list[int]:
    """The top k layers of an L-layer model: the paper's baseline."""
    return tuned_layers(n_layers, k)
