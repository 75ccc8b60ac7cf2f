"""Layer selectors on synthetic states whose answer is known."""

import numpy as np
import pytest

from analysis.selectors import SELECTORS, pick, state_scores
from analysis.selectors.change import cka_change_scores, cosine_change_scores, linear_cka
from analysis.selectors.fisher import fisher_lda
from analysis.selectors.logme import logme
from analysis.selectors.nu import nu_scores, nu_standardised_scores
from analysis.variability import variability


def _classes(rng, n=120, d=10, sep=3.0, C=3):
    y = np.arange(n) % C
    means = rng.normal(size=(C, d)) * sep
    return means[y] + rng.normal(size=(n, d)), y


def test_logme_is_higher_for_separable_features_than_for_noise():
    rng = np.random.default_rng(0)
    X, y = _classes(rng)
    assert logme(X, y) > logme(rng.normal(size=X.shape), y) + 0.1


def test_logme_matches_the_evidence_computed_with_d_by_d_matrices():
    """The SVD shortcut against the direct formula at the α, β the shortcut found (n < d and n > d)."""
    from analysis.selectors import logme as lm

    rng = np.random.default_rng(1)
    for n, d in ((40, 8), (10, 25)):
        F, t = rng.normal(size=(n, d)), rng.normal(size=n)
        U, s, _ = np.linalg.svd(F, full_matrices=False)
        got = lm._evidence(t, s**2, U.T @ t, n, d, iters=0)  # α = β = 1
        A = np.eye(d) + F.T @ F
        m = np.linalg.solve(A, F.T @ t)
        want = -np.sum((F @ m - t) ** 2) / 2 - m @ m / 2 - np.linalg.slogdet(A)[1] / 2 - n / 2 * np.log(2 * np.pi)
        assert got == pytest.approx(want / n, rel=1e-9)


def test_cka_is_one_for_identical_and_rotated_layers_so_the_change_is_zero():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, 3 * X @ Q + 5) == pytest.approx(1.0)  # invariant to rotation, scale, shift
    assert linear_cka(X, rng.normal(size=(50, 6))) < 0.5
    wide = rng.normal(size=(8, 30))  # n < d: the Gram-matrix branch
    assert linear_cka(wide, wide) == pytest.approx(1.0)
    states = np.stack([X, X, rng.normal(size=(50, 6))])
    change = cka_change_scores(states)
    assert change[0] is None and change[1] == pytest.approx(0.0, abs=1e-12) and change[2] > 0.5


def test_cosine_change_is_zero_for_a_repeated_layer_and_one_for_orthogonal_states():
    X = np.eye(4)
    states = np.stack([X, X, np.roll(X, 1, axis=1)])
    assert cosine_change_scores(states) == [None, pytest.approx(0.0), pytest.approx(1.0)]


def test_fisher_criterion_grows_with_separation_and_ignores_feature_scale():
    rng = np.random.default_rng(3)
    X1, y = _classes(rng, sep=0.5)
    X2 = X1 + np.eye(3)[y] @ rng.normal(size=(3, 10)) * 4  # the same noise, means further apart
    assert fisher_lda(X2, y) > fisher_lda(X1, y) > 0
    scale = np.ones(10)
    scale[0] = 1000.0  # one rogue dimension
    assert fisher_lda(X1 * scale, y) == pytest.approx(fisher_lda(X1, y), rel=1e-9)


def test_nu_scores_are_minus_nu_and_standardising_removes_a_rogue_dimension():
    rng = np.random.default_rng(4)
    X, y = _classes(rng, sep=2.0)
    assert nu_scores(np.stack([X]), y) == [pytest.approx(-variability(X, y))]
    rogue = X.copy()
    rogue[:, 0] = rng.normal(size=len(X)) * 1000  # huge within-class variance, no class signal
    raw, std = nu_scores(np.stack([rogue]), y)[0], nu_standardised_scores(np.stack([rogue]), y)[0]
    assert std > raw  # standardised: rogue dimension tamed, lower ν, higher score


