"""Layer cards: for every layer, ν beside a linear probe, a nearest-neighbour score and the cost of stopping there.

All scores come from the pooled states already cached (:func:`~analysis.pipeline.get_states`):
no new forward pass. Per layer ℓ (0 = embeddings):

- ``variability``: ν (:func:`~analysis.variability.variability_curve`, with a bootstrap band when asked);
- ``probe_accuracy`` / ``probe_macro_f1``: held-out scores of a linear probe, a scikit-learn
  ``LogisticRegression`` on standardised states (``StandardScaler`` in a ``Pipeline``, fitted per
  fold), over stratified k folds with a fixed seed, the same folds for every layer; each is the mean
  over folds of the fold's score (what ``cross_val_score(...).mean()`` gives);
- ``knn_accuracy``: leave-one-out k-nearest-neighbour accuracy, cosine similarity, the point itself
  excluded, majority vote with ties going to the class of the nearest tied neighbour;
- ``params_kept`` / ``flops_per_example``: the Training page's cost model
  (:func:`~analysis.training.cost.cost`) for a classifier on ℓ — see :mod:`analysis.cards.compute`;
- ``grad_norm`` (optional): the relative gradient norm ‖∇W‖/‖W‖ of each block (auto-RGN);
- ``rank_agreement``: Spearman correlation across layers between −ν and the probe accuracy.

Probes of different layers run in parallel threads with BLAS held at one thread each: on a busy
machine OpenBLAS's own threads spin and make a small fit 20-50× slower than one thread.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import numpy as np

from analysis.errors import VariscopeError
from analysis.variability import variability_curve

CARDS_VERSION = 1

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CardsConfig:
    """Everything that decides the cards of one sample of states (hashed into their cache key).

    folds : stratified folds of the probe; seed : their shuffle; max_iter / C : LogisticRegression's;
    k : neighbours of the kNN score; bootstrap / weighting : ν's; grad : also the relative gradient
    norms, from ``grad_batches`` batches of ``grad_batch_size`` texts (one backward pass each).
    """

    folds: int = 5
    k: int = 10
    seed: int = 0
    max_iter: int = 200
    C: float = 1.0
    bootstrap: int = 0
    weighting: str = "equal"
    grad: bool = False
    grad_batches: int = 2
    grad_batch_size: int = 16

    def check(self) -> None:
        """One-line errors for impossible settings (before any work)."""
        if self.folds < 2:
            raise VariscopeError(f"the probe needs at least 2 folds, got {self.folds}")
        if self.k < 1:
            raise VariscopeError(f"k of the nearest-neighbour score must be at least 1, got {self.k}")
        if self.max_iter < 1 or not self.C > 0:
            raise VariscopeError("the probe needs max_iter ≥ 1 and C > 0")
        if not 0 <= self.bootstrap <= 1000:
            raise VariscopeError(f"bootstrap resamples must be between 0 and 1000, got {self.bootstrap}")
        if self.grad_batches < 1 or self.grad_batch_size < 1:
            raise VariscopeError("the gradient norms need at least one batch of at least one text")

    def validate(self, labels: np.ndarray, *, kept: bool = False) -> None:
        """:meth:`check`, then one-line errors for settings this sample cannot support.

        ``kept``: ``labels`` are those of a streamed run's state sample (``--keep``), whose size is the fix.
        """
        self.check()
        _, counts = np.unique(labels, return_counts=True)
        n, m = len(labels), int(counts.min()) if len(counts) else 0
        what = f"the state sample of {n} texts (--keep)" if kept else f"the sample of {n} texts"
        more = "keep more states (--keep)" if kept else "use a larger sample"
        if len(counts) < 2:
            raise VariscopeError(
                f"{what} holds texts of {len(counts)} class; the probe needs {self.folds} texts of every class: {more}"
            )
        if m < self.folds:
            fewer = f" or --folds {m}" if m >= 2 else ""
            raise VariscopeError(
                f"{what} holds {m} text(s) of its smallest class, fewer than the probe's {self.folds} folds: "
                f"{more}{fewer}"
            )
        if self.k >= n - 1:
            raise VariscopeError(
                f"k={self.k} neighbours, but each of the {n} texts has {n - 1} others: every vote would count all "
                f"of them and the kNN accuracy would say nothing about the layer; use a k below {n - 1}"
            )


@dataclass
class LayerCards:
    """The cards of every layer; each list is indexed by layer (0 = embeddings)."""

    layers: list[int]
    variability: list[float]
    probe_accuracy: list[float]
    probe_macro_f1: list[float]
    knn_accuracy: list[float]
    rank_agreement: float | None
    band: tuple[list[float], list[float]] | None = None
    params_kept: list[int] | None = None
    flops_per_example: list[float] | None = None
    grad_norm: list[float] | None = None
    settings: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    cache_hit: bool = False

    @property
    def recommended_layer(self) -> int:
        from analysis.recommend import recommend_layer

        return recommend_layer(self.variability)

    @property
    def probe_best_layer(self) -> int:
        return int(np.argmax(self.probe_accuracy))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["band"] = None if self.band is None else {"low": self.band[0], "high": self.band[1]}
        d.update(recommended_layer=self.recommended_layer, probe_best_layer=self.probe_best_layer)
        del d["cache_hit"], d["seconds"]
        return d

    def to_csv(self) -> str:
        cols = ["variability", "probe_accuracy", "probe_macro_f1", "knn_accuracy"]
        cols += [c for c in ("params_kept", "flops_per_example", "grad_norm") if getattr(self, c) is not None]
        lines = ["layer," + ",".join(cols)]
        for i, layer in enumerate(self.layers):
            lines.append(f"{layer}," + ",".join(repr(getattr(self, c)[i]) for c in cols))
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ probe
def probe_estimator(cc: CardsConfig):
    """The probe: StandardScaler then LogisticRegression (lbfgs), as one Pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=cc.C, max_iter=cc.max_iter))


