"""ν from running statistics (analysis/streaming.py) equals ν on the stored states."""

import numpy as np
import pytest

from analysis.errors import VariscopeError
from analysis.streaming import LayerStats
from analysis.variability import variability


def _data(C, sizes, d=16, L1=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(C), sizes)
    rng.shuffle(labels)
    centres = rng.normal(size=(L1, C, d)) * 2.0 + 5.0  # an offset, as in real hidden states
    states = centres[:, labels] + rng.normal(size=(L1, len(labels), d)) * rng.uniform(0.5, 2.0, size=d)
    return states.astype(np.float32), labels, np.bincount(labels, minlength=C)


def _stream(states, labels, sizes, cuts, **kw):
    st = LayerStats(states.shape[0], states.shape[2], sizes, **kw)
    bounds = [0, *cuts, len(labels)]
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        st.update(states[:, s:e], labels[s:e], np.arange(s, e))
    return st


@pytest.mark.parametrize(
    ("C", "sizes"),
    [(2, [30, 30]), (5, [3, 40, 7, 12, 25]), (20, [2 + 3 * (i % 4) for i in range(20)]), (2, [5, 95])],
)
@pytest.mark.parametrize("weighting", ["equal", "size"])
def test_stats_match_states(C, sizes, weighting):
    states, labels, counts = _data(C, sizes)
    n = len(labels)
    want = [variability(states[l], labels, weighting=weighting) for l in range(len(states))]
    for cuts in ([], [1], [n // 3, n // 2, n - 1], list(range(7, n, 7))):
        got = _stream(states, labels, counts, cuts, weighting=weighting).variability()
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_merge_equals_one_pass():
    states, labels, counts = _data(5, [10, 20, 8, 9, 13])
    n = len(labels)
    one = _stream(states, labels, counts, [17, 40])
    a = LayerStats(3, 16, counts)
    a.update(states[:, : n // 2], labels[: n // 2], np.arange(n // 2))
    b = LayerStats(3, 16, counts)
    b.update(states[:, n // 2 :], labels[n // 2 :], np.arange(n // 2, n))
    with pytest.raises(VariscopeError, match="rows per class"):
        a.variability()  # half the rows: refused, not a wrong ν
    merged = a.merge(b)
    np.testing.assert_allclose(merged.variability(), one.variability(), rtol=1e-12)
    c = LayerStats(3, 16, counts)
    c.load_flat(a.flat())
    np.testing.assert_allclose(c.variability(), one.variability(), rtol=1e-12)


def test_state_sample_size_and_seed():
    states, labels, counts = _data(3, [40, 30, 30])
    runs = [_stream(states, labels, counts, cuts, keep=25, seed=7).sample for cuts in ([], [5, 50], [33])]
    for s in runs:
        assert s.states is not None and s.states.shape == (3, 25, 16)
        assert len(set(s.index.tolist())) == 25
        np.testing.assert_array_equal(s.index, runs[0].index)  # the same rows whatever the batches
        np.testing.assert_array_equal(s.states, states[:, s.index])  # the same rows in every layer
        np.testing.assert_array_equal(s.labels, labels[s.index])
    other = _stream(states, labels, counts, [], keep=25, seed=8).sample
    assert not np.array_equal(other.index, runs[0].index)
    small = _stream(states, labels, counts, [10], keep=500).sample
    assert small.states is not None and small.states.shape[1] == 100


def test_refusals():
    with pytest.raises(VariscopeError, match="at least 2"):
        LayerStats(2, 4, [5, 1])
    st = LayerStats(2, 4, [3, 3])
    with pytest.raises(VariscopeError, match="shape"):
        st.update(np.zeros((2, 3, 5)), np.zeros(3, dtype=int))
    with pytest.raises(VariscopeError, match="class indices"):
        st.update(np.zeros((2, 3, 4)), np.array([0, 1, 2]))
