"""Layer cards: probe, kNN and rank agreement against independent references; the CLI; the Layers page."""

import csv
import json

import numpy as np
import pytest

from analysis.cards.scores import CardsConfig, knn_loo_accuracy, layer_cards, layer_scores, rank_agreement
from analysis.errors import VariscopeError

JSON_KEYS = {
    "layers",
    "variability",
    "probe_accuracy",
    "probe_macro_f1",
    "knn_accuracy",
    "params_kept",
    "flops_per_example",
    "rank_agreement",
    "model",
    "task",
    "n",
    "recommended_layer",
    "probe_best_layer",
    "probe_converged",
    "probe_iterations",
}


def _states(rng, n_layers=3, n=90, d=12, C=3, sep=(0.2, 1.0, 3.0)):
    """Synthetic pooled states whose class separation grows with the layer."""
    y = np.repeat(np.arange(C), n // C)
    centres = rng.normal(size=(C, d))
    states = np.stack([rng.normal(size=(len(y), d)) + sep[l] * centres[y] for l in range(n_layers)])
    return states.astype(np.float32), y


def _reference_probe(X, y, cc):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = make_pipeline(StandardScaler(), LogisticRegression(C=cc.C, max_iter=cc.max_iter))
    return cross_val_score(est, X, y, cv=StratifiedKFold(cc.folds, shuffle=True, random_state=cc.seed)).mean()


def test_probe_agrees_with_cross_val_score_on_the_same_folds(rng):
    states, y = _states(rng)
    cc = CardsConfig(seed=3)
    acc, f1, knn, fits = layer_scores(states, y, cc)
    for l in range(len(states)):  # the same objective and folds: at most one held-out text apart
        assert abs(acc[l] - _reference_probe(states[l], y, cc)) <= 1 / len(y) + 1e-9
    assert acc[2] > acc[0] and all(0 <= v <= 1 for v in f1 + knn)
    assert fits.converged.shape == (3, cc.folds) and fits.converged.all() and (fits.iterations <= cc.max_iter).all()


def _knn_brute(X, y, k):
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    hits = 0
    for i in range(len(X)):
        sims = [(-(Xn[i] @ Xn[j]), j) for j in range(len(X)) if j != i]
        nb = [j for _, j in sorted(sims)[:k]]
        votes = {}
        for j in nb:
            votes[y[j]] = votes.get(y[j], 0) + 1
        best = max(votes.values())
        pred = next(y[j] for j in nb if votes[y[j]] == best)  # ties: the nearest tied class
        hits += pred == y[i]
    return hits / len(X)


@pytest.mark.parametrize("k", [1, 4, 10, 200])
def test_knn_leave_one_out_equals_brute_force(rng, k):
    X = rng.normal(size=(80, 6)) + np.repeat(rng.normal(size=(4, 6)), 20, axis=0)
    y = np.repeat(np.arange(4), 20)
    assert knn_loo_accuracy(X, y, k, block=32) == pytest.approx(_knn_brute(X, y, min(k, 79)), abs=1e-12)


def test_knn_never_counts_the_point_itself():
    X = np.array([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]])
    assert knn_loo_accuracy(X, np.array([0, 1, 0, 1]), 1) == 0.0  # each point's twin has the other label
    assert knn_loo_accuracy(X, np.array([0, 0, 1, 1]), 1) == 1.0


def test_rank_agreement_sign():
    assert rank_agreement([3.0, 2.0, 1.0, 0.5], [0.5, 0.6, 0.7, 0.9]) == pytest.approx(1.0)
    assert rank_agreement([0.5, 1.0, 2.0, 3.0], [0.5, 0.6, 0.7, 0.9]) == pytest.approx(-1.0)
    assert rank_agreement([1.0, 2.0], [0.5, 0.5]) is None


