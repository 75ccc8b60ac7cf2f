"""The hidden-state variability ratio ν of Xie et al. (2022), eq. 3.

For vectors ``h`` grouped by label ``y`` (C classes, class means ``m_y``,
``m`` the mean of the class means)::

    Σ_w = 1/C Σ_y 1/|G_y| Σ_{h∈G_y} (h−m_y)(h−m_y)ᵀ
    Σ_b = 1/C Σ_y (m_y−m)(m_y−m)ᵀ
    ν   = 1/C · trace(Σ_w Σ_b⁺)

Σ_b has rank r ≤ C−1. With the thin SVD of the (weighted) centred class means
``Mᵀ = U S Vᵀ`` we have ``Σ_b⁺ = U S⁻² Uᵀ`` and therefore::

    trace(Σ_w Σ_b⁺) = Σ_k (u_kᵀ Σ_w u_k) / s_k²

which needs only the projections of the centred vectors on the r columns of U:
O(N·d·r) work, no d×d matrix and no d×d pseudo-inverse. Everything runs in
float64 (the two passes over the states on torch's CPU kernels, the small
C×d algebra in NumPy). :func:`variability` is the only implementation of ν in Variscope;
the app, the CLI, the benchmarks and the tests all call it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from analysis.errors import VariscopeError
from analysis.recommend import DEFAULT_TOLERANCE, recommend_layer

WEIGHTINGS = ("equal", "size")


def class_index(labels: np.ndarray, label_names: Sequence[str] | None = None):
    """Return (classes, inverse, counts) and check that ν is defined."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise VariscopeError(f"labels must be a 1-D array, got shape {labels.shape}")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        only = _name(classes[0], label_names) if len(classes) else "none"
        raise VariscopeError(
            f"the variability ratio needs at least 2 classes, but the data has {len(classes)} (class: {only})"
        )
    small = [(_name(c, label_names), int(k)) for c, k in zip(classes, counts, strict=True) if k < 2]
    if small:
        c, k = small[0]
        raise VariscopeError(f"class '{c}' has only {k} example; every class needs at least 2 to estimate its spread")
    return classes, inverse, counts


def _name(c, label_names):
    if label_names is not None:
        try:
            return label_names[int(c)]
        except (ValueError, IndexError, TypeError):
            pass
    return str(c)


def variability(
    h: np.ndarray,
    labels: np.ndarray,
    *,
    weighting: str = "equal",
    label_names: Sequence[str] | None = None,
) -> float:
    """Variability ratio ν of one layer.

    Parameters
    ----------
    h : array of shape (n_samples, n_features)
        One pooled vector per input.
    labels : array of shape (n_samples,)
        Class of each input (ints or strings).
    weighting : {"equal", "size"}
        ``"equal"`` (default) is the paper's eq. 3: every class counts 1/C in
        both Σ_w and Σ_b and ``m`` is the mean of the class means. ``"size"``
        weights class y by n_y/N (``m`` is then the global mean), the variant
        the reference code explores.
    label_names : optional sequence, used only in error messages.

    Returns
    -------
    float
        ν = 1/C · trace(Σ_w Σ_b⁺) ≥ 0. Lower means better-separated classes.
    """
    h = np.asarray(h)
    if h.dtype.kind != "f":
        h = h.astype(np.float64)
    if h.ndim != 2:
        raise VariscopeError(f"h must have shape (n_samples, n_features), got {h.shape}")
    if len(h) != len(labels):
        raise VariscopeError(f"h has {len(h)} rows but labels has {len(labels)}")
    classes, inverse, counts = class_index(labels, label_names)
    return _nu(h, inverse, counts, weighting)


