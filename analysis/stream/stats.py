"""ν from running statistics: no need to hold all the pooled states.

The labels of a sample are known before the forward pass, so its class sizes
n_c are too. With class weights π_c (``"equal"``: 1/C, ``"size"``: n_c/N)::

    Σ_w = Σ_c π_c/n_c Σ_{h∈c} (h−m_c)(h−m_c)ᵀ = W − Σ_c π_c m_c m_cᵀ,
    W   = Σ_c π_c/n_c Σ_{h∈c} h hᵀ

so one d×d float64 accumulator W per layer, the class sums (C×d) and the
counts give Σ_w and Σ_b exactly. They are sums: batches and processes add up
(:meth:`LayerStats.merge`, or one ``all_reduce`` of :meth:`LayerStats.flat`).
:meth:`LayerStats.variability` then evaluates, per layer, the same span
formula as :func:`analysis.variability.variability`,
ν = 1/C Σ_k u_kᵀ Σ_w u_k / s_k², with u_kᵀ Σ_w u_k = u_kᵀ W u_k − Σ_c π_c (m_c·u_k)²:
nothing larger than d×d is formed.

Memory: (L+1)·d² float64 for W (13 layers, d = 768: 61 MB), whatever N is.
Batches given as torch tensors on a GPU are summed there, in float64 (:meth:`LayerStats.update`):
the pooled states never cross to the CPU, only the rows the state sample may keep; the sums join
the CPU arrays when read. MPS has no float64: its batches are summed on the CPU.
Rounding: Σ_w is a difference, so its relative error grows like
eps·(|m|/σ)² (class means m, spread σ): 3e-8 when every feature sits 10⁴
spreads away from zero, still below the float32 noise of the states.
The kept rows (:class:`KeptRows`, a bottom-k choice) hold up to ``keep`` states per
layer, the same rows for every layer, for projections or cards later.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis.errors import VariscopeError
from analysis.variability import WEIGHTINGS, between_eig, class_index

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _priority(seed: int, index: np.ndarray) -> np.ndarray:
    """A seeded pseudo-random uint64 per global row index (SplitMix64 of seed and index)."""
    with np.errstate(over="ignore"):
        z = (np.asarray(index, dtype=np.uint64) + np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def kept_rows(n: int, keep: int, seed: int = 0) -> np.ndarray:
    """The rows (sorted) that a :class:`KeptRows` of ``keep`` holds once it has seen rows 0…n−1.

    Known from the seed and n alone, before any state: a run can refuse a sample too small for it
    before its forward pass.
    """
    return np.sort(np.argsort(_priority(seed, np.arange(n)), kind="stable")[:keep])


def check_band_sample(labels: np.ndarray, label_names: Sequence[str], keep: int, seed: int = 0) -> None:
    """One line, before the forward pass, when the kept rows of ``keep`` rows cannot give a bootstrap band.

    ``labels``: class index of each of the N rows in order (N,). The band resamples the kept
    states of every class, so each class needs 2 of them; the message gives the ``keep`` that would do.
    """
    C = len(label_names)
    got = np.bincount(labels[kept_rows(len(labels), keep, seed)], minlength=C)
    if np.all(got >= 2):
        return
    c = int(np.argmin(got))
    order = labels[np.argsort(_priority(seed, np.arange(len(labels))), kind="stable")]
    second = [np.flatnonzero(order == k) for k in range(C)]  # a class's 2nd row in priority order enters at K
    need = max(int(w[1]) + 1 for w in second if len(w) >= 2)
    raise VariscopeError(
        f"the bootstrap band resamples the kept rows of {keep} texts (--keep), which holds {got[c]} of class "
        f"'{label_names[c]}'; it needs 2 of every class: use --keep {need} or more"
    )


class KeptRows:
    """At most ``keep`` rows kept uniformly at random, seeded (bottom-k by a hash of the row index).

    A row is kept when its priority is among the ``keep`` smallest seen, so the
    result depends only on the seed and the set of row indices seen, not on the
    batch order or split, and two sets of kept rows merge exactly (disjoint rows).
    ``states`` (L+1, k, d) float32, ``index`` and ``labels`` (k,), sorted by index.
    Rows that may enter wait until a quarter of ``keep`` of them have come (or the states are read):
    the kept set is rebuilt about log(N/keep) times in a stream of N rows, not once per batch.
    """

    def __init__(self, keep: int, seed: int = 0):
        if keep < 0:
            raise VariscopeError(f"keep must be ≥ 0 rows, got {keep}")
        self.keep, self.seed = int(keep), int(seed)
        self._states: np.ndarray | None = None
        self._index = np.empty(0, dtype=np.int64)
        self._labels = np.empty(0, dtype=np.int64)
        self._prio = np.empty(0, dtype=np.uint64)
        self._pending: list[tuple] = []  # (states, labels, index, priorities) not yet combined
        self._n_pending = 0

    @property
    def states(self) -> np.ndarray | None:
        self._flush()
        return self._states

    @states.setter
    def states(self, v: np.ndarray | None) -> None:
        self._flush()
        self._states = v

    @property
    def index(self) -> np.ndarray:
        self._flush()
        return self._index

    @index.setter
    def index(self, v: np.ndarray) -> None:
        self._flush()
        self._index = v

    @property
    def labels(self) -> np.ndarray:
        self._flush()
        return self._labels

    @labels.setter
    def labels(self, v: np.ndarray) -> None:
        self._flush()
        self._labels = v

    def update(self, states, labels: np.ndarray, index: np.ndarray) -> None:
        """Offer rows: ``states`` (L+1, b, d) array, or tensor on any device (only rows that may enter are copied)."""
        if self.keep == 0 or len(index) == 0:
            return
        prio = _priority(self.seed, index)
        pick = None
        if len(self._prio) >= self.keep:
            new = prio < self._prio.max()
            if not new.any():
                return
            pick = np.flatnonzero(new)
            labels, index, prio = labels[pick], index[pick], prio[pick]
        self._add(_rows(states, pick), np.asarray(labels), np.asarray(index), prio)

    def merge(self, other: KeptRows) -> None:
        if other.states is not None:  # reading it combines other's waiting rows
            self._add(other.states, other.labels, other.index, other._prio)
            self._flush()

    def _add(self, states, labels, index, prio) -> None:
        self._pending.append((states, labels, index, prio))
        self._n_pending += len(prio)
        if self._n_pending >= max(1, self.keep // 4):  # a quarter: at most K/4 rows wait (memory)
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            parts, self._pending, self._n_pending = self._pending, [], 0
            self._combine(parts)

    def _combine(self, parts: list[tuple]) -> None:
        """Keep the ``keep`` smallest priorities of the kept rows and ``parts``, sorted by index."""
        if self._states is not None:
            parts = [(self._states, self._labels, self._index, self._prio), *parts]
        labels, index, prio = (np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))
        pick = np.sort(np.argsort(prio, kind="stable")[: self.keep])
        pick = pick[np.argsort(index[pick], kind="stable")]
        # the kept states gathered part by part and layer by layer, not all concatenated first:
        # the rebuild then needs the new kept set and one layer's rows more, not twice the kept set
        starts = np.cumsum([0] + [len(p[3]) for p in parts])
        part = np.searchsorted(starts, pick, side="right") - 1
        first = parts[0][0]
        states = np.empty((first.shape[0], len(pick), first.shape[2]), np.result_type(*(p[0] for p in parts)))
        for j, p in enumerate(parts):
            rows = np.flatnonzero(part == j)
            for l in range(states.shape[0]):
                states[l, rows] = p[0][l, pick[rows] - starts[j]]
        self._states, self._labels, self._index, self._prio = states, labels[pick], index[pick], prio[pick]


def _rows(states, pick: np.ndarray | None) -> np.ndarray:
    """``states[:, pick]`` (all rows if None) as a new float32 array; a tensor is indexed where it lies."""
    if isinstance(states, np.ndarray):
        return np.array(states if pick is None else states[:, pick], dtype=np.float32)
    import torch

    if pick is not None:
        states = states[:, torch.from_numpy(pick).to(states.device)]
    return np.array(states.float().cpu().numpy(), dtype=np.float32)


def _on_device(states) -> bool:
    """Whether a batch is summed where it lies: a torch tensor on a device other than the CPU and MPS."""
    return not isinstance(states, np.ndarray) and getattr(getattr(states, "device", None), "type", "cpu") not in (
        "cpu",
        "mps",
    )


def _accumulate(W: np.ndarray | None, sums: np.ndarray, X: np.ndarray, y: np.ndarray, row_weight: np.ndarray) -> None:
    """W += Xᵀ diag(row_weight[y]) X and sums[:, c] += Σ_{y=c} X, per layer, in float64, in place.

    Through torch's CPU kernels, which run in the forward pass's own thread pool between
    batches: numpy's OpenBLAS keeps threads of its own that spin after every product and
    take the cores from the model's (on 2 cores the stream ran ~13 % slower at batch 128).
    """
    import torch

    Xt = torch.from_numpy(np.require(X, np.float64, ["C", "W"]))  # a copy only if read-only or strided
    if W is not None:
        torch.from_numpy(W).baddbmm_(Xt.transpose(1, 2) * torch.from_numpy(row_weight[y]), Xt)
    torch.from_numpy(sums).index_add_(1, torch.from_numpy(np.require(y, np.int64, ["C", "W"])), Xt)


def merge_kept(parts: Sequence[KeptRows]) -> KeptRows:
    """One set of kept rows from several of the same size and seed (e.g. one per process)."""
    if not parts:
        raise VariscopeError("no kept rows to merge")
    out = KeptRows(parts[0].keep, parts[0].seed)
    for part in parts:
        if (part.keep, part.seed) != (out.keep, out.seed):
            raise VariscopeError("cannot merge kept rows of different sizes or seeds")
        out.merge(part)
    return out


class LayerStats:
    """Running statistics of every layer, enough for ν.

    Parameters
    ----------
    n_layers : number of layers L+1 (index 0 = embeddings).
    dim : feature size d.
    class_sizes : n_c of every class (C ≥ 2, each ≥ 2), known before the pass;
        labels passed to :meth:`update` are class indices 0..C−1.
    weighting : "equal" (the paper) or "size", as in :func:`analysis.variability.variability`.
    keep, seed : how many rows keep their states, and their seed (keep 0: none).
    moments : False keeps no W (class sums and counts only, (L+1)·C·d): the first pass of
        the two-pass variant (:mod:`analysis.stream.twopass`); :meth:`variability` then refuses.
    """

    def __init__(
        self,
        n_layers: int,
        dim: int,
        class_sizes: Sequence[int] | np.ndarray,
        *,
        weighting: str = "equal",
        keep: int = 0,
        seed: int = 0,
        label_names: Sequence[str] | None = None,
        moments: bool = True,
    ):
        if weighting not in WEIGHTINGS:
            raise VariscopeError(f"unknown weighting '{weighting}'; use one of {WEIGHTINGS}")
        sizes = np.asarray(class_sizes, dtype=np.int64)
        class_index(np.repeat(np.arange(len(sizes)), sizes), label_names)  # ≥ 2 classes of ≥ 2
        self.sizes, self.weighting, self.label_names = sizes, weighting, label_names
        C = len(sizes)
        pi = np.full(C, 1.0 / C) if weighting == "equal" else sizes / sizes.sum()
        self.pi = pi
        self.row_weight = pi / sizes  # π_c / n_c, the weight of one row of class c in W
        self.n_layers, self.dim, self.moments = int(n_layers), int(dim), bool(moments)
        self._W = np.zeros((n_layers, dim, dim) if moments else (n_layers, 0, 0))
        self._sums = np.zeros((n_layers, C, dim))
        self._dev: tuple | None = None  # (W, sums) float64 tensors on a GPU, added into the arrays when read
        self.counts = np.zeros(C, dtype=np.int64)
        self.kept = KeptRows(keep, seed)

    @property
    def W(self) -> np.ndarray:
        """(L+1, d, d) float64: Σ_c π_c/n_c Σ_{h∈c} h hᵀ per layer ((L+1, 0, 0) without moments)."""
        self._settle()
        return self._W

    @W.setter
    def W(self, v: np.ndarray) -> None:
        self._settle()
        self._W = v

    @property
    def sums(self) -> np.ndarray:
        """(L+1, C, d) float64: the class sums per layer."""
        self._settle()
        return self._sums

    @sums.setter
    def sums(self, v: np.ndarray) -> None:
        self._settle()
        self._sums = v

    def _settle(self) -> None:
        """Add what was summed on a GPU into the CPU arrays (one copy of W and the sums)."""
        if self._dev is not None:
            (W, sums), self._dev = self._dev, None
            self._W += W.cpu().numpy()
            self._sums += sums.cpu().numpy()

    @property
    def n_seen(self) -> int:
        return int(self.counts.sum())

    def update(self, states, labels: np.ndarray, index: np.ndarray | None = None) -> None:
        """Add one batch: ``states`` (L+1, b, d), ``labels`` (b,) class indices, ``index`` (b,) row ids.

        ``states``: an array, or a torch tensor; one on a CUDA device is summed there in float64
        and only the rows that may be kept are copied to the CPU (a CPU tensor is read
        in place, an MPS one copied: no float64 there). ``index`` (the rows' positions in the whole
        sample) only decides the kept rows; by default rows are numbered in the order they arrive.
        """
        on_device = _on_device(states)
        if not on_device and not isinstance(states, np.ndarray) and hasattr(states, "device"):
            states = states.cpu().numpy()  # a CPU tensor read in place: the same float64 sums as an array's
        X = states if on_device else np.asarray(states, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        if X.ndim != 3 or X.shape[0] != self.n_layers or X.shape[2] != self.dim:
            raise VariscopeError(f"a batch must have shape ({self.n_layers}, b, {self.dim}), got {X.shape}")
        if X.shape[1] != len(y):
            raise VariscopeError(f"a batch has {X.shape[1]} rows but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= len(self.sizes)):
            raise VariscopeError(f"labels must be class indices 0..{len(self.sizes) - 1}")
        if index is None:
            index = self.n_seen + np.arange(len(y))
        if on_device:
            self._accumulate_on_device(X, y)
        else:
            _accumulate(self.W if self.moments else None, self.sums, X, y, self.row_weight)
        self.counts += np.bincount(y, minlength=len(self.sizes))
        self.kept.update(states, y, np.asarray(index, dtype=np.int64))

    def _accumulate_on_device(self, states, y: np.ndarray) -> None:
        """:func:`_accumulate` on the tensor's device, into float64 sums kept there until read."""
        import torch

        with torch.inference_mode():  # always: the sums are inference tensors, updated in place only inside it
            X = states.to(torch.float64)
            if self._dev is None:
                shapes = (self._W.shape, self._sums.shape)
                self._dev = tuple(torch.zeros(sh, dtype=torch.float64, device=X.device) for sh in shapes)
            W, sums = self._dev
            yt = torch.as_tensor(y, device=X.device)
            if self.moments:
                rw = torch.as_tensor(self.row_weight, dtype=torch.float64, device=X.device)[yt]
                W.baddbmm_(X.transpose(1, 2) * rw, X)
            sums.index_add_(1, yt, X)

    def merge(self, other: LayerStats) -> LayerStats:
        """Add ``other``'s statistics (another batch range or process) to these; returns self."""
        if (
            self.W.shape != other.W.shape
            or self.sums.shape != other.sums.shape
            or not np.array_equal(self.sizes, other.sizes)
        ):
            raise VariscopeError("cannot merge statistics of different layers, sizes or classes")
        if self.weighting != other.weighting:
            raise VariscopeError("cannot merge statistics with different class weightings")
        self.W += other.W
        self.sums += other.sums
        self.counts += other.counts
        self.kept.merge(other.kept)
        return self

    def flat(self) -> np.ndarray:
        """W, the class sums and the counts as one float64 vector (for one ``all_reduce``)."""
        return np.concatenate([self.W.ravel(), self.sums.ravel(), self.counts.astype(np.float64)])

    def load_flat(self, v: np.ndarray) -> None:
        """Inverse of :meth:`flat` (after the reduction)."""
        a, b = self.W.size, self.W.size + self.sums.size
        self.W = np.asarray(v[:a], dtype=np.float64).reshape(self.W.shape).copy()
        self.sums = np.asarray(v[a:b], dtype=np.float64).reshape(self.sums.shape).copy()
        self.counts = np.rint(np.asarray(v[b:])).astype(np.int64)

    def variability(self) -> list[float]:
        """ν per layer from the statistics; every declared row must have been seen."""
        if not self.moments:
            raise VariscopeError("these statistics keep no second moments W: ν needs the second pass (two-pass mode)")
        self.check_complete()
        return [self._nu(l) for l in range(self.n_layers)]

    def check_complete(self) -> None:
        """Refuse statistics that missed a row, or that hold NaN or infinite values (naming the layer)."""
        if not np.array_equal(self.counts, self.sizes):
            raise VariscopeError(
                f"the statistics saw {self.counts.tolist()} rows per class but the sample has {self.sizes.tolist()}"
            )
        for l in range(self.n_layers):
            if not (np.all(np.isfinite(self.sums[l])) and np.all(np.isfinite(self.W[l]))):
                raise VariscopeError(f"layer {l}: the hidden states contain NaN or infinite values")

    def _nu(self, l: int) -> float:
        pi, C = self.pi, len(self.sizes)
        means = self.sums[l] / self.sizes[:, None]  # (C, d)
        m = pi @ means
        U, ev = between_eig(np.sqrt(pi)[:, None] * (means - m), np.sqrt(pi))
        if U is None or ev is None:
            return float("inf")  # all class means coincide
        WU = self.W[l] @ U  # (d, r)
        w = np.einsum("dr,dr->r", U, WU) - pi @ np.square(means @ U)  # (r,) u_kᵀ Σ_w u_k
        return float(np.sum(w / ev) / C)
