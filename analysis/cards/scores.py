"""Layer cards: for every layer, ν beside a linear probe, a nearest-neighbour score and the cost of stopping there.

All scores come from the pooled states already cached (:func:`~analysis.pipeline.get_states`):
no new forward pass. Per layer ℓ (0 = embeddings):

- ``variability``: ν (:func:`~analysis.variability.variability_curve`, with a bootstrap band when asked);
- ``probe_accuracy`` / ``probe_macro_f1``: held-out scores of a linear probe, a multinomial logistic
  regression on standardised states with scikit-learn's objective (``StandardScaler`` then
  ``LogisticRegression(C)``, fitted per fold), fitted in torch for every layer and fold at once on the
  states' device (:mod:`analysis.cards.probe`), over stratified k folds with a fixed seed, the same
  folds for every layer; each is the mean over folds of the fold's score (what
  ``cross_val_score(...).mean()`` gives); ``probe_converged`` / ``probe_iterations`` say, per layer
  and fold, whether the fit met its tolerance and in how many L-BFGS iterations;
- ``knn_accuracy``: leave-one-out k-nearest-neighbour accuracy, cosine similarity, the point itself
  excluded, majority vote with ties going to the class of the nearest tied neighbour;
- ``params_kept`` / ``flops_per_example``: the Training page's cost model
  (:func:`~analysis.training.cost.cost`) for a classifier on ℓ — see :mod:`analysis.cards.compute`;
- ``grad_norm`` (optional): the relative gradient norm ‖∇W‖/‖W‖ of each block (auto-RGN);
- ``selectors``: the layer selectors computed from the states alone (:mod:`analysis.selectors`),
  one column each, added by :func:`~analysis.cards.compute.compute_cards`;
- ``rank_agreement``: Spearman correlation across layers between −ν and the probe accuracy.

kNN scores of different layers run in parallel threads with BLAS held at one thread each: on a busy
machine OpenBLAS's own threads spin and make small products 20-50× slower than one thread.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import numpy as np

from analysis.cards.probe import ProbeFits, fit_probes
from analysis.errors import VariscopeError
from analysis.settings import check_bootstrap
from analysis.variability import variability_curve

CARDS_VERSION = 3  # 2: the selector columns (analysis.selectors); 3: the torch probe, its convergence per fit

#: progress(done_layers, total_layers): the layers whose cards are computed so far
LayerProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class CardsConfig:
    """Everything that decides the cards of one sample of states (hashed into their cache key).

    folds : stratified folds of the probe; seed : their shuffle; max_iter / C / tol : the probe's L-BFGS
    iterations, inverse penalty and gradient tolerance, as scikit-learn's LogisticRegression takes them;
    k : neighbours of the kNN score; bootstrap / weighting : ν's; grad : also the relative gradient
    norms, from ``grad_batches`` batches of ``grad_batch_size`` texts (one backward pass each).
    """

    folds: int = 5
    k: int = 10
    seed: int = 0
    max_iter: int = 200
    C: float = 1.0
    tol: float = 1e-4
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
        if self.max_iter < 1 or not self.C > 0 or not self.tol > 0:
            raise VariscopeError("the probe needs max_iter ≥ 1, C > 0 and tol > 0")
        check_bootstrap(self.bootstrap)
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
    #: name → per-layer score of the selectors computed from the states (analysis.selectors.STATE_SELECTORS)
    selectors: dict[str, list[float | None]] | None = None
    probe_converged: list[list[bool]] | None = None  # [layer][fold]
    probe_iterations: list[list[int]] | None = None  # [layer][fold]
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
        extra = self.selectors or {}
        lines = ["layer," + ",".join(cols + list(extra))]
        for i, layer in enumerate(self.layers):
            vals = [repr(getattr(self, c)[i]) for c in cols]
            vals += ["" if v[i] is None else repr(v[i]) for v in extra.values()]
            lines.append(f"{layer}," + ",".join(vals))
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ probe
def probe_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) indices of ``StratifiedKFold(folds, shuffle=True, random_state=seed)``."""
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(labels)), labels))


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
        neighbours = np.take_along_axis(part, order, axis=1)  # (b, k) nearest first
        neighbour_labels = y[neighbours]
        counts = np.zeros((e - s, len(classes)), dtype=np.int64)
        np.add.at(counts, (rows[:, None], neighbour_labels), 1)
        top = counts[rows[:, None], neighbour_labels] == counts.max(
            axis=1, keepdims=True
        )  # neighbours of a winning class
        pred = neighbour_labels[rows, np.argmax(top, axis=1)]  # the nearest of them decides
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
    states: np.ndarray,
    labels: np.ndarray,
    cards_cfg: CardsConfig,
    *,
    progress: LayerProgress | None = None,
    device: str = "cpu",
) -> tuple[list[float], list[float], list[float], ProbeFits]:
    """Probe accuracy, probe macro-F1 and kNN accuracy of every layer, and the probe's fits.

    The probes of all layers and folds are one batched problem on ``device``
    (:func:`analysis.cards.probe.fit_probes`); the kNN scores then run layer by layer in
    parallel threads. ``progress(done_layers, total_layers)`` is called from the calling thread,
    (0, L+1) before the probe, then as the layers' kNN scores finish.
    """
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels)
    splits = probe_folds(labels, cards_cfg.folds, cards_cfg.seed)
    n_layers = len(states)
    if progress is not None:
        progress(0, n_layers)
    fits = fit_probes(
        states, labels, splits, C=cards_cfg.C, max_iter=cards_cfg.max_iter, tol=cards_cfg.tol, device=device
    )
    knn: dict[int, float] = {}
    workers = max(1, min(os.cpu_count() or 1, n_layers))
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        futures = {
            pool.submit(knn_loo_accuracy, states[layer], labels, cards_cfg.k): layer for layer in range(n_layers)
        }
        for f in as_completed(futures):
            knn[futures[f]] = f.result()
            if progress is not None:
                progress(len(knn), n_layers)
    acc, f1 = fits.accuracy.mean(1).tolist(), fits.macro_f1.mean(1).tolist()
    return acc, f1, [knn[layer] for layer in range(n_layers)], fits