def _nu(h: np.ndarray, inverse: np.ndarray, counts: np.ndarray, weighting: str) -> float:
    """ν from states (any float dtype) and a precomputed class index.

    Two passes over row blocks of ``h`` converted to float64 (at most
    ``_BLOCK_ELEMS`` values each, so a large float32 layer is never copied
    whole; a layer that fits in one block is converted once for both passes).
    Pass 1 forms the class sums (scatter-add, O(N·d)), pass 2 the projections
    on the r ≤ C−1 directions of Σ_b (one matrix product, O(N·d·r)). The
    passes run on torch's CPU kernels in float64: its conversion and
    scatter-add are multi-threaded, and they share the thread pool the
    forward pass just used. Raises VariscopeError on NaN or infinite states.
    """
    import torch

    C, d = len(counts), h.shape[1]
    if weighting == "equal":
        pi = np.full(C, 1.0 / C)
    elif weighting == "size":
        pi = counts / counts.sum()
    else:
        raise VariscopeError(f"unknown weighting '{weighting}'; use one of {WEIGHTINGS}")
    idx = torch.from_numpy(np.ascontiguousarray(inverse, dtype=np.int64))
    blocks = _blocks64(h)
    sums_t = torch.zeros((C, d), dtype=torch.float64)
    for rows, block in blocks():
        sums_t.index_add_(0, idx[rows], block)
    sums = sums_t.numpy()
    if not np.all(np.isfinite(sums)):  # float32 sums cannot overflow float64
        raise VariscopeError("the hidden states contain NaN or infinite values")
    means = sums / counts[:, None]  # (C, d) class means m_y
    m = pi @ means  # (d,) weighted mean of the means
    Mw = np.sqrt(pi)[:, None] * (means - m)  # (C, d); Σ_b = Mwᵀ Mw
    U, ev = between_eig(Mw, np.sqrt(pi))  # (d, r) directions, (r,) eigenvalues of Σ_b
    if ev is None:
        return float("inf")  # all class means coincide
    Ud = torch.from_numpy(np.ascontiguousarray(U))  # (d, r)
    mU = torch.from_numpy(means @ U)  # (C, r) projected class means
    sq = torch.zeros((C, U.shape[1]), dtype=torch.float64)
    for rows, block in blocks():
        y = idx[rows]
        P = block @ Ud  # (rows, r) projections
        P -= mU[y]  # centred on their class means
        sq.index_add_(0, y, P.square_())
    w = pi @ (sq.numpy() / counts[:, None])  # (r,) u_kᵀ Σ_w u_k
    return float(np.sum(w / ev) / C)


def between_eig(Mw: np.ndarray, root_pi: np.ndarray):
    """Eigenvectors U (d, r) and eigenvalues ev (r,) of Σ_b = Mwᵀ Mw above the rank tolerance.

    Mw (C, d) holds the weighted centred class means, so ``root_pi @ Mw = 0``
    exactly: rank(Σ_b) ≤ C−1. When d ≥ 4C we deflate that known null vector
    (a Householder reflection) and diagonalise the (C−1)×(C−1) Gram matrix:
    its rounding noise (~C·eps·ev₀) stays well below the tolerance
    max(d, C)·eps·ev₀, and it is ~3× cheaper than an SVD of the d×C matrix.
    Otherwise (few features, many classes) the SVD of Mwᵀ is used, whose
    null singular values are at the eps² level. Returns (None, None) when
    Σ_b = 0.
    """
    C, d = Mw.shape
    if d >= 4 * C:
        v = root_pi.copy()
        v[0] += 1.0  # reflect root_pi onto -e₁ (v[0] ≥ 1: no cancellation)
        M = (Mw - np.outer(v, (2.0 / (v @ v)) * (v @ Mw)))[1:]  # (C−1, d), drops the null direction
        ev, V = np.linalg.eigh(M @ M.T)
        ev, V = ev[::-1], V[:, ::-1]
        if ev.size == 0 or ev[0] <= 0.0:
            return None, None
        keep = ev > _rank_tol(d, C) * ev[0]
        ev, V = ev[keep], V[:, keep]
        return (M.T @ V) / np.sqrt(ev), ev
    U, s, _ = np.linalg.svd(Mw.T, full_matrices=False)  # U (d, C), s (C,)
    ev = s**2
    if ev.size == 0 or ev[0] == 0.0:
        return None, None
    keep = ev > _rank_tol(d, C) * ev[0]
    return U[:, keep], ev[keep]


_BLOCK_ELEMS = 1 << 22  # 32 MB of float64 per block