def test_layer_cards_on_synthetic_states(rng):
    states, y = _states(rng)
    cards = layer_cards(states, y, CardsConfig(bootstrap=4))
    d = cards.to_dict()
    assert len(d["probe_accuracy"]) == len(d["variability"]) == 3 and d["band"] is not None
    assert cards.rank_agreement == pytest.approx(1.0)  # ν falls and the probe rises with the separation
    assert d["recommended_layer"] == 2 and d["probe_best_layer"] == 2
    assert cards.to_csv().splitlines()[0] == "layer,variability,probe_accuracy,probe_macro_f1,knn_accuracy"


def test_too_few_texts_per_class_is_one_line(rng):
    states, y = _states(rng, n=9)
    with pytest.raises(VariscopeError, match="fewer than the probe's 5 folds"):
        layer_cards(states, y)


def test_compute_cards_caches_and_adds_costs(rng, minilm, cache):
    from analysis.cards.compute import compute_cards
    from analysis.pipeline import AnalysisConfig, StatesResult

    states, y = _states(rng, n_layers=7, n=60, d=384, sep=(0.1, 0.2, 0.4, 0.8, 1.2, 1.6, 2.0))
    texts = [f"text number {i}" for i in range(60)]
    st = StatesResult(states, y, ["a", "b", "c"], texts, None, "0" * 32, True, {}, {})
    kw = {"cache": cache, "states": st, "loader": lambda *a: minilm}
    first, _ = compute_cards(AnalysisConfig(), CardsConfig(folds=3), **kw)
    again, _ = compute_cards(AnalysisConfig(), CardsConfig(folds=3), **kw)
    assert not first.cache_hit and again.cache_hit and again.to_dict() == first.to_dict()
    assert len(first.params_kept) == 7 and first.params_kept == sorted(first.params_kept)
    sel = again.to_dict()["selectors"]  # the selector columns survive the cache, None at layer 0 included
    assert set(sel) == {"nu_standardised", "fisher_lda", "logme", "cka_change", "cosine_change"}
    assert sel["cka_change"][0] is None and all(len(v) == 7 for v in sel.values())
    assert sel["logme"][6] > sel["logme"][0] and "logme" in again.to_csv().splitlines()[0]
    other, _ = compute_cards(AnalysisConfig(), CardsConfig(folds=4), **kw)  # another config: another key
    assert not other.cache_hit and [r["kind"] for r in cache.entries()] == ["cards", "cards"]


def test_the_relative_gradient_norms_do_not_depend_on_the_random_state(rng, minilm):
    import torch

    from analysis.cards.compute import grad_norms
    from analysis.pipeline import AnalysisConfig, StatesResult

    states, y = _states(rng, n_layers=7, n=15, d=384, sep=(0.1, 0.2, 0.4, 0.8, 1.2, 1.6, 2.0))
    st = StatesResult(states, y, ["a", "b", "c"], [f"text {i} about {c}" for i, c in enumerate(y)], None, "0" * 32,
                      True, {}, {})  # fmt: skip
    cc = CardsConfig(folds=2, grad=True, grad_batches=1, grad_batch_size=15)
    torch.manual_seed(1)
    first = grad_norms(minilm[0], minilm[1], st, AnalysisConfig(max_length=16), cc, "cpu")
    torch.manual_seed(2)  # another state of the global generator: the head is seeded from the cards' seed
    assert grad_norms(minilm[0], minilm[1], st, AnalysisConfig(max_length=16), cc, "cpu") == first
    assert torch.initial_seed() == 2  # the caller's generator is left as it was


# ------------------------------------------------------------------ CLI (model: minilm, tiny n)
@pytest.fixture(scope="module")
def labelled_csv(tmp_path_factory):
    from analysis.data.sampling import SampleConfig, sample
    from analysis.data.tasks import TaskConfig, load_task

    t = sample(load_task(TaskConfig("bbc_news")), SampleConfig(n=60, seed=1))
    p = tmp_path_factory.mktemp("data") / "news.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["body", "topic"])
        w.writerows([(txt, t.label_names[y]) for txt, y in zip(t.texts, t.labels, strict=True)])
    return p


