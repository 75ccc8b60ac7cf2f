import numpy as np
import pytest

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