def probe_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) indices of ``StratifiedKFold(folds, shuffle=True, random_state=seed)``."""
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(labels)), labels))


def probe_layer(X: np.ndarray, labels: np.ndarray, splits, cc: CardsConfig) -> tuple[float, float]:
    """Mean held-out accuracy and macro-F1 of the probe over ``splits``."""
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import f1_score

    est = probe_estimator(cc)
    acc, f1 = [], []
    for train, test in splits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pred = clone(est).fit(X[train], labels[train]).predict(X[test])
        acc.append(float(np.mean(pred == labels[test])))
        f1.append(float(f1_score(labels[test], pred, average="macro", zero_division=0)))
    return float(np.mean(acc)), float(np.mean(f1))


# ------------------------------------------------------------------ kNN
def knn_loo_accuracy(X: np.ndarray, labels: np.ndarray, k: int = 10, *, block: int = 1024) -> float:
    """Leave-one-out accuracy of a cosine k-nearest-neighbour vote (k clipped to n−1).

    Each point is classified by its k most similar other points (similarity ties: lower index
    first); the most frequent class wins, a tie between classes goes to the class of the nearest
    neighbour among the tied ones. Rows are processed in blocks, so memory is O(block·n).
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if n < 2:
        raise VariscopeError("the nearest-neighbour score needs at least 2 texts")
    k = min(k, n - 1)
    classes, y = np.unique(labels, return_inverse=True)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    Xn = X / np.where(norms > 0, norms, 1.0)
    correct = 0
    for s in range(0, n, block):
        e = min(n, s + block)
        sim = Xn[s:e] @ Xn.T  # (b, n) cosine similarities
        rows = np.arange(e - s)
        sim[rows, np.arange(s, e)] = -np.inf  # never vote for yourself
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(-sim, axis=1)[:, :k]
        order = np.lexsort((part, -np.take_along_axis(sim, part, axis=1)), axis=1)  # by similarity, then index
        nb = np.take_along_axis(part, order, axis=1)  # (b, k) nearest first
        yn = y[nb]
        counts = np.zeros((e - s, len(classes)), dtype=np.int64)
        np.add.at(counts, (rows[:, None], yn), 1)
        top = counts[rows[:, None], yn] == counts.max(axis=1, keepdims=True)  # neighbours of a winning class
        pred = yn[rows, np.argmax(top, axis=1)]  # the nearest of them decides
        correct += int(np.sum(pred == y[s:e]))
    return correct / n