def _cli(*args):
    from analysis.cli.main import main

    return main([str(a) for a in args])


def test_cli_json_keys_probe_and_cache_hit(labelled_csv, tmp_path, capsys):
    from analysis.pipeline import get_states
    from analysis.settings import from_settings

    out, cache = tmp_path / "cards.json", tmp_path / "cache"
    data = ["--data", labelled_csv, "--text-col", "body", "--label-col", "topic", "--n", 0, "--max-length", 32]
    assert _cli("cards", *data, "--cache-dir", cache, "--json", out, "--csv", tmp_path / "c.csv") == 0
    d = json.loads(out.read_text())
    assert set(d) >= JSON_KEYS and "grad_norm" not in d and not d["cache_hit"]
    L1 = len(d["layers"])
    per_layer = ["variability", "probe_accuracy", "probe_macro_f1", "knn_accuracy", "params_kept", "flops_per_example"]
    assert L1 == 7 and all(len(d[k]) == L1 for k in per_layer)
    assert all(len(row) == 5 and all(isinstance(c, bool) for c in row) for row in d["probe_converged"])
    assert all(0 < i <= 200 for row in d["probe_iterations"] for i in row)
    assert isinstance(d["rank_agreement"], float) and d["n"] == 60
    assert d["params_kept"] == sorted(d["params_kept"]) and d["flops_per_example"][0] < d["flops_per_example"][-1]
    assert "Spearman" in capsys.readouterr().out
    # the probe equals scikit-learn's cross_val_score on the cached pooled states
    cfg = from_settings({"data": str(labelled_csv), "text_col": "body", "label_col": "topic", "n": 0, "max_length": 32})
    from analysis.store.cache import DiskCache

    st = get_states(cfg, cache=DiskCache(cache))
    assert st.cache_hit
    assert abs(d["probe_accuracy"][-1] - _reference_probe(st.states[-1], st.labels, CardsConfig())) < 0.03
    # second call: a cache hit with the same numbers
    out2 = tmp_path / "cards2.json"
    assert _cli("cards", *data, "--cache-dir", cache, "--json", out2) == 0
    d2 = json.loads(out2.read_text())
    assert d2["cache_hit"] and d2["probe_accuracy"] == d["probe_accuracy"] and d2["params_kept"] == d["params_kept"]
    assert d2["probe_converged"] == d["probe_converged"] and d2["probe_iterations"] == d["probe_iterations"]


@pytest.mark.slow
def test_cli_grad_norms(labelled_csv, tmp_path):
    out = tmp_path / "g.json"
    data = ["--data", labelled_csv, "--text-col", "body", "--label-col", "topic", "--n", 0, "--max-length", 16]
    assert _cli("cards", *data, "--grad", "--no-cache", "--json", out, "--folds", 3) == 0
    g = json.loads(out.read_text())["grad_norm"]
    assert len(g) == 7 and all(np.isfinite(v) and v > 0 for v in g)


