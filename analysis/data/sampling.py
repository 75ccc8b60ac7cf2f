"""Stratified, seeded subsets of a task: ``n`` in total, a per-class cap, imbalance, fractions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.data.taskdata import TaskData
from analysis.errors import VariscopeError


@dataclass(frozen=True)
class SampleConfig:
    """How to draw a subset: ``n`` in total or ``per_class`` cap, stratified.

    imbalance : optional class ratios such as (1, 9): class i keeps a share
        proportional to ratio i (classes in label order; the list is cycled).
    fraction : keep this fraction of every class (data-scarcity studies).
    """

    n: int | None = 1000
    per_class: int | None = None
    seed: int = 0
    imbalance: tuple[float, ...] | None = None
    fraction: float | None = None


def sample(task: TaskData, cfg: SampleConfig) -> TaskData:
    """Deterministic stratified subset (indices kept in original order)."""
    idx, info = sample_index(task.labels, len(task.label_names), cfg, task.info)
    out = task.subset(idx)
    out.info = info
    return out


def sample_index(labels: np.ndarray, n_classes: int, cfg: SampleConfig, info: dict | None = None):
    """The rows :func:`sample` keeps, from the labels alone: (sorted row indices, info with warnings).

    The streamed files (:mod:`analysis.data.streamed`) read only the labels first and pick the
    same rows as the in-memory path.
    """
    if cfg.per_class is not None and cfg.per_class <= 0:
        raise VariscopeError(f"the per-class cap must be a positive number, got {cfg.per_class}")
    if cfg.n is not None and cfg.n <= 0:
        raise VariscopeError(f"n must be a positive number, got {cfg.n}")
    if cfg.fraction is not None and not 0 < cfg.fraction <= 1:
        raise VariscopeError(f"fraction must be in (0, 1], got {cfg.fraction}")
    labels = np.asarray(labels)
    C = n_classes
    avail = np.bincount(labels, minlength=C).astype(float)
    want = avail.copy()
    if cfg.fraction is not None:
        want = np.maximum(np.minimum(avail, 2), np.floor(avail * cfg.fraction))
    if cfg.imbalance:
        ratio = np.array([cfg.imbalance[i % len(cfg.imbalance)] for i in range(C)], float)
        if np.any(ratio <= 0):
            raise VariscopeError("imbalance ratios must be positive")
        scale = np.min(want / ratio)
        want = np.floor(ratio * scale)
    if cfg.per_class is not None:
        want = np.minimum(want, cfg.per_class)
    info = dict(info or {})
    if cfg.n is not None:
        total = want.sum()
        if cfg.n >= total:
            if cfg.n > total and cfg.per_class is None and not cfg.imbalance and cfg.fraction is None:
                info.setdefault("warnings", [])
                info["warnings"] = list(info["warnings"]) + [
                    f"n={cfg.n} is more than the {int(total)} texts available; using all of them"
                ]
        else:
            want = _allocate(want, cfg.n)
    rng = np.random.default_rng(cfg.seed)
    picked = []
    for c in range(C):
        idx = np.flatnonzero(labels == c)
        picked.append(idx[rng.permutation(len(idx))[: int(want[c])]])
    idx = np.sort(np.concatenate(picked)) if picked else np.array([], int)
    info["n_available"] = int(len(labels))
    return idx, info


def check_thinned(labels: np.ndarray, sampled: np.ndarray, names: list[str], cfg: SampleConfig) -> None:
    """One line when the sampling, not the data, left a class with a single text (ν needs two per class).

    ``labels``: class indices of every usable row (N,); ``sampled``: those of the sample, before
    :func:`compact_classes`. A class the data itself holds once is left to ν's own check.
    """
    C = len(names)
    avail = np.bincount(np.asarray(labels, dtype=np.int64), minlength=C)
    got = np.bincount(np.asarray(sampled, dtype=np.int64), minlength=C)
    thin = np.flatnonzero((got == 1) & (avail >= 2))
    if not len(thin):
        return
    name = names[int(thin[0])]
    did = f"the sample holds 1 text of {len(thin)} class(es) (first '{name}', which has {avail[thin[0]]})"
    if cfg.per_class == 1:
        fix = "a per-class cap of 1 keeps one text per class; use a cap of at least 2"
    elif cfg.n is not None and cfg.n < 2 * int(np.count_nonzero(avail >= 2)):
        usable = int(np.count_nonzero(avail >= 2))
        did = f"n={cfg.n} spread over {usable} classes of 2 or more texts gives most of them 1 text or none: " + did
        fix = f"raise n to at least {2 * usable} (2 per class), or use data with fewer classes"
    else:
        fix = "the imbalance ratios leave it 1 text; raise n or the smallest ratio"
    raise VariscopeError(f"{did}; ν needs at least 2 texts of every class it sees: {fix}")


def compact_classes(labels: np.ndarray, label_names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop declared classes that ``labels`` lacks (renumbering the rest in order)."""
    present = np.unique(labels)
    if len(present) == len(label_names):
        return labels, label_names
    remap = np.full(len(label_names), -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    return remap[labels].astype(np.int64), [label_names[c] for c in present]


def _allocate(want: np.ndarray, n: int) -> np.ndarray:
    """Split n over classes proportionally to ``want`` (largest remainder), capped by want.

    If that leaves a class with fewer than the two examples ν needs, every class
    first gets min(2, want) (when n allows) and the rest is split proportionally.
    """
    base = _largest_remainder(want, n)
    if np.any((base < 2) & (want >= 2)) and n >= 2 * np.count_nonzero(want):
        floor = np.minimum(want, 2)
        base = floor + _largest_remainder(want - floor, n - int(floor.sum()))
    return base


def _largest_remainder(want: np.ndarray, n: int) -> np.ndarray:
    if n <= 0 or want.sum() <= 0:
        return np.zeros_like(want)
    share = want / want.sum() * n
    base = np.minimum(np.floor(share), want)
    rest = int(n - base.sum())
    order = np.argsort(-(share - base), kind="stable")
    for c in order:
        if rest <= 0:
            break
        if base[c] < want[c]:
            base[c] += 1
            rest -= 1
    return base
