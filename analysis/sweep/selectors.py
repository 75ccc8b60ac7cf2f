"""The selectors' inputs for a sweep: the layer cards (with gradient norms) of the training sample.

A classifier on a pre-norm decoder truncated at ℓ pools block ℓ's output through the model's final
norm, while ``hidden_states[ℓ]`` (ℓ < L) is the raw residual stream; the sweep scores ν and every
selector on both (:data:`~analysis.models.hidden_states.REPRESENTATIONS`) so the evidence says which
one agrees with the trained truth. An encoder has no final norm: its one representation is "raw".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from analysis.cards.compute import compute_cards
from analysis.cards.scores import CardsConfig
from analysis.pipeline import AnalysisConfig
from analysis.selectors import selector_scores
from analysis.store.cache import DiskCache

#: representation → (name → per-layer score (L+1,) or None, ν (L+1,))
ByRepresentation = dict[str, tuple[dict, list[float]]]


def representations(cfg: AnalysisConfig, cache_root=None) -> tuple[str, ...]:
    """The representations of ``cfg``'s model worth scoring: ``cfg.representation`` first, then the other one
    when the model has a final norm (a pre-norm decoder); an encoder has only "raw" (they are the same).
    ``cache_root``: where the model is found (an offline model is converted there)."""
    from analysis.models.hidden_states import REPRESENTATIONS
    from analysis.models.load import has_final_norm
    from analysis.pipeline import concrete, resolve_target

    target = resolve_target(cfg, cache_root)
    cfg = concrete(cfg, target)
    if not has_final_norm(target.ref, cfg.trust_remote_code):  # the raw states are what the classifier pools
        return (cfg.representation,)
    return (cfg.representation, *(r for r in REPRESENTATIONS if r != cfg.representation))


def selector_inputs(
    cfg: AnalysisConfig,
    cache: DiskCache,
    use_cache: bool = True,
    loader: Callable | None = None,
    *,
    grad: bool = True,
) -> tuple[dict, list[float]]:
    """(name → per-layer score (L+1,) or None, ν (L+1,)) from the cards of ``cfg``'s sample (cached).

    ``grad`` False leaves the relative gradient norm out (its score is None).
    """
    from analysis.pipeline import get_states

    states_res = get_states(cfg, cache=cache, use_cache=use_cache, loader=loader)
    smallest = int(np.unique(states_res.labels, return_counts=True)[1].min())
    cards_cfg = CardsConfig(folds=max(2, min(5, smallest)), grad=grad)
    cards, _ = compute_cards(cfg, cards_cfg, cache=cache, use_cache=use_cache, states=states_res, loader=loader)
    return selector_scores(cards), list(cards.variability)


def selector_inputs_by_representation(
    cfg: AnalysisConfig, cache: DiskCache, use_cache: bool = True, loader: Callable | None = None
) -> ByRepresentation:
    """:func:`selector_inputs` for every one of :func:`representations` (``cfg.representation`` first).

    The relative gradient norm is a backward pass of the whole model, the same whatever the states are
    pooled from: it is computed once and shared.
    """
    reps = representations(cfg, cache.root)
    first = selector_inputs(replace(cfg, representation=reps[0]), cache, use_cache, loader)
    out: ByRepresentation = {reps[0]: first}
    for rep in reps[1:]:
        scores, nu = selector_inputs(replace(cfg, representation=rep), cache, use_cache, loader, grad=False)
        out[rep] = ({**scores, "rgn": first[0]["rgn"]}, nu)
    return out