def test_cli_errors_are_one_line(labelled_csv, tmp_path, capsys):
    data = ["--data", labelled_csv, "--text-col", "body", "--label-col", "topic", "--n", 0, "--max-length", 16]
    assert _cli("cards", *data, "--folds", 1, "--cache-dir", tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "2 folds" in err[0]  # refused before any work
    assert _cli("cards", *data, "--folds", 50, "--cache-dir", tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "--folds" in err and "\n" not in err


def test_cli_stream_cards_use_a_sample_beside_the_exact_nu(labelled_csv, tmp_path, capsys, monkeypatch):
    """cards --stream --keep K: probe and kNN on a seeded sample of K, ν (streamed) as from all the states."""
    data = ["--data", labelled_csv, "--text-col", "body", "--label-col", "topic", "--n", 0, "--max-length", 16]
    full, streamed = tmp_path / "full.json", tmp_path / "stream.json"
    assert _cli("cards", *data, "--folds", 3, "--cache-dir", tmp_path / "c", "--json", full) == 0
    capsys.readouterr()
    args = ["--folds", 3, "--stream", "--keep", 40, "--bootstrap", 5, "--cache-dir", tmp_path / "c", "--json", streamed]
    assert _cli("cards", *data, *args) == 0
    assert "probe on a seeded sample of 40 of 60 texts" in capsys.readouterr().out
    f, s = json.loads(full.read_text()), json.loads(streamed.read_text())
    assert set(s) >= JSON_KEYS and s["mode"] == "stream" and s["sample_size"] == 40 and s["n"] == 60
    assert "sample_size" not in f and "mode" not in f  # the default path's record is unchanged
    np.testing.assert_allclose(s["variability"], f["variability"], rtol=1e-9)
    assert s["band"] is not None and len(s["band"]["low"]) == 7 and s["settings"]["sample_size"] == 40
    assert not s["states_cache_hit"]
    assert _cli("cards", *data, *args) == 0  # the streamed result is in the cache (kind streams), so are the cards
    again = json.loads(streamed.read_text())
    assert again["states_cache_hit"] and again["cache_hit"] and again["variability"] == s["variability"]
    assert _cli("cards", *data, "--keep", 40, "--cache-dir", tmp_path / "c") == 2
    assert "--keep needs --stream" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun every process would write the same cards
    assert _cli("cards", *data, "--stream", "--cache-dir", tmp_path / "c") == 2
    assert "under torchrun use curve --stream" in capsys.readouterr().err


# ------------------------------------------------------------------ the Layers page (AppTest, no browser)
@pytest.fixture
def app(make_app):
    return make_app(model="minilm", task="bbc_news", n="50", max_length="16")


@pytest.mark.filterwarnings("ignore")
def test_layers_page_card_click_selects_the_layer(app):
    app.switch_page("pages/layers.py").run()
    assert not app.exception and not app.error
    assert any("on the ranking of layers" in m.value for m in [*app.success, *app.warning])
    keys = [b.key for b in app.button if (b.key or "").startswith("card_select_")]
    assert keys == [f"card_select_{l}" for l in range(7)]
    data = json.loads(app.get("plotly_chart")[0].proto.spec)["data"]
    assert {t["name"].split(" (")[0] for t in data} >= {"ν", "linear probe accuracy"}
    app.button(key="card_select_2").click().run()
    assert not app.exception and app.session_state["layer"] == 2
    assert app.button(key="card_select_2").label == "Selected"
    app.switch_page("pages/variability.py").run()
    assert not app.exception and app.slider(key="w_layer").value == 2


# ------------------------------------------------------------------ bench
def test_bench_report_has_the_cards_rows():
    from analysis.bench.report import report_markdown

    res = {
        "machine": {"platform": "x", "threads": 2, "torch": "2", "device": "cpu", "card": "cpu", "dtype": "float32"},
        "cards_vs_forward": 0.07,
        "cards": {"model": "minilm", "n": 1000, "reps": 5, "forward_s": 29.1, "cards_s": 2.0, "ratio": 0.07},
    }
    text = report_markdown(res, "img", "bench")
    row = next(l for l in text.splitlines() if "`cards_vs_forward`" in l)
    assert row.endswith("| 0.07 | ≤ 0.5 | yes |") and "## Layer cards" in text


@pytest.mark.slow
def test_bench_cards_section(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert _cli("bench", "--quick", "--only", "cards", "--reps", 1, "--json", out) == 0
    d = json.loads(out.read_text())
    assert 0 < d["cards_vs_forward"] == d["cards"]["ratio"] and d["cards"]["n"] == 300
    assert "cards/forward" in capsys.readouterr().out
