"""The selectors' inputs for a sweep: the layer cards (with gradient norms) of the training sample."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from analysis.cards.compute import compute_cards
from analysis.cards.scores import CardsConfig
from analysis.pipeline import AnalysisConfig
from analysis.selectors import selector_scores
from analysis.store.cache import DiskCache


def selector_inputs(
    cfg: AnalysisConfig, cache: DiskCache, use_cache: bool = True, loader: Callable | None = None
) -> tuple[dict, list[float]]:
    """(name → per-layer score (L+1,) or None, ν (L+1,)) from the cards of ``cfg``'s sample (cached)."""
    from analysis.pipeline import get_states

    states_res = get_states(cfg, cache=cache, use_cache=use_cache, loader=loader)
    smallest = int(np.unique(states_res.labels, return_counts=True)[1].min())
    cards_cfg = CardsConfig(folds=max(2, min(5, smallest)), grad=True)
    cards, _ = compute_cards(cfg, cards_cfg, cache=cache, use_cache=use_cache, states=states_res, loader=loader)
    return selector_scores(cards), list(cards.variability)
