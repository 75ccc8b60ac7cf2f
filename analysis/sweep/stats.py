"""The truth of a sweep: per-layer means, the oracle, the layers tied with it, and each selector's regret."""

from __future__ import annotations

import math
import warnings

import numpy as np

Z95 = 1.959963984540054


def sampling_floor(p: float, n_eval: int) -> float:
    """1.96 × the binomial SE of a difference of two accuracies near ``p`` on ``n_eval`` texts, √(2p(1−p)/n).

    It treats the two accuracies as independent samples; both are measured on the same held-out texts, whose
    paired error is usually smaller, so the floor is conservative (it widens tied sets, never narrows them).
    """
    p = float(np.clip(p, 0.0, 1.0))
    return Z95 * math.sqrt(2 * p * (1 - p) / max(n_eval, 1))


def tied_layers(per_seed: dict[int, list[float]], oracle: int, n_eval: int) -> tuple[list[int], str]:
    """Layers whose paired 95 % interval of (oracle − layer) over seeds includes 0, and how it was decided.

    per_seed : layer → metric per seed (same seeds, same order). The half-width is the larger of the
    t interval of the paired differences and a floor for the held-out sampling error, 1.96 × the
    binomial SE of a difference of two accuracies on ``n_eval`` texts (:func:`sampling_floor`).
    With one seed nothing can be tied: the set is the oracle alone.
    """
    from scipy.stats import t as student_t

    seeds = len(per_seed[oracle])
    if seeds < 2:
        return [oracle], "one seed: no interval, the tied set is the oracle alone"
    best = np.asarray(per_seed[oracle])
    floor = sampling_floor(float(best.mean()), n_eval)
    tq = float(student_t.ppf(0.975, seeds - 1))
    tied = []
    for layer, vals in per_seed.items():
        d = best - np.asarray(vals)
        half = max(tq * float(d.std(ddof=1)) / math.sqrt(seeds), floor)
        if layer == oracle or float(d.mean()) - half <= 0:
            tied.append(layer)
    return sorted(tied), f"paired t interval over {seeds} seeds, floor ±{floor:.4f} (binomial SE on {n_eval} texts)"


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