def rank_agreement(variability: list[float], probe_accuracy: list[float]) -> float | None:
    """Spearman correlation between −ν and the probe accuracy across layers (None if undefined)."""
    from scipy.stats import spearmanr

    nu, acc = np.asarray(variability, dtype=float), np.asarray(probe_accuracy, dtype=float)
    if len(nu) < 2 or np.ptp(acc) == 0 or np.all(nu == nu[0]):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(spearmanr(-nu, acc).statistic)
    return None if not np.isfinite(rho) else rho


def agreement_words(rho: float | None) -> str:
    """The rank agreement in words, e.g. "ν and the probe agree on the ranking of layers: Spearman 0.93"."""
    if rho is None:
        return "ν and the probe cannot be compared: one of them is the same at every layer"
    verdict = "agree" if rho >= 0.5 else "agree only weakly" if rho > 0 else "disagree"
    return f"ν and the probe {verdict} on the ranking of layers: Spearman {rho:.2f}"


# ------------------------------------------------------------------ all layers
def layer_scores(
    states: np.ndarray, labels: np.ndarray, cc: CardsConfig, *, progress: Progress | None = None
) -> tuple[list[float], list[float], list[float]]:
    """Probe accuracy, probe macro-F1 and kNN accuracy of every layer, layers in parallel threads.

    ``progress(done_layers, total_layers)`` is called from the calling thread as layers finish.
    """
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels)
    splits = probe_folds(labels, cc.folds, cc.seed)
    n_layers = len(states)
    out: dict[int, tuple[float, float, float]] = {}

    def one(layer: int) -> tuple[float, float, float]:
        X = states[layer]
        acc, f1 = probe_layer(X, labels, splits, cc)
        return acc, f1, knn_loo_accuracy(X, labels, cc.k)

    workers = max(1, min(os.cpu_count() or 1, n_layers))
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(one, layer): layer for layer in range(n_layers)}
        for f in as_completed(futures):
            out[futures[f]] = f.result()
            if progress is not None:
                progress(len(out), n_layers)
    rows = [out[layer] for layer in range(n_layers)]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def layer_cards(
    states: np.ndarray,
    labels: np.ndarray,
    cc: CardsConfig | None = None,
    *,
    label_names: list[str] | None = None,
    progress: Progress | None = None,
) -> LayerCards:
    """The cards of every layer from pooled states (L+1, n, d); no cost or gradient columns."""
    cc = cc or CardsConfig()
    states = np.asarray(states)
    if states.ndim != 3 or states.shape[1] != len(labels):
        raise VariscopeError(f"states must have shape (layers, {len(labels)}, d), got {states.shape}")
    cc.validate(np.asarray(labels))
    t0 = time.perf_counter()
    curve = variability_curve(
        states, labels, weighting=cc.weighting, bootstrap=cc.bootstrap, seed=cc.seed, label_names=label_names
    )
    t1 = time.perf_counter()
    acc, f1, knn = layer_scores(states, labels, cc, progress=progress)
    t2 = time.perf_counter()
    return LayerCards(
        layers=curve.layers,
        variability=curve.variability,
        probe_accuracy=acc,
        probe_macro_f1=f1,
        knn_accuracy=knn,
        rank_agreement=rank_agreement(curve.variability, acc),
        band=curve.band,
        settings=asdict(cc),
        seconds={"variability": t1 - t0, "probe_knn": t2 - t1},
    )