def _blocks64(h: np.ndarray):
    """Return a callable yielding ``(slice, float64 torch block)`` over row blocks of h.

    Blocks hold at most ``_BLOCK_ELEMS`` values, in a per-thread scratch
    buffer that is reused between calls (a fresh 10 MB array costs more in
    page faults than the conversion itself). If h fits in one block it is
    converted once and every call reuses it. The blocks share memory with
    the buffer (or with h when it is already float64): read them, never
    write them.
    """
    import torch

    N, d = h.shape
    if h.dtype not in (np.float16, np.float32, np.float64) or any(stride < 0 for stride in h.strides):
        h = np.array(h, dtype=np.float64 if h.dtype.itemsize > 8 else h.dtype)  # torch cannot view these
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only arrays: we only read them
        src = torch.from_numpy(h)
    step = max(1, min(N, _BLOCK_ELEMS // max(d, 1)))
    if step >= N and h.dtype == np.float64:
        return lambda: iter([(slice(0, N), src)])
    buf = torch.from_numpy(_scratch(step * d).reshape(step, d))
    if step >= N:
        buf.copy_(src)
        return lambda: iter([(slice(0, N), buf)])

    def gen():
        for s in range(0, N, step):
            e = min(N, s + step)
            b = buf[: e - s]
            b.copy_(src[s:e])
            yield slice(s, e), b

    return gen


_local = threading.local()


def _scratch(size: int) -> np.ndarray:
    """A float64 scratch array of ``size`` values owned by the calling thread."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < size:
        buf = _local.buf = np.empty(size)
    return buf[:size]


def _rank_tol(d: int, C: int) -> float:
    """Relative tolerance on Σ_b's eigenvalues: max(d, C)·eps (numpy's pinv rule)."""
    return max(d, C) * np.finfo(np.float64).eps


def variability_pinv(h: np.ndarray, labels: np.ndarray, *, weighting: str = "equal") -> float:
    """Reference: the plain d×d formula with a pseudo-inverse (slow; tests and bench).

    Builds Σ_w and Σ_b as d×d matrices and calls ``np.linalg.pinv`` with the
    tolerance max(d, C)·eps·σ_max, the same rank rule as :func:`variability`.
    """
    h = np.asarray(h, dtype=np.float64)
    classes, inverse, counts = class_index(labels)
    C, d = len(classes), h.shape[1]
    pi = np.full(C, 1.0 / C) if weighting == "equal" else counts / counts.sum()
    means = np.stack([h[inverse == c].mean(axis=0) for c in range(C)])
    m = pi @ means
    Sw = np.zeros((d, d))
    Sb = np.zeros((d, d))
    for c in range(C):
        X = h[inverse == c] - means[c]
        Sw += pi[c] * (X.T @ X) / counts[c]
        mu = (means[c] - m)[:, None]
        Sb += pi[c] * (mu @ mu.T)
    Sb_pinv = np.linalg.pinv(Sb, rtol=_rank_tol(d, C), hermitian=True)
    return float(np.trace(Sw @ Sb_pinv) / C)


@dataclass
class CurveResult:
    """ν for every layer of a model on one labelled sample.

    layers : list of int, 0 = embedding output, 1..L = transformer layers.
    variability : list of float, ν per layer (same order).
    band : optional (low, high) lists, bootstrap percentiles per layer.
    counts : examples per class name.
    settings : how it was computed (weighting, bootstrap, percentiles, seed, tolerance).
    argmin_share, plateau_share : optional, per layer (aligned with ``layers``), the share of the
        bootstrap resamples in which that layer is ℓ* under the argmin or the plateau rule; each
        sums to 1, layer 0 has 0 (ℓ* is chosen over 1..L). How sure the recommendation is.
    """

    layers: list[int]
    variability: list[float]
    counts: dict[str, int]
    band: tuple[list[float], list[float]] | None = None
    settings: dict = field(default_factory=dict)
    argmin_share: list[float] | None = None
    plateau_share: list[float] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["band"] = None if self.band is None else {"low": self.band[0], "high": self.band[1]}
        return d

    def to_csv(self) -> str:
        return curve_csv(self.to_dict())


def curve_csv(curve: dict) -> str:
    """CSV text of a curve dict (``CurveResult.to_dict()``): layer, variability[, band_low, band_high]."""
    band = curve.get("band")
    lines = ["layer,variability" + (",band_low,band_high" if band else "")]
    for i, layer in enumerate(curve["layers"]):
        row = f"{layer},{curve['variability'][i]!r}"
        if band:
            row += f",{band['low'][i]!r},{band['high'][i]!r}"
        lines.append(row)
    return "\n".join(lines) + "\n"


def layer_shares(boot: np.ndarray, *, rule: str, tolerance: float = DEFAULT_TOLERANCE) -> list[float]:
    """Per layer, the share of bootstrap resamples in which it is ℓ* under ``rule``.

    boot : (B, L+1) ν of each resample at each layer. Returns L+1 floats summing to 1
    (0 at layer 0 for L ≥ 1: ℓ* is chosen over 1..L, as :func:`recommend_layer` does).
    """
    boot = np.asarray(boot, dtype=float)
    picks = [recommend_layer(row, rule=rule, tolerance=tolerance) for row in boot]
    return (np.bincount(picks, minlength=boot.shape[1]) / max(len(picks), 1)).tolist()


#: The CurveResult fields of the ℓ* shares (the streamed paths move them out of a band's facts).
SHARE_KEYS = ("argmin_share", "plateau_share")


def _shares(boot: np.ndarray, tolerance: float) -> dict:
    return {
        "argmin_share": layer_shares(boot, rule="argmin"),
        "plateau_share": layer_shares(boot, rule="plateau", tolerance=tolerance),
    }


def variability_curve(
    states: np.ndarray,
    labels: np.ndarray,
    *,
    weighting: str = "equal",
    bootstrap: int = 0,
    percentiles: tuple[float, float] = (5.0, 95.0),
    seed: int = 0,
    label_names: Sequence[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> CurveResult:
    """ν for every layer.

    Parameters
    ----------
    states : array of shape (n_layers, n_samples, n_features)
        Pooled hidden states; index 0 is the embedding output.
    labels : array of shape (n_samples,)
    bootstrap : int
        Number B of resamples (with replacement, within each class, so class
        sizes stay fixed) for a percentile band and the ℓ* shares; 0 for none.
    tolerance : the plateau rule's, for ``plateau_share``.
    """
    states = np.asarray(states)
    if states.ndim != 3:
        raise VariscopeError(f"states must have shape (layers, n, d), got {states.shape}")
    if states.shape[1] != len(labels):
        raise VariscopeError(f"states have {states.shape[1]} rows but labels has {len(labels)}")
    classes, inverse, counts = class_index(labels, label_names)
    if weighting not in WEIGHTINGS:
        raise VariscopeError(f"unknown weighting '{weighting}'; use one of {WEIGHTINGS}")
    names = [_name(c, label_names) for c in classes]
    resamples = []
    if bootstrap and bootstrap > 0:
        rng = np.random.default_rng(seed)
        members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
        resamples = [
            np.concatenate([rng.choice(g, size=len(g), replace=True) for g in members]) for _ in range(int(bootstrap))
        ]
    nus, boot = [], np.empty((len(resamples), len(states)))
    for l in range(len(states)):
        h_layer = states[l] if states.dtype.kind == "f" else states[l].astype(np.float64)
        try:
            nus.append(_nu(h_layer, inverse, counts, weighting))
        except VariscopeError as e:
            raise VariscopeError(f"layer {l}: {e}") from None
        for b, idx in enumerate(resamples):
            boot[b, l] = _nu(h_layer[idx], inverse[idx], counts, weighting)
    band, shares = None, {}
    if resamples:
        lo, hi = np.percentile(boot, percentiles, axis=0)
        band, shares = (lo.tolist(), hi.tolist()), _shares(boot, tolerance)
    return CurveResult(
        layers=list(range(len(states))),
        variability=[float(v) for v in nus],
        counts={n: int(k) for n, k in zip(names, counts, strict=True)},
        band=band,
        settings={
            "weighting": weighting,
            "bootstrap": int(bootstrap),
            "percentiles": list(percentiles),
            "seed": seed,
            "tolerance": tolerance,
        },
        **shares,
    )


def kept_band(
    nu: Sequence[float],
    states: np.ndarray,
    labels: np.ndarray,
    *,
    bootstrap: int,
    weighting: str = "equal",
    seed: int = 0,
    percentiles: tuple[float, float] = (5.0, 95.0),
    label_names: Sequence[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[tuple[list[float], list[float]], dict]:
    """A band around ``nu`` (exact, from all N texts) from ``bootstrap`` resamples of K kept rows.

    ``nu`` (L+1,), ``states`` (L+1, K, d) of K seeded rows kept from the N texts, ``labels`` (K,).
    Per layer the band keeps the resamples' relative spread, the ratio q_hi/q_lo of their
    percentiles, centred on ν on a log scale: ν·√(q_lo/q_hi) to ν·√(q_hi/q_lo). The raw
    percentiles would not do: ν of K texts is biased against ν of N (and resampling with
    replacement biases it again), so on real data they often lie wholly below the exact ν.
    The band describes K texts, so it is wider than the uncertainty of ν from all N.
    Returns ((low, high), facts): facts keep the sample's own ν and raw band, and the ℓ* shares
    of its resamples (``argmin_share``, ``plateau_share``: they describe the K kept texts).
    """
    boot = variability_curve(
        states,
        labels,
        weighting=weighting,
        bootstrap=bootstrap,
        percentiles=percentiles,
        seed=seed,
        label_names=label_names,
        tolerance=tolerance,
    )
    assert boot.band is not None
    low, high = [], []
    for v, q_lo, q_hi in zip(nu, *boot.band, strict=True):
        ok = np.isfinite(q_lo) and np.isfinite(q_hi) and q_lo > 0
        half = float(np.sqrt(q_hi / q_lo)) if ok else 1.0
        low.append(v / half)
        high.append(v * half)
    facts = {
        "sample_variability": boot.variability,
        "sample_band": {"low": boot.band[0], "high": boot.band[1]},
        "argmin_share": boot.argmin_share,
        "plateau_share": boot.plateau_share,
    }
    return (low, high), facts
