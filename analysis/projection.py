"""2-D/3-D projections of pooled states: PCA (instant) and UMAP (cached).

UMAP runs on PCA-reduced states (50 dimensions by default) for speed, with
cuML's GPU UMAP when it is importable and a CUDA GPU is present, otherwise
umap-learn. Results are cached on disk under a key made from the states' key
and every projection setting.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from analysis.errors import VariscopeError
from analysis.store.cache import DiskCache, make_key

PROJECTION_VERSION = 2
# umap-learn finds exact neighbours below this size, through a Python-level loop
# over all pairs (~1 s at n = 1000); we hand it the distance matrix instead.
EXACT_BELOW = 4096
_CDIST = {"cosine": "cosine", "euclidean": "euclidean", "manhattan": "cityblock", "correlation": "correlation"}
METHODS = ("umap", "pca")


@dataclass(frozen=True)
class ProjectionConfig:
    """Settings of a projection (all part of its cache key)."""

    method: str = "umap"
    dim: int = 2
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    seed: int = 0
    pca_dims: int = 50

    def validate(self, n: int) -> None:
        if self.method not in METHODS:
            raise VariscopeError(f"unknown projection '{self.method}'; use umap or pca")
        if self.dim not in (2, 3):
            raise VariscopeError(f"projection dimension must be 2 or 3, got {self.dim}")
        if self.method == "umap":
            if n < 4:
                raise VariscopeError(f"UMAP needs at least 4 points, got {n}")
            if not self.n_neighbors >= 2:
                raise VariscopeError(f"UMAP neighbours must be at least 2, got {self.n_neighbors}")
            if not 0 <= self.min_dist <= 1:
                raise VariscopeError(f"UMAP min_dist must be in [0, 1], got {self.min_dist}")
            if self.metric not in ("cosine", "euclidean", "manhattan", "correlation"):
                raise VariscopeError(f"unknown UMAP metric '{self.metric}'")


def pca(X: np.ndarray, dim: int = 2) -> np.ndarray:
    """Principal components of X (n, d) → (n, dim), float32, deterministic signs."""
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(0)
    k = min(dim, *Xc.shape)
    U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    Y = U[:, :k] * s[:k]
    signs = np.sign(Y[np.argmax(np.abs(Y), axis=0), range(k)])
    Y = Y * np.where(signs == 0, 1, signs)
    if k < dim:
        Y = np.pad(Y, ((0, 0), (0, dim - k)))
    return Y.astype(np.float32)


def gpu_umap_available() -> bool:
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import cuml  # noqa: F401

        return True
    except Exception:
        return False


def umap_project(X: np.ndarray, cfg: ProjectionConfig) -> np.ndarray:
    """UMAP of X (n, d) → (n, cfg.dim) float32, on PCA-reduced input."""
    n = len(X)
    cfg.validate(n)
    Z = (
        pca(X, min(cfg.pca_dims, X.shape[1], n))
        if cfg.pca_dims and X.shape[1] > cfg.pca_dims
        else np.asarray(X, np.float32)
    )
    k = min(cfg.n_neighbors, n - 1)
    if gpu_umap_available():
        from cuml.manifold import UMAP as cuUMAP

        return np.asarray(
            cuUMAP(
                n_components=cfg.dim, n_neighbors=k, min_dist=cfg.min_dist, metric=cfg.metric, random_state=cfg.seed
            ).fit_transform(Z),
            np.float32,
        )
    import umap

    metric, data = cfg.metric, Z
    if n < EXACT_BELOW:
        metric, data = "precomputed", pairwise_distances(Z, cfg.metric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = umap.UMAP(
            n_components=cfg.dim,
            n_neighbors=k,
            min_dist=cfg.min_dist,
            metric=metric,
            random_state=cfg.seed,
            n_jobs=1,
            init="spectral" if n > cfg.dim + 1 else "random",
        )
        return model.fit_transform(data).astype(np.float32)


def pairwise_distances(Z: np.ndarray, metric: str) -> np.ndarray:
    """Exact (n, n) float32 distances of the rows of Z (n, k), for UMAP's precomputed mode.

    Same values as umap-learn's own exact path, including its rule for
    degenerate rows under cosine (zero rows) and correlation (constant rows):
    distance 0 between two of them, 1 to any other row.
    """
    from scipy.spatial.distance import cdist

    Z = np.asarray(Z, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        D = cdist(Z, Z, _CDIST[metric])
    D = np.nan_to_num(D, nan=1.0)
    if metric in ("cosine", "correlation"):
        flat = ~np.any((Z - Z.mean(1, keepdims=True)) if metric == "correlation" else Z, axis=1)
        D[np.ix_(flat, flat)] = 0.0
    np.fill_diagonal(D, 0.0)
    return np.maximum(D, 0.0).astype(np.float32)


def aligned_umap(states: np.ndarray, layers, cfg: ProjectionConfig) -> dict:
    """AlignedUMAP of several layers at once (umap-learn), so that orientations are comparable
    across the small multiples: each text is tied to itself in neighbouring layers.

    Returns {layer: (n, dim) float32}.
    """
    import umap

    layers = list(layers)
    n = states.shape[1]
    cfg.validate(n)
    Zs = [
        pca(states[l], min(cfg.pca_dims, states.shape[2], n))
        if states.shape[2] > cfg.pca_dims
        else np.asarray(states[l], np.float32)
        for l in layers
    ]
    metric = cfg.metric
    if n < EXACT_BELOW:
        metric, Zs = "precomputed", [pairwise_distances(Z, cfg.metric) for Z in Zs]
    ident = {i: i for i in range(n)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = umap.AlignedUMAP(
            n_components=cfg.dim,
            n_neighbors=min(cfg.n_neighbors, n - 1),
            min_dist=cfg.min_dist,
            metric=metric,
            random_state=cfg.seed,
        )
        model.fit(Zs, relations=[ident] * (len(layers) - 1))
    return {l: np.asarray(e, np.float32) for l, e in zip(layers, model.embeddings_, strict=True)}


def project_layers(
    states: np.ndarray,
    layers,
    cfg: ProjectionConfig,
    *,
    states_key: str | None = None,
    cache: DiskCache | None = None,
    use_cache: bool = True,
    aligned: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Project the given layers of ``states`` (L+1, n, d).

    Returns {"coords": {layer: (n, dim) array}, "cache_hit": bool, "seconds": float}.
    With ``states_key`` and a cache, each layer's projection is cached on disk.
    ``aligned`` (UMAP, two or more layers): one AlignedUMAP fit over all the layers, cached as a whole.
    """
    t0 = time.perf_counter()
    layers = [int(l) for l in layers]
    for l in layers:
        if not 0 <= l < len(states):
            raise VariscopeError(f"layer {l} is out of range: this model has layers 0..{len(states) - 1}")
    cfg.validate(states.shape[1])
    store = cache if (cache is not None and states_key and use_cache) else None
    tag = states_key or ""

    def lookup(what: dict) -> tuple[str | None, tuple | None]:
        """(key, cached entry or None); (None, None) without a cache."""
        if store is None:
            return None, None
        key = make_key({**what, "version": PROJECTION_VERSION, "states": tag, **asdict(cfg)})
        return key, store.load("projections", key, version=PROJECTION_VERSION)

    def keep(key: str | None, arrays: dict, describe: str) -> None:
        if store is not None and key is not None:
            store.save("projections", key, arrays, version=PROJECTION_VERSION, meta={"describe": describe})

    if aligned and cfg.method == "umap" and len(layers) > 1:
        key, got = lookup({"what": "aligned", "layers": layers})
        if got is not None:
            coords = {l: got[0][f"layer{l}"] for l in layers}
        else:
            coords = aligned_umap(states, layers, cfg)
            keep(key, {f"layer{l}": c for l, c in coords.items()}, f"aligned umap of {tag[:8]}")
        if progress:
            progress(len(layers), len(layers))
        return {"coords": coords, "cache_hit": got is not None, "seconds": time.perf_counter() - t0}
    out, hits = {}, 0
    for i, l in enumerate(layers):
        key, got = lookup({"what": "projection", "layer": l})
        if got is not None:
            out[l] = got[0]["coords"]
            hits += 1
        else:
            X = states[l]
            out[l] = pca(X, cfg.dim) if cfg.method == "pca" else umap_project(X, cfg)
            keep(key, {"coords": out[l]}, f"{cfg.method} layer {l} of {tag[:8]}")
        if progress:
            progress(i + 1, len(layers))
    return {"coords": out, "cache_hit": hits == len(layers), "seconds": time.perf_counter() - t0}
