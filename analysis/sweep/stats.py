"""The truth of a sweep: per-layer means, the oracle, the layers tied with it, and each selector's regret."""

from __future__ import annotations

import math
import warnings

import numpy as np

# the reproduction's interval rules, so a tied layer and a tied strategy mean the same thing
from analysis.reproduce.stats import binomial_sd, paired, t_quantile


def interval_floor(p: float, n_eval: int, seeds: int) -> float:
    """The floor's half-width of a paired interval over ``seeds`` seeds of a metric near ``p`` on ``n_eval`` texts.

    The reproduction's rule (:func:`analysis.reproduce.stats.paired`): the per-seed sd is floored at the
    binomial sd √(p(1−p)/m) of the metric on m held-out texts, so the half-width is at least
    t₀.₉₇₅,ₙ₋₁ · √(p(1−p)/m) / √n. None of it is paired over texts, so it is conservative.
    """
    if seeds < 2:
        return 0.0
    return t_quantile(seeds - 1) * binomial_sd(float(np.clip(p, 0.0, 1.0)), n_eval) / math.sqrt(seeds)


def oracle_layer(layers: list[int], mean: list[float]) -> int:
    """The layer with the best mean metric; a diverged layer (NaN mean) is never the oracle (np.argmax would pick
    the first NaN). ValueError when every layer diverged."""
    finite = [(m, layer) for layer, m in zip(layers, mean, strict=True) if math.isfinite(m)]
    if not finite:
        raise ValueError("every layer's runs diverged: no oracle layer")
    return max(finite, key=lambda x: x[0])[1]  # the first of equal means, as np.argmax


def tied_layers(per_seed: dict[int, list[float]], oracle: int, n_eval: int) -> tuple[list[int], str]:
    """Layers whose paired 95 % interval of (oracle − layer) over seeds includes 0, and how it was decided.

    per_seed : layer → metric per seed (same seeds, same order). The interval is the reproduction's
    (:func:`analysis.reproduce.stats.paired`): mean ± t·se, the per-seed sd floored at the binomial sd of
    the metric on ``n_eval`` texts at the two layers' mean. With one seed nothing can be tied: the set is
    the oracle alone.
    """
    seeds = len(per_seed[oracle])
    if seeds < 2:
        return [oracle], "one seed: no interval, the tied set is the oracle alone"
    best = dict(enumerate(per_seed[oracle]))
    tied = []
    for layer, vals in per_seed.items():
        if not np.isfinite(vals).all():  # a diverged run: no interval, and never tied with the best
            continue
        p = (np.mean(per_seed[oracle]) + np.mean(vals)) / 2
        d = paired(best, dict(enumerate(vals)), sd_floor=binomial_sd(float(p), n_eval))
        if layer == oracle or d["outcome"] != "better":
            tied.append(layer)
    floor = interval_floor(float(np.mean(per_seed[oracle])), n_eval, seeds)
    how = (
        f"paired t interval over {seeds} seeds, per-seed sd floored at the binomial sd on {n_eval} texts, "
        f"floor ±{floor:.4f} at the oracle's mean"
    )
    return sorted(tied), how


def spearman(score: list[float | None] | None, truth: list[float]) -> float | None:
    """Spearman correlation of a selector's score with the trained metric across layers (None if undefined)."""
    from scipy.stats import spearmanr

    if score is None:
        return None
    pairs = [(s, t) for s, t in zip(score, truth, strict=True) if s is not None and np.isfinite(s)]
    if len(pairs) < 3:
        return None
    a, b = np.array(pairs).T
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(spearmanr(a, b).statistic)
    return rho if np.isfinite(rho) else None
