"""Kept states as the pages and cards see them (analysis/stream/kept.py): exact ν of all N, states of K rows."""

import numpy as np
import pytest

from analysis.cards.scores import CardsConfig, layer_cards
from analysis.data.sampling import SampleConfig
from analysis.errors import VariscopeError
from analysis.pipeline import AnalysisConfig, StatesResult
from analysis.stream.curve import StreamResult
from analysis.stream.kept import (
    KeptStates,
    cards_of,
    curve_of,
    kept_fields,
    needs_streaming,
    total_texts,
    with_exact_nu,
)
from analysis.stream.stats import LayerStats
from analysis.variability import CurveResult, variability, variability_curve

NAMES = ["a", "b", "c"]


def _toy(N=600, d=8, L1=3, keep=90, seed=0, batch=64):
    """States (L1, N, d) whose separation grows with the layer, streamed batch by batch into a StreamResult."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, N)
    centres = rng.normal(size=(L1, 3, d)) * np.linspace(0.3, 2.0, L1)[:, None, None] + 4.0
    X = (centres[:, y] + rng.normal(size=(L1, N, d))).astype(np.float32)
    sizes = np.bincount(y, minlength=3)
    stats = LayerStats(L1, d, sizes, keep=keep, seed=7)
    for s in range(0, N, batch):
        stats.update(X[:, s : s + batch], y[s : s + batch], np.arange(s, min(N, s + batch)))
    nu = stats.variability()
    curve = CurveResult(
        list(range(L1)), nu, dict(zip(NAMES, sizes.tolist(), strict=True)), settings={"weighting": "equal"}
    )
    res = StreamResult(curve, stats, N, N, 0, 1, {"total": 1.0}, {"device": "cpu"})
    kept = stats.kept
    texts = [f"text {i}" for i in kept.index]
    states = KeptStates(
        states=kept.states,
        labels=kept.labels,
        label_names=NAMES,
        texts=texts,
        pairs=None,
        key="k" * 32,
        cache_hit=False,
        seconds={"total": 1.0},
        info={"device": "cpu", "mode": "stream", "n": N, "sample_size": len(kept.index)},
        curve=curve,
        n=N,
        index=kept.index,
    )
    return X, y, states, res


def test_kept_result_has_the_exact_nu_of_all_texts_and_k_kept_rows():
    X, y, s, _ = _toy()
    assert isinstance(s, StatesResult) and s.states.shape == (3, 90, 8) and s.n_kept == 90 and s.n == 600
    assert total_texts(s) == 600 and kept_fields(s) == {"mode": "stream", "sample_size": 90}
    want = [variability(X[l], y) for l in range(3)]
    np.testing.assert_allclose(s.curve.variability, want, rtol=1e-9)
    # the sample is rows of the full states, with their labels and texts, in index order
    assert np.all(np.diff(s.index) > 0) and len(set(s.index.tolist())) == 90
    np.testing.assert_array_equal(s.states, X[:, s.index])
    np.testing.assert_array_equal(s.labels, y[s.index])
    assert s.texts == [f"text {i}" for i in s.index]
    curve = curve_of(s)
    np.testing.assert_allclose(curve.variability, want, rtol=1e-9)  # ν of all N, not of the sample
    assert curve.counts == dict(zip(NAMES, np.bincount(y).tolist(), strict=True)) and curve.band is None
    sample_nu = variability_curve(s.states, s.labels).variability
    assert not np.allclose(sample_nu, want, rtol=1e-6)  # (the sample's own ν differs)


def test_the_band_comes_from_the_kept_states_around_the_exact_nu():
    _, _, s, _ = _toy()
    curve = curve_of(s, bootstrap=30, seed=1)
    raw = variability_curve(s.states, s.labels, bootstrap=30, seed=1)
    assert curve.settings["sample_size"] == 90 and curve.settings["band_from"] == "sample"
    assert curve.settings["sample_band"] == {"low": raw.band[0], "high": raw.band[1]}
    for nu, lo, hi, rlo, rhi in zip(curve.variability, *curve.band, *raw.band, strict=True):
        assert lo < nu < hi and hi / lo == pytest.approx(rhi / rlo) and lo * hi == pytest.approx(nu * nu)
    with pytest.raises(VariscopeError, match="streamed with equal class weights"):
        curve_of(s, weighting="size")


def test_in_memory_states_are_unchanged():
    X, y, _, _ = _toy()
    st = StatesResult(X, y, NAMES, [""] * len(y), None, "k", True, {}, {})
    assert curve_of(st, bootstrap=5, seed=2) == variability_curve(X, y, bootstrap=5, seed=2, label_names=NAMES)
    assert total_texts(st) == len(y) and kept_fields(st) == {}


def test_cards_of_kept_states_carry_the_exact_nu(monkeypatch):
    _, _, s, _ = _toy()
    cc = CardsConfig(folds=3, bootstrap=10)
    own = layer_cards(s.states, s.labels, cc)
    cards = with_exact_nu(own, s, cc)
    assert cards.variability == s.curve.variability and cards.probe_accuracy == own.probe_accuracy
    assert cards.band == curve_of(s, bootstrap=10).band
    assert cards.settings["sample_size"] == 90 and cards.settings["n"] == 600
    import analysis.cards.compute as cm

    monkeypatch.setattr(cm, "compute_cards", lambda cfg, cc, states, **kw: (own, states))
    assert cards_of(AnalysisConfig(), cc, s) == cards


def test_needs_streaming_decides_by_the_sample_size(monkeypatch):
    import analysis.stream.kept as sampled

    def no_load(cfg, content=None):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(sampled, "open_sample", no_load)
    assert not needs_streaming(AnalysisConfig(sampling=SampleConfig(n=500)), 500)
    monkeypatch.setattr(sampled, "open_sample", lambda cfg, content=None: [0] * 700)
    assert needs_streaming(AnalysisConfig(sampling=SampleConfig(n=None)), 500)
    assert needs_streaming(AnalysisConfig(sampling=SampleConfig(n=900)), 500)
    assert not needs_streaming(AnalysisConfig(sampling=SampleConfig(n=None)), 700)
    with pytest.raises(VariscopeError, match="at least 1"):
        needs_streaming(AnalysisConfig(), 0)


def test_stream_kept_of_minilm_equals_the_stored_states(minilm, cache):
    """The real stream (one process): ν as from the stored states, and the sample's rows are those states."""
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import get_states
    from analysis.stream.kept import stream_kept

    cfg = AnalysisConfig(task=TaskConfig("bbc_news"), sampling=SampleConfig(n=40), max_length=24, device="cpu")
    s = stream_kept(cfg, keep=15, loader=lambda *a: minilm, cache=cache)
    full = get_states(cfg, cache=cache, loader=lambda *a: minilm)
    assert isinstance(s, KeptStates) and s.n == 40 and s.n_kept == 15 and s.key != full.key
    want = variability_curve(full.states, full.labels).variability
    np.testing.assert_allclose(s.curve.variability, want, rtol=1e-9)
    np.testing.assert_allclose(s.states, full.states[:, s.index], rtol=0, atol=1e-6)
    assert s.texts == [full.texts[i] for i in s.index] and s.labels.tolist() == full.labels[s.index].tolist()
    again = stream_kept(cfg, keep=15, loader=lambda *a: minilm, cache=cache)  # the `streams` cache entry
    assert again.cache_hit and not s.cache_hit and again.key == s.key and again.texts == s.texts
    np.testing.assert_array_equal(again.states, s.states)
    assert again.curve.variability == s.curve.variability and again.index.tolist() == s.index.tolist()
