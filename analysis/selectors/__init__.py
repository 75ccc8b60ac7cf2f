"""Layer selectors: plain functions of the pooled states, each a per-layer score (higher = better pick) or a layer.

One idea per module: :mod:`~analysis.selectors.nu` (ν argmin, plateau, standardised),
:mod:`~analysis.selectors.fisher` (tr(Σ_w⁻¹Σ_b)), :mod:`~analysis.selectors.logme` (LogME),
:mod:`~analysis.selectors.change` (1 − CKA, 1 − cosine between consecutive layers); the probe, kNN and
relative-gradient-norm scores are the layer cards' own columns. :mod:`~analysis.selectors.table` lists them all.
"""

from analysis.selectors.table import (
    HEADERS,
    SELECTORS,
    STATE_SELECTORS,
    per_layer_table,
    pick,
    selector_scores,
    state_scores,
)

__all__ = ["HEADERS", "SELECTORS", "STATE_SELECTORS", "per_layer_table", "pick", "selector_scores", "state_scores"]
