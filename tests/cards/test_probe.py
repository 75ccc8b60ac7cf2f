"""The torch probe against scikit-learn's LogisticRegression, converged, on the same folds."""

import numpy as np
import pytest

from analysis.cards.probe import fit_probes, probe_dtype, sklearn_probes
from analysis.cards.scores import probe_folds


def _agree(states, y, folds=5, C=1.0, acc_tol=0.01):
    """Mean fold accuracy within ``acc_tol`` at every layer, objectives as low as a converged reference's."""
    splits = probe_folds(y, folds, 0)
    ours = fit_probes(states, y, splits, C=C)
    ref = sklearn_probes(states, y, splits, C=C, max_iter=10_000, tol=1e-8)
    same_tol = sklearn_probes(states, y, splits, C=C, max_iter=10_000)  # scikit-learn's default tol, ours
    assert ref.converged.all() and same_tol.converged.all()
    assert ours.converged.all() and (ours.grad_max <= 1e-4).all()
    np.testing.assert_array_less(np.abs(ours.accuracy.mean(1) - ref.accuracy.mean(1)), acc_tol + 1e-12)
    gap = (ours.objective - ref.objective) / ref.objective
    assert gap.min() > -1e-6  # never below the converged reference's optimum: the same objective
    # as near the optimum as scikit-learn gets with the same gradient tolerance
    assert gap.max() <= 1.5 * ((same_tol.objective - ref.objective) / ref.objective).max() + 1e-4
    return ours, ref


def _mixture(rng, n=240, d=20, K=4, sep=1.0):
    y = np.repeat(np.arange(K), n // K)
    X = rng.normal(size=(3, len(y), d)) + sep * np.arange(1, 4)[:, None, None] * rng.normal(size=(K, d))[y]
    X[:, :, 0] = 7.0  # a constant feature: StandardScaler gives it scale 1
    X[:, :, 1] = X[:, :, 1] * 1e3 + 5e4  # far from zero and wide: the centring must keep it exact
    return X.astype(np.float32), y


@pytest.mark.parametrize("K", [2, 3, 5])
def test_probe_matches_converged_sklearn_on_synthetic_classes(rng, K):
    X, y = _mixture(rng, K=K)
    _agree(X, y, folds=4, acc_tol=0.02)  # 60 test rows a fold: one row is 0.017


@pytest.mark.parametrize("C", [0.01, 100.0])
def test_probe_penalty_is_sklearns_C(rng, C):
    X, y = _mixture(rng, K=3, sep=0.3)
    _agree(X, y, folds=3, C=C, acc_tol=0.02)


def test_probe_records_a_fit_stopped_by_max_iter_as_not_converged(rng):
    X, y = _mixture(rng, K=3, sep=0.3)
    splits = probe_folds(y, 3, 0)
    few = fit_probes(X, y, splits, max_iter=3)
    assert few.converged.shape == (3, 3) and not few.converged.any() and (few.iterations == 3).all()
    full = fit_probes(X, y, splits, max_iter=1000)
    assert full.converged.all() and (full.iterations < 1000).all() and (full.objective < few.objective).all()


def test_probe_runs_inside_a_callers_inference_mode(rng):
    import torch

    X, y = _mixture(rng, K=2)
    splits = probe_folds(y, 3, 0)
    with torch.inference_mode():
        inside = fit_probes(torch.from_numpy(X), y, splits)
    assert np.array_equal(inside.accuracy, fit_probes(X, y, splits).accuracy)


def test_probe_dtype_is_float32_only_on_mps():
    import torch

    assert probe_dtype("mps") == torch.float32 and probe_dtype("cpu") == probe_dtype("cuda:0") == torch.float64


def test_probe_matches_sklearn_on_every_layer_of_minilm_states(minilm, cache):
    from analysis.pipeline import get_states
    from analysis.settings import from_settings

    st = get_states(from_settings({"n": 400}), cache=cache, loader=lambda *a: minilm)
    assert st.states.shape[0] == 7
    _agree(st.states, st.labels)


def test_probe_matches_sklearn_on_minilm_states_of_eight_classes(minilm, cache):
    from analysis.pipeline import get_states
    from analysis.settings import from_settings

    st = get_states(
        from_settings({"task": "reuters_r8", "per_class": 40, "max_length": 64}), cache=cache, loader=lambda *a: minilm
    )
    assert len(st.label_names) == 8
    _agree(st.states, st.labels, folds=3)


@pytest.mark.slow
def test_probe_matches_sklearn_on_every_layer_of_gemma_states():
    """The real gemma3-270m (installed wheels, the project cache); skipped where it is not installed."""
    from analysis.models import gguf
    from analysis.models.registry import REGISTRY
    from analysis.pipeline import get_states
    from analysis.settings import from_settings

    if not gguf.installed(REGISTRY["gemma3-270m"].gguf):
        pytest.skip("gemma3-270m wheels not installed (make gemma)")
    st = get_states(from_settings({"model": "gemma3-270m", "n": 1000}))
    assert st.states.shape[0] == 19
    _agree(st.states, st.labels)
