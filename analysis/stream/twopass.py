"""ν in two passes when the d×d accumulators W of one pass would not fit in memory.

Pass 1 keeps, per layer, only the class sums and counts (:class:`analysis.stream.stats.LayerStats`
with ``moments=False``): the class means m_c, hence Σ_b and its r ≤ C−1 eigenvectors U with
eigenvalues s_k². Pass 2 (:class:`Projections`) accumulates per layer and class
Σ_{h∈c} ((h−m_c)ᵀU)², so that u_kᵀ Σ_w u_k = Σ_c π_c/n_c Σ_{h∈c} ((h−m_c)·u_k)² and
ν = 1/C Σ_k u_kᵀ Σ_w u_k / s_k²: the same two passes, in the same float64 algebra, as
:func:`analysis.variability.variability` makes over stored states (ν agrees to rounding).
Memory: (L+1)·C·d float64 (class sums, means and U), whatever N and d² are; the price
is a second forward pass. Both passes' statistics are sums (one ``all_reduce`` each).

:func:`memory_needs` gives the bytes of each mode; :func:`choose_mode` picks one for a budget.
"""

from __future__ import annotations

import numpy as np

from analysis.errors import VariscopeError
from analysis.stream.stats import LayerStats
from analysis.variability import between_eig

MODES = ("auto", "stream", "two-pass")


def memory_needs(n_layers: int, dim: int, n_classes: int, n_texts: int = 0) -> dict[str, int]:
    """Bytes that ν itself needs in each mode (not the model, one batch or the state sample).

    states : (L+1)·N·d float32 states; stream : W, (L+1)·d² float64, ×3 (the batch update's
    product and the copies of the reduction); two-pass : class sums, means and U,
    (L+1)·C·d float64, ×3.
    """
    return {
        "states": 4 * n_layers * n_texts * dim,
        "stream": 3 * 8 * n_layers * dim * dim,
        "two-pass": 3 * 8 * n_layers * n_classes * dim,
    }


def choose_mode(mode: str, n_layers: int, dim: int, n_classes: int, budget: int | None) -> str:
    """``mode`` if forced; for "auto" one pass (stream) when its W fits ``budget`` bytes, else two-pass."""
    if mode not in MODES:
        raise VariscopeError(f"unknown stream mode '{mode}'; use one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    if budget is None or memory_needs(n_layers, dim, n_classes)["stream"] <= budget:
        return "stream"
    return "two-pass"


def default_budget() -> int:
    """Half of the available memory, shared by the processes of this machine (torchrun's LOCAL_WORLD_SIZE)."""
    import os

    import psutil

    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return int(psutil.virtual_memory().available // (2 * local))


class Projections:
    """Pass 2: per layer and class, the squared projections of h − m_c on Σ_b's eigenvectors.

    ``first`` is the merged pass-1 statistics (all rows seen); its class means fix U.
    """

    def __init__(self, first: LayerStats):
        first.check_complete()
        self.pi, self.sizes, self.C = first.pi, first.sizes, len(first.sizes)
        self.n_layers, self.dim = first.n_layers, first.dim
        self.U: list[np.ndarray | None] = []
        self.ev: list[np.ndarray | None] = []
        self.mU: list[np.ndarray] = []
        for l in range(self.n_layers):
            means = first.sums[l] / self.sizes[:, None]  # (C, d)
            m = self.pi @ means
            U, ev = between_eig(np.sqrt(self.pi)[:, None] * (means - m), np.sqrt(self.pi))
            self.U.append(U)
            self.ev.append(ev)
            self.mU.append(np.zeros((self.C, 0)) if U is None else means @ U)  # (C, r)
        self.sq = [np.zeros((self.C, u.shape[1])) for u in self.mU]  # (C, r) per layer
        self.counts = np.zeros(self.C, dtype=np.int64)

    def update(self, states: np.ndarray, labels: np.ndarray) -> None:
        """Add one batch: ``states`` (L+1, b, d), ``labels`` (b,) class indices."""
        X = np.asarray(states, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        if X.ndim != 3 or X.shape[0] != self.n_layers or X.shape[2] != self.dim or X.shape[1] != len(y):
            raise VariscopeError(f"a batch must have shape ({self.n_layers}, {len(y)}, {self.dim}), got {X.shape}")
        onehot = np.eye(self.C)[y].T  # (C, b)
        for l, U in enumerate(self.U):
            if U is not None:
                P = X[l] @ U - self.mU[l][y]  # (b, r) centred projections
                self.sq[l] += onehot @ np.square(P)
        self.counts += np.bincount(y, minlength=self.C)

    def flat(self) -> np.ndarray:
        """The squared projections and counts as one float64 vector (for one ``all_reduce``)."""
        return np.concatenate([*(s.ravel() for s in self.sq), self.counts.astype(np.float64)])

    def load_flat(self, v: np.ndarray) -> None:
        offset = 0
        for l, s in enumerate(self.sq):
            self.sq[l] = np.asarray(v[offset : offset + s.size], dtype=np.float64).reshape(s.shape).copy()
            offset += s.size
        self.counts = np.rint(np.asarray(v[offset:])).astype(np.int64)

    def variability(self) -> list[float]:
        """ν per layer; every row of the sample must have been seen in this pass too."""
        if not np.array_equal(self.counts, self.sizes):
            raise VariscopeError(
                f"the second pass saw {self.counts.tolist()} rows per class but the sample has {self.sizes.tolist()}"
            )
        out = []
        for l in range(self.n_layers):
            eigvals = self.ev[l]
            if eigvals is None:
                out.append(float("inf"))  # all class means coincide
                continue
            if not np.all(np.isfinite(self.sq[l])):
                raise VariscopeError(f"layer {l}: the hidden states contain NaN or infinite values")
            w = self.pi @ (self.sq[l] / self.sizes[:, None])  # (r,) u_kᵀ Σ_w u_k
            out.append(float(np.sum(w / eigvals) / self.C))
        return out
