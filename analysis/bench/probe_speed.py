"""The cards' torch probe beside scikit-learn's, on the same states and folds: time and agreement.

:func:`probe_speed` times :func:`analysis.cards.probe.fit_probes` (every layer and fold in one batched
problem, on ``device``) and :func:`analysis.cards.probe.sklearn_probes` run as the cards ran it before
(one layer per thread, BLAS held at one thread each), alternating, medians of ``reps``; it also says how
far apart their mean fold accuracies and objectives are and how many fits of each converged.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _sklearn_threaded(states, labels, splits, C: float, max_iter: int, tol: float):
    """scikit-learn's fits of every layer, one layer per thread (the cards' way before the torch probe)."""
    from threadpoolctl import threadpool_limits

    from analysis.cards.probe import sklearn_probes

    workers = max(1, min(os.cpu_count() or 1, len(states)))
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        parts = list(
            pool.map(
                lambda l: sklearn_probes(states[l : l + 1], labels, splits, C=C, max_iter=max_iter, tol=tol),
                range(len(states)),
            )
        )
    return {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("accuracy", "objective", "converged")}


def probe_speed(
    states: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 200,
    tol: float = 1e-4,
    reps: int = 3,
    device: str = "cpu",
) -> dict:
    """Seconds of the torch probe and of scikit-learn's on ``states`` (L+1, n, d), and their agreement.

    Returns torch_s, sklearn_s (medians), speedup (sklearn_s / torch_s), max_accuracy_diff (largest
    |difference| of a layer's mean fold accuracy), max_objective_rel_diff, converged fits of each, shape.
    """
    from analysis.cards.probe import fit_probes
    from analysis.cards.scores import probe_folds

    splits = probe_folds(np.asarray(labels), folds, seed)
    t_torch, t_sk = [], []
    ours, ref = None, None
    for _ in range(reps):  # alternate so drift hits both
        t0 = time.perf_counter()
        ours = fit_probes(states, labels, splits, C=C, max_iter=max_iter, tol=tol, device=device)
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        t1 = time.perf_counter()
        ref = _sklearn_threaded(states, labels, splits, C, max_iter, tol)
        t2 = time.perf_counter()
        t_torch.append(t1 - t0)
        t_sk.append(t2 - t1)
    assert ours is not None and ref is not None
    ts, tk = statistics.median(t_torch), statistics.median(t_sk)
    return {
        "layers": int(states.shape[0]),
        "n": int(states.shape[1]),
        "dim": int(states.shape[2]),
        "folds": folds,
        "device": device,
        "reps": reps,
        "torch_s": ts,
        "sklearn_s": tk,
        "speedup": tk / ts,
        "max_accuracy_diff": float(np.abs(ours.accuracy.mean(1) - ref["accuracy"].mean(1)).max()),
        "max_objective_rel_diff": float(np.abs((ours.objective - ref["objective"]) / ref["objective"]).max()),
        "torch_converged": int(ours.converged.sum()),
        "sklearn_converged": int(ref["converged"].sum()),
        "fits": int(ours.converged.size),
        "torch_max_iterations": int(ours.iterations.max()),
    }
