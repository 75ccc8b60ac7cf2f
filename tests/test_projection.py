import numpy as np
import pytest

from analysis.errors import VariscopeError
from analysis.projection import ProjectionConfig, pairwise_distances, pca, project_layers


@pytest.mark.parametrize(
    "metric,sk",
    [("cosine", "cosine"), ("euclidean", "euclidean"), ("manhattan", "manhattan"), ("correlation", "correlation")],
)
def test_precomputed_distances_match_sklearn(rng, metric, sk):
    from sklearn.metrics import pairwise_distances as skd

    Z = rng.normal(size=(60, 7)).astype(np.float32)
    D = pairwise_distances(Z, metric)
    assert D.shape == (60, 60) and D.dtype == np.float32
    assert np.all(np.diag(D) == 0) and np.all(D >= 0)
    ref = skd(Z.astype(np.float64), metric=sk)
    np.fill_diagonal(ref, 0)
    np.testing.assert_allclose(D, ref, atol=1e-5)


def test_degenerate_rows_follow_umap_learn():
    from umap.distances import correlation, cosine

    Z = np.array([[0, 0, 0], [1, 0, 2], [0, 1, 0], [0, 0, 0], [3, 3, 3]], np.float64)
    for name, ref in (("cosine", cosine), ("correlation", correlation)):
        D = pairwise_distances(Z, name)
        assert np.all(np.isfinite(D))
        want = np.array([[ref(a, b) if i != j else 0.0 for j, b in enumerate(Z)] for i, a in enumerate(Z)])
        np.testing.assert_allclose(D, want, atol=1e-6)


@pytest.mark.slow  # UMAP
def test_umap_separates_blobs_and_pca_is_deterministic(rng):
    y = np.repeat([0, 1, 2], 60)
    X = (rng.normal(size=(180, 64)) + rng.normal(size=(3, 64))[y] * 3).astype(np.float32)
    states = np.stack([X, X])
    out = project_layers(states, [1], ProjectionConfig(seed=1))["coords"][1]
    assert out.shape == (180, 2)
    centroids = np.stack([out[y == c].mean(0) for c in range(3)])
    nearest = np.argmin(((out[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() > 0.95
    again = project_layers(states, [1], ProjectionConfig(seed=1))["coords"][1]
    np.testing.assert_allclose(out, again)  # seeded: the same picture every time
    np.testing.assert_array_equal(pca(X, 2), pca(X.copy(), 2))


def test_projection_layer_out_of_range():
    from analysis.projection import ProjectionConfig, project_layers

    with pytest.raises(VariscopeError, match="out of range"):
        project_layers(np.zeros((3, 10, 4), np.float32), [5], ProjectionConfig(method="pca"))


@pytest.mark.slow  # UMAP
def test_aligned_umap_projects_every_layer_and_hits_the_cache_the_second_time(tmp_path):
    from analysis.projection import ProjectionConfig, project_layers
    from analysis.store.cache import DiskCache

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    base = rng.normal(size=(60, 8)) + 3 * y[:, None]
    states = np.stack([base + 0.1 * l * rng.normal(size=base.shape) for l in range(3)]).astype(np.float32)
    cache = DiskCache(tmp_path)
    cfg = ProjectionConfig(n_neighbors=10)
    out = project_layers(states, range(3), cfg, states_key="c" * 32, cache=cache, aligned=True)
    assert set(out["coords"]) == {0, 1, 2} and all(c.shape == (60, 2) for c in out["coords"].values())
    again = project_layers(states, range(3), cfg, states_key="c" * 32, cache=cache, aligned=True)
    assert again["cache_hit"] and np.array_equal(again["coords"][1], out["coords"][1])