def test_picks_follow_scores_rules_and_ranges():
    nu = [5.0, 1.0, 0.95, 0.5, 2.0]
    score = [None, 0.1, 0.9, 0.3, 0.9]
    assert pick("logme", score, nu, [1, 2, 3, 4]) == 2  # ties go to the lower layer
    assert pick("logme", score, nu, [3, 4]) == 4
    assert pick("top", None, nu, [1, 2, 3]) == 3
    assert pick("nu_plateau", None, nu, [1, 2, 3, 4]) == 3  # 0.5 · 1.1 = 0.55: only layer 3
    assert pick("nu_plateau", None, [5.0, 2.0, 0.95, 0.9], [1, 2, 3]) == 2  # 0.95 within 10 % of 0.9
    assert pick("rgn", None, nu, [1, 2]) is None


def test_state_scores_give_every_state_selector_one_value_per_layer():
    rng = np.random.default_rng(5)
    X, y = _classes(rng, n=60, d=8)
    states = np.stack([rng.normal(size=X.shape), X, X * 2])
    out = state_scores(states, y)
    assert set(out) <= set(SELECTORS) and all(len(v) == 3 for v in out.values())
    assert out["logme"][1] > out["logme"][0] and out["fisher_lda"][1] > out["fisher_lda"][0]
    assert out["cka_change"][2] == pytest.approx(0.0, abs=1e-12)


def test_per_layer_table_shows_nu_as_nu_every_computed_score_and_each_pick():
    from analysis.selectors import HEADERS, per_layer_table

    cards = {
        "variability": [3.0, 2.0, 0.5, 1.0],
        "probe_accuracy": [0.5, 0.9, 0.7, 0.6],
        "knn_accuracy": [0.5, 0.6, 0.8, 0.7],
        "grad_norm": None,  # not computed: no column, no pick
        "selectors": {"logme": [None, -1.0, -0.5, -2.0], "nu_standardised": [-4.0, -3.0, -1.0, -0.2]},
    }
    rows, picks = per_layer_table(cards)
    assert [r["layer"] for r in rows] == [0, 1, 2, 3]
    assert [r[HEADERS["nu_argmin"]] for r in rows] == [3.0, 2.0, 0.5, 1.0]  # ν, not the −ν it is scored by
    assert [r[HEADERS["nu_standardised"]] for r in rows] == [4.0, 3.0, 1.0, 0.2]
    assert rows[0][HEADERS["logme"]] is None and HEADERS["rgn"] not in rows[0]
    assert picks == {
        "nu_argmin": 2, "nu_plateau": 2, "nu_standardised": 3, "fisher_lda": None, "probe": 1, "knn": 2,
        "logme": 2, "rgn": None, "cka_change": None, "cosine_change": None, "top": 3,
    }  # fmt: skip


def test_cards_table_prints_a_column_per_state_selector(capsys):
    from analysis.cards.scores import LayerCards
    from analysis.cli.cards import print_table

    n = 3
    cards = LayerCards(
        layers=list(range(n)), variability=[2.0, 1.0, 1.5], probe_accuracy=[0.5, 0.8, 0.7],
        probe_macro_f1=[0.5, 0.8, 0.7], knn_accuracy=[0.5, 0.7, 0.8], params_kept=[1.0, 2.0, 3.0],
        flops_per_example=[1.0, 2.0, 3.0], rank_agreement=0.5,
        selectors={"fisher_lda": [1.0, 2.5, 3.0], "cka_change": [None, 0.25, 0.5]},
    )  # fmt: skip
    print_table(cards)
    head, *rows = capsys.readouterr().out.splitlines()
    assert "Fisher ↑" in head and head.endswith("1−CKA ↑") and "ν standardised" not in head  # not computed here
    assert rows[-1].startswith("each selector picks: nu_argmin 1,") and "fisher_lda 2" in rows[-1]
    assert rows[0].split()[-2:] == ["1", "-"] and rows[2].split()[7:9] == ["3", "0.5"]
