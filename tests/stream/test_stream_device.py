"""Streamed statistics summed where the batches lie (a GPU's tensors never cross): the same ν as arrays.

No GPU here: the device path is forced onto CPU tensors (``_on_device``), which runs the same torch
code a CUDA tensor takes (float64 sums kept as tensors, only the candidate kept rows copied).
"""

import warnings

import numpy as np
import pytest
import torch

from analysis.stream import stats as stats_mod
from analysis.stream.stats import LayerStats


def _data(C=4, n=300, d=24, L1=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % C)
    states = rng.normal(size=(L1, C, d))[:, labels] * 3 + 40 + rng.normal(size=(L1, n, d))  # offset, as real states
    return states.astype(np.float32), labels, np.bincount(labels, minlength=C)


def _feed(states, labels, sizes, batches, *, tensors: bool, keep=50, **kw):
    st = LayerStats(states.shape[0], states.shape[2], sizes, keep=keep, seed=5, **kw)
    for s in range(0, len(labels), batches):
        e = min(len(labels), s + batches)
        X = torch.from_numpy(states[:, s:e]) if tensors else states[:, s:e]
        st.update(X, labels[s:e], np.arange(s, e))
    return st


@pytest.fixture
def device_path(monkeypatch):
    """Every torch tensor takes the device path (as a CUDA tensor would)."""
    monkeypatch.setattr(stats_mod, "_on_device", lambda s: isinstance(s, torch.Tensor))


@pytest.mark.parametrize("weighting", ["equal", "size"])
def test_device_sums_give_the_same_nu_and_kept_rows_as_arrays(device_path, weighting):
    states, labels, sizes = _data()
    ref = _feed(states, labels, sizes, 32, tensors=False, weighting=weighting)
    dev = _feed(states, labels, sizes, 32, tensors=True, weighting=weighting)
    assert dev._dev is not None  # summed as tensors, not yet read
    np.testing.assert_allclose(dev.variability(), ref.variability(), rtol=1e-9)
    assert dev._dev is None  # reading ν added them into the arrays
    np.testing.assert_allclose(dev.W, ref.W, rtol=1e-12)
    np.testing.assert_allclose(dev.sums, ref.sums, rtol=1e-12)
    np.testing.assert_array_equal(dev.kept.index, ref.kept.index)
    np.testing.assert_array_equal(dev.kept.states, ref.kept.states)
    assert dev.kept.states.dtype == np.float32 and dev.kept.states.shape == (3, 50, 24)


def test_device_sums_merge_flat_and_first_pass(device_path):
    states, labels, sizes = _data(C=3, n=120)
    a = _feed(states[:, :60], labels[:60], sizes, 16, tensors=True)
    b = LayerStats(3, 24, sizes, keep=50, seed=5)
    b.update(torch.from_numpy(states[:, 60:]), labels[60:], np.arange(60, 120))
    whole = _feed(states, labels, sizes, 120, tensors=False)
    np.testing.assert_allclose(a.merge(b).variability(), whole.variability(), rtol=1e-9)
    c = LayerStats(3, 24, sizes)
    c.update(torch.from_numpy(states), labels, np.arange(120))
    np.testing.assert_allclose(c.flat(), whole.flat(), rtol=1e-12)  # flat() (the all_reduce) reads the device sums
    first = LayerStats(3, 24, sizes, moments=False)  # the two-pass mode's first pass: class sums only
    first.update(torch.from_numpy(states), labels, np.arange(120))
    assert first.W.size == 0 and np.allclose(first.sums, whole.sums, rtol=1e-12)


def test_cpu_tensors_are_read_in_place_as_arrays():
    states, labels, sizes = _data()
    ref = _feed(states, labels, sizes, 64, tensors=False)
    cpu = _feed(states, labels, sizes, 64, tensors=True)
    assert cpu._dev is None
    assert np.array_equal(cpu.W, ref.W) and np.array_equal(cpu.sums, ref.sums)  # the very same float64 sums
    assert cpu.variability() == ref.variability()


def test_only_a_cuda_tensor_is_summed_where_it_lies():
    assert not stats_mod._on_device(np.zeros((1, 1, 1)))
    assert not stats_mod._on_device(torch.zeros(1, 1, 1))
    assert stats_mod._on_device(torch.zeros(1, 1, 1, device="meta"))  # any other device (CUDA, XPU, ...)


def test_mps_statistics_fall_back_to_the_cpu_and_say_so():
    from analysis.stream.curve import statistics_device

    with pytest.warns(UserWarning, match="MPS has no float64"):
        assert statistics_device("mps") == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert statistics_device("cuda:0") == "cuda:0" and statistics_device("cpu") == "cpu"


def test_stream_curve_on_the_device_path_equals_the_states_path(minilm, device_path):
    """The whole pass with the tensors handed over as the model made them (for_each_pooled(on_device=True))."""
    from analysis import AnalysisConfig, SampleConfig, TaskConfig, compute_curve
    from analysis.stream.curve import stream_curve

    cfg = AnalysisConfig(model="minilm", task=TaskConfig("bbc_news"), sampling=SampleConfig(n=30, seed=3), batch_size=8)
    curve, st = compute_curve(cfg, use_cache=False)
    res = stream_curve(cfg, keep=8)
    np.testing.assert_allclose(res.curve.variability, curve.variability, rtol=1e-9)
    assert res.info["statistics_on"] == "cpu"
    s = res.stats.kept
    np.testing.assert_array_equal(s.states, st.states[:, s.index])