def layer_cards(
    states: np.ndarray,
    labels: np.ndarray,
    cards_cfg: CardsConfig | None = None,
    *,
    label_names: list[str] | None = None,
    progress: LayerProgress | None = None,
    device: str = "cpu",
) -> LayerCards:
    """The cards of every layer from pooled states (L+1, n, d); no cost or gradient columns.

    ``device``: where the probe is fitted (:func:`layer_scores`).
    """
    cards_cfg = cards_cfg or CardsConfig()
    states = np.asarray(states)
    if states.ndim != 3 or states.shape[1] != len(labels):
        raise VariscopeError(f"states must have shape (layers, {len(labels)}, d), got {states.shape}")
    cards_cfg.validate(np.asarray(labels))
    t0 = time.perf_counter()
    curve = variability_curve(
        states,
        labels,
        weighting=cards_cfg.weighting,
        bootstrap=cards_cfg.bootstrap,
        seed=cards_cfg.seed,
        label_names=label_names,
    )
    t1 = time.perf_counter()
    acc, f1, knn, fits = layer_scores(states, labels, cards_cfg, progress=progress, device=device)
    t2 = time.perf_counter()
    return LayerCards(
        layers=curve.layers,
        variability=curve.variability,
        probe_accuracy=acc,
        probe_macro_f1=f1,
        knn_accuracy=knn,
        rank_agreement=rank_agreement(curve.variability, acc),
        band=curve.band,
        probe_converged=fits.converged.tolist(),
        probe_iterations=fits.iterations.tolist(),
        settings=asdict(cards_cfg),
        seconds={"variability": t1 - t0, "probe_knn": t2 - t1},
    )
