import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp
from scipy.stats import special_ortho_group

from analysis.errors import VariscopeError
from analysis.variability import variability, variability_curve, variability_pinv


def blobs(rng, sizes, d, sep=1.0):
    y = np.repeat(np.arange(len(sizes)), sizes)
    centers = rng.normal(size=(len(sizes), d)) * sep
    return rng.normal(size=(len(y), d)) + centers[y], y


@pytest.mark.parametrize("sizes", [[30, 40], [5, 9, 40, 12, 7], list(range(3, 23)), [200, 4, 11]])
@pytest.mark.parametrize("d", [8, 64, 300])
def test_matches_dxd_pinv_formula(rng, sizes, d):
    h, y = blobs(rng, sizes, d)
    a, b = variability(h, y), variability_pinv(h, y)
    assert a > 0
    assert abs(a - b) / b < 1e-6


def test_size_weighting_matches_reference(rng):
    h, y = blobs(rng, [100, 10, 30], 20)
    a = variability(h, y, weighting="size")
    assert abs(a - variability_pinv(h, y, weighting="size")) / a < 1e-6
    assert abs(a - variability(h, y)) / a > 1e-3  # really a different quantity


def test_binary_closed_form(rng):
    h, y = blobs(rng, [50, 80], 10)
    m0, m1 = h[y == 0].mean(0), h[y == 1].mean(0)
    delta = m1 - m0
    Sw = 0.5 * (np.cov(h[y == 0].T, bias=True) + np.cov(h[y == 1].T, bias=True))
    closed = 2 * delta @ Sw @ delta / (delta @ delta) ** 2
    assert variability(h, y) == pytest.approx(closed, rel=1e-10)


def test_rotation_scaling_permutation_relabelling(rng):
    h, y = blobs(rng, [20, 30, 25], 12)
    base = variability(h, y)
    Q = special_ortho_group.rvs(12, random_state=1)
    assert variability(h @ Q, y) == pytest.approx(base, rel=1e-9)
    assert variability(7.5 * h, y) == pytest.approx(base, rel=1e-9)
    p = rng.permutation(len(y))
    assert variability(h[p], y[p]) == pytest.approx(base, rel=1e-9)
    assert variability(h, np.array(["c", "a", "b"])[y]) == pytest.approx(base, rel=1e-9)


def test_collapsed_classes_give_zero_and_separation_lowers_nu(rng):
    y = np.repeat([0, 1, 2], 10)
    centers = rng.normal(size=(3, 5))
    assert variability(centers[y] + 1e-9 * rng.normal(size=(30, 5)), y) < 1e-12
    near, _ = blobs(np.random.default_rng(1), [40, 40], 6, sep=0.5)
    far, _ = blobs(np.random.default_rng(1), [40, 40], 6, sep=5.0)
    assert variability(far, y := np.repeat([0, 1], 40)) < variability(near, y)


def test_errors_name_the_problem(rng):
    h = rng.normal(size=(10, 3))
    with pytest.raises(VariscopeError, match="at least 2 classes"):
        variability(h, np.zeros(10))
    y = np.array([0] * 9 + [1])
    with pytest.raises(VariscopeError, match="class 'spam' has only 1 example"):
        variability(h, y, label_names=["ham", "spam"])
    with pytest.raises(VariscopeError, match="NaN"):
        variability(np.full((10, 3), np.nan), np.repeat([0, 1], 5))


def test_curve_and_bootstrap_band(rng):
    h, y = blobs(rng, [40, 60], 16)
    states = np.stack([h * (l + 1) + rng.normal(size=h.shape) * l for l in range(4)]).astype(np.float32)
    c = variability_curve(states, y, bootstrap=50, seed=3, label_names=["neg", "pos"])
    assert c.layers == [0, 1, 2, 3]
    assert c.counts == {"neg": 40, "pos": 60}
    for l in range(4):
        assert c.variability[l] == pytest.approx(variability(states[l], y), rel=1e-9)
        assert c.band[0][l] <= c.band[1][l]
    again = variability_curve(states, y, bootstrap=50, seed=3)
    assert again.band == c.band  # seeded


def test_blocked_float32_path_matches_whole(rng, monkeypatch):
    """Large layers are read in float64 row blocks; the result must not depend on the block size."""
    import sys

    V = sys.modules[variability.__module__]

    h, y = blobs(rng, [37, 51, 12, 30], 40)
    h32 = h.astype(np.float32)
    whole = variability(h32, y)
    monkeypatch.setattr(V, "_BLOCK_ELEMS", 7 * 40 + 3)  # 7-row blocks, last one partial
    assert variability(h32, y) == pytest.approx(whole, rel=1e-12)
    assert variability(h32, y) == pytest.approx(variability_pinv(h32, y), rel=1e-6)
    bad = h32.copy()
    bad[100, 5] = np.inf
    with pytest.raises(VariscopeError, match="infinite"):
        variability(bad, y)


