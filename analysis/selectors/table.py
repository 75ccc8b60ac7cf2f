"""Every selector in one table: its per-layer score from the layer cards, and the layer it picks.

A selector's score is a list indexed by layer (0 = embeddings), higher = better pick; None where a
layer has no score. Selectors without a score (the top layer, ν's plateau rule) give only a layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from analysis.cards.scores import LayerCards
from analysis.selectors.change import cka_change_scores, cosine_change_scores
from analysis.selectors.fisher import fisher_scores
from analysis.selectors.logme import logme_scores
from analysis.selectors.nu import nu_plateau_layer, nu_standardised_scores

#: name → one line: what it scores, and its source
SELECTORS: dict[str, str] = {
    "nu_argmin": "lowest ν, the hidden-state variability ratio (Xie et al. 2022, eq. 3)",
    "nu_plateau": "lowest layer within 10 % of ν's minimum (Variscope's plateau rule; no score)",
    "nu_standardised": "lowest ν of states with every feature standardised, so no rogue dimension dominates "
    "(ν of Xie et al. 2022 on z-scored features; Variscope)",
    "fisher_lda": "largest tr(Σ_w⁻¹Σ_b) on standardised states, Ledoit–Wolf Σ_w (Fisher 1936; Ledoit & Wolf 2004)",
    "probe": "best cross-validated linear-probe accuracy on frozen states (Alain & Bengio 2016; the layer cards)",
    "knn": "best leave-one-out cosine kNN accuracy on frozen states (Wu et al. 2018's kNN evaluation; the layer cards)",
    "logme": "largest LogME, the evidence of a Bayesian linear model on the states (You et al. 2021)",
    "rgn": "largest relative gradient norm ‖∇W‖/‖W‖ of the block, one backward pass (auto-RGN, Lee et al. 2023)",
    "cka_change": "largest 1 − linear CKA between layers ℓ−1 and ℓ (Kornblith et al. 2019; arXiv 2602.05988)",
    "cosine_change": "largest 1 − mean cosine of each text's state at ℓ−1 and ℓ (PRiSM, LREC 2026)",
    "top": "the top layer (the usual default; no score)",
}

#: the selectors computed from the states alone, stored as columns of the layer cards
STATE_SELECTORS = ("nu_standardised", "fisher_lda", "logme", "cka_change", "cosine_change")


def state_scores(states: np.ndarray, labels: np.ndarray) -> dict[str, list[float | None]]:
    """The :data:`STATE_SELECTORS` of pooled states (L+1, n, d) with labels (n,): name → (L+1,) scores."""
    return {
        "nu_standardised": list(nu_standardised_scores(states, labels)),
        "fisher_lda": list[float | None](fisher_scores(states, labels)),
        "logme": list[float | None](logme_scores(states, labels)),
        "cka_change": cka_change_scores(states),
        "cosine_change": cosine_change_scores(states),
    }


#: column headers of the per-layer table (the cards CLI and the Layers page); ↓: lower picks, ↑: higher picks
HEADERS: dict[str, str] = {
    "nu_argmin": "ν ↓",
    "nu_standardised": "ν standardised ↓",
    "fisher_lda": "Fisher ↑",
    "probe": "probe ↑",
    "knn": "kNN ↑",
    "logme": "LogME ↑",
    "rgn": "RGN ↑",
    "cka_change": "1−CKA ↑",
    "cosine_change": "1−cos ↑",
}
#: the selectors whose score is −ν: shown as ν
NEGATED = ("nu_argmin", "nu_standardised")


def selector_scores(cards: LayerCards | dict) -> dict[str, list[float | None] | None]:
    """name → per-layer score (L+1,) from the cards (or their dict), None for the selectors without one (or not
    computed)."""
    get: Callable[[str], Any] = cards.get if isinstance(cards, dict) else lambda k: getattr(cards, k)
    extra, grad = get("selectors") or {}, get("grad_norm")
    return {
        "nu_argmin": [-v for v in get("variability")],
        "nu_plateau": None,
        "nu_standardised": extra.get("nu_standardised"),
        "fisher_lda": extra.get("fisher_lda"),
        "probe": list(get("probe_accuracy")),
        "knn": list(get("knn_accuracy")),
        "logme": extra.get("logme"),
        "rgn": None if grad is None else list(grad),
        "cka_change": extra.get("cka_change"),
        "cosine_change": extra.get("cosine_change"),
        "top": None,
    }


def per_layer_table(cards: LayerCards | dict) -> tuple[list[dict], dict[str, int | None]]:
    """Every selector of the cards, per layer and picked: (rows: {"layer", header → value} for layers 0..L, ν's
    as ν rather than −ν; name → the layer it picks among 1..L). Selectors without a score, or not computed, have
    no column but keep their pick (top, plateau) or None."""
    scores = selector_scores(cards)
    nu = [float(v) for v in (cards["variability"] if isinstance(cards, dict) else cards.variability)]
    layers = list(range(1, len(nu)))
    picks = {name: pick(name, score, nu, layers) for name, score in scores.items()}
    cols = {name: score for name, score in scores.items() if score is not None}
    rows = [
        {
            "layer": l,
            **{
                HEADERS[name]: None if (v := s[l]) is None else (-v if name in NEGATED else v)
                for name, s in cols.items()
            },
        }
        for l in range(len(nu))
    ]
    return rows, picks


def pick(name: str, score: Sequence[float | None] | None, nu: Sequence[float], layers: Sequence[int]) -> int | None:
    """The layer among ``layers`` that selector ``name`` picks: the best score, or its rule (top, plateau).

    None when a scored selector has no finite score on those layers (e.g. RGN not computed).
    """
    layers = list(layers)
    if name == "top":
        return max(layers)
    if name == "nu_plateau":
        return layers[nu_plateau_layer([nu[i] for i in layers], min_layer=0)]
    if score is None:
        return None
    vals = [(float(v), i) for i in layers if (v := score[i]) is not None and np.isfinite(v)]
    return max(vals, key=lambda v: (v[0], -v[1]))[1] if vals else None
