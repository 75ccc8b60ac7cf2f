"""How sure ℓ* is: the share of bootstrap resamples in which each layer is the recommended one."""

import numpy as np

from analysis.recommend import recommend_layer
from analysis.records import no_majority_line, share_line
from analysis.variability import layer_shares, variability_curve


def flat_states(seed: int = 0, n_per_class: int = 60, d: int = 12, layers: int = 19) -> tuple[np.ndarray, np.ndarray]:
    """(L+1, N, d) float32 states of two classes, gemma-like: ν falls steeply over the first layers and is
    flat (the same class separation) over layers 11..18, so the argmin among those is a toss-up."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n_per_class)
    sep = np.array([0.15 + 0.1 * l for l in range(11)] + [1.2] * (layers - 11))
    direction = np.zeros(d)
    direction[0] = 1.0
    states = rng.normal(size=(layers, len(labels), d))
    states += (sep[:, None, None] * np.where(labels == 1, 1.0, -1.0)[None, :, None]) * direction
    return states.astype(np.float32), labels


def test_argmin_share_is_the_direct_count_of_each_resamples_argmin_and_sums_to_one():
    states, labels = flat_states()
    c = variability_curve(states, labels, bootstrap=40, seed=7)
    assert c.argmin_share is not None and c.plateau_share is not None
    assert len(c.argmin_share) == len(c.plateau_share) == len(c.layers)
    assert abs(sum(c.argmin_share) - 1) < 1e-9 and abs(sum(c.plateau_share) - 1) < 1e-9
    assert c.argmin_share[0] == 0 and c.plateau_share[0] == 0
    # the same resamples by hand: within-class draws with replacement, ν per layer, argmin over 1..L
    rng = np.random.default_rng(7)
    members = [np.flatnonzero(labels == k) for k in (0, 1)]
    counts = np.zeros(len(c.layers))
    for _ in range(40):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in members])
        nu = variability_curve(states[:, idx], labels[idx]).variability
        counts[int(np.argmin(nu[1:])) + 1] += 1
    np.testing.assert_allclose(c.argmin_share, counts / 40, atol=1e-12)
    assert max(c.argmin_share) < 0.9 and sum(s > 0 for s in c.argmin_share[11:]) >= 3  # a flat stretch: split


def test_layer_shares_follow_the_rule_and_its_tolerance():
    boot = np.array([[9.0, 3.0, 1.05, 1.0], [9.0, 3.0, 1.0, 1.2], [9.0, 1.0, 2.0, 3.0]])
    assert layer_shares(boot, rule="argmin") == [0.0, 1 / 3, 1 / 3, 1 / 3]
    assert layer_shares(boot, rule="plateau", tolerance=10.0) == [0.0, 1 / 3, 2 / 3, 0.0]
    assert [recommend_layer(r, rule="plateau", tolerance=10.0) for r in boot] == [2, 2, 1]


def test_the_share_line_names_the_likeliest_layers_and_says_when_none_has_a_majority():
    share = [0.0] * 13 + [0.3, 0.0, 0.41, 0.0, 0.22, 0.07]
    assert share_line(share) == "ℓ* = 15 in 41 % of resamples, 13 in 30 %, 17 in 22 %"
    assert no_majority_line(share) == (
        "No layer is ℓ* in most resamples: layers 13, 15 and 17 are about equally separated by ν; "
        "the lowest is the cheapest."
    )
    sure = [0.0, 0.1, 0.9]
    assert share_line(sure) == "ℓ* = 2 in 90 % of resamples, 1 in 10 %" and no_majority_line(sure) is None
    assert share_line(None) is None and no_majority_line(None) is None