def test_curve_names_the_layer_with_non_finite_states(rng):
    h, y = blobs(rng, [20, 20], 8)
    states = np.stack([h, h.copy()]).astype(np.float32)
    states[1, 3, 2] = np.nan
    with pytest.raises(VariscopeError, match="layer 1: .*NaN"):
        variability_curve(states, y)


@pytest.mark.parametrize("d", [6, 100])  # SVD path (d < 4C) and the Gram path (d ≥ 4C)
def test_rank_deficient_between_class_scatter_matches_pinv(rng, d):
    """Two of three classes share a mean: Σ_b has rank 1, and both paths must find that rank."""
    y = np.repeat([0, 1, 2], [30, 40, 50])
    centers = rng.normal(size=(3, d)) * 3
    centers[1] = centers[0]
    h = rng.normal(size=(len(y), d)) + centers[y]
    h[y == 1] += h[y == 0].mean(0) - h[y == 1].mean(0)  # exactly equal sample means
    a, b = variability(h, y), variability_pinv(h, y)
    assert np.isfinite(a) and a > 0
    assert abs(a - b) / b < 1e-6


def test_any_float_layout_gives_the_same_nu(rng):
    """float16/float32/float64, read-only, reversed and Fortran-ordered arrays are all read correctly."""
    h, y = blobs(rng, [25, 35, 30], 96)
    base = variability(h, y)
    ro = h.copy()
    ro.flags.writeable = False
    assert variability(ro, y) == pytest.approx(base, rel=1e-12)
    assert variability(h[::-1], y[::-1]) == pytest.approx(base, rel=1e-12)
    assert variability(np.asfortranarray(h), y) == pytest.approx(base, rel=1e-12)
    h32, h16 = h.astype(np.float32), h.astype(np.float16)
    assert variability(h32, y) == pytest.approx(variability_pinv(h32, y), rel=1e-6)
    assert variability(h16, y) == pytest.approx(variability_pinv(h16.astype(np.float64), y), rel=1e-6)
    assert variability(np.rint(h * 100).astype(np.int32), y) == pytest.approx(
        variability(np.rint(h * 100), y), rel=1e-12
    )


@hs.composite
def labelled(draw):
    C = draw(hs.integers(2, 6))
    d = draw(hs.integers(1, 12))
    sizes = draw(hs.lists(hs.integers(2, 12), min_size=C, max_size=C))
    y = np.repeat(np.arange(C), sizes)
    h = draw(hnp.arrays(np.float64, (len(y), d), elements=hs.floats(-100, 100, allow_nan=False, width=64)))
    return h, y


def _ok(h, y):
    """Class means not all (numerically) equal, and Σ_b not so ill-conditioned that the d×d reference
    loses the digits the comparison asks for: its nonzero singular values within a factor 1000 of each
    other (one drawn case, means 1 apart in two features and 1e-4 in the rest, put the pinv reference
    1.5e-6 away from the low-rank formula's exact 1.6)."""
    means = np.stack([h[y == c].mean(0) for c in np.unique(y)])
    if np.ptp(means, axis=0).max() <= 1e-3:
        return False
    s = np.linalg.svd(means - means.mean(0), compute_uv=False)
    s = s[s > max(means.shape) * np.finfo(float).eps * s[0]]
    return s[-1] / s[0] > 1e-3


@settings(max_examples=60, deadline=None)
@given(labelled(), hs.integers(0, 2**31 - 1), hs.floats(0.1, 50))
def test_nu_is_finite_matches_pinv_and_ignores_order_labels_rotation_and_scale(data, seed, scale):
    h, y = data
    assume(_ok(h, y))
    rng = np.random.default_rng(seed)
    nu = variability(h, y)
    assert np.isfinite(nu) and nu >= 0
    ref = variability_pinv(h, y)
    assert abs(nu - ref) <= 1e-6 * max(1.0, abs(ref))
    p = rng.permutation(len(y))
    assert variability(h[p], y[p]) == pytest.approx(nu, rel=1e-6, abs=1e-9)
    relabel = rng.permutation(y.max() + 1)
    assert variability(h, relabel[y]) == pytest.approx(nu, rel=1e-6, abs=1e-9)
    Q, _ = np.linalg.qr(rng.normal(size=(h.shape[1], h.shape[1])))
    assert variability(h @ Q, y) == pytest.approx(nu, rel=1e-6, abs=1e-9)
    assert variability(h * scale, y) == pytest.approx(nu, rel=1e-6, abs=1e-9)
