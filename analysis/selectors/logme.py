"""LogME (You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning").

For each class c, a Bayesian linear regression of the one-hot target y_c (n,) on the features F (n, d)
with prior w ~ N(0, α⁻¹I) and noise N(0, β⁻¹); α and β maximise the evidence p(y_c | F, α, β) by the
paper's fixed-point iteration (MacKay 1992), and LogME is the maximised log evidence divided by n,
averaged over classes. Higher = labels more linearly predictable from the features.
"""

from __future__ import annotations

import numpy as np


def _evidence(y: np.ndarray, s2: np.ndarray, uy: np.ndarray, n: int, d: int, iters: int = 100) -> float:
    """Maximised log evidence / n of one target y (n,), from F's squared singular values s2 (r,) and Uᵀy (r,).

    With F = U S Vᵀ (thin, r = min(n, d)): m = V·(β s uy / (α + β s²)), ‖m‖² and ‖Fm − y‖² follow
    from the r projections, and log|αI + βFᵀF| = Σ log(α + β s²) + (d − r) log α.
    """
    alpha, beta = 1.0, 1.0
    yy = float(y @ y)
    for _ in range(iters):
        shrink = beta * s2 / (alpha + beta * s2)  # (r,)
        gamma = float(shrink.sum())  # effective number of parameters
        m2 = float(np.sum((beta * np.sqrt(s2) * uy / (alpha + beta * s2)) ** 2))
        resid = yy - float(np.sum(uy**2)) + float(np.sum((uy * (1 - shrink)) ** 2))
        new_alpha, new_beta = gamma / max(m2, 1e-12), (n - gamma) / max(resid, 1e-12)
        done = abs(new_alpha / new_beta - alpha / beta) <= 1e-3 * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if done:
            break
    shrink = beta * s2 / (alpha + beta * s2)
    m2 = float(np.sum((beta * np.sqrt(s2) * uy / (alpha + beta * s2)) ** 2))
    resid = yy - float(np.sum(uy**2)) + float(np.sum((uy * (1 - shrink)) ** 2))
    logdet = float(np.sum(np.log(alpha + beta * s2))) + (d - len(s2)) * np.log(alpha)
    ev = d / 2 * np.log(alpha) + n / 2 * np.log(beta) - beta / 2 * resid - alpha / 2 * m2
    return float((ev - logdet / 2 - n / 2 * np.log(2 * np.pi)) / n)


def logme(F: np.ndarray, labels: np.ndarray) -> float:
    """LogME of features F (n, d) for class labels (n,): the mean over classes of the log evidence / n."""
    F = np.asarray(F, dtype=np.float64)
    n, d = F.shape
    U, s, _ = np.linalg.svd(F, full_matrices=False)
    classes, y = np.unique(labels, return_inverse=True)
    out = []
    for c in range(len(classes)):
        target = (y == c).astype(np.float64)
        out.append(_evidence(target, s**2, U.T @ target, n, d))
    return float(np.mean(out))


def logme_scores(states: np.ndarray, labels: np.ndarray) -> list[float]:
    """:func:`logme` per layer: states (L+1, n, d) → (L+1,)."""
    return [logme(x, labels) for x in states]
