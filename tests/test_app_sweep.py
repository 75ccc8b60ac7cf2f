"""AppTest of the sweep in the app: the Layers page's trained curve, and the Variability page's evidence line."""

import json
import time

import pytest
from _sweep_records import make_record, record, sweep_config

pytestmark = pytest.mark.filterwarnings("ignore")
QUERY = {"model": "minilm", "task": "rotten_tomatoes", "n": "60"}


def _page_config():
    """The AnalysisConfig the pages build from QUERY (the same settings layer)."""
    from analysis.settings import from_settings

    return from_settings({"model": "minilm", "task": "rotten_tomatoes", "n": 60})


def _traces(at, key="cards_chart"):
    chart = next(c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id)
    return {t.get("name"): t for t in json.loads(chart.proto.spec)["data"]}


def _values(x):
    """A plotly array as a list (plotly may encode it as a typed array)."""
    if isinstance(x, dict) and "bdata" in x:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"])).tolist()
    return list(x)


def test_layers_page_shows_the_trained_curve_of_a_cached_sweep_at_once(make_app, tmp_path):
    from analysis.store.cache import DiskCache
    from analysis.sweep.run import save_record

    rec = make_record(_page_config(), sweep_config(6), seed=4)
    save_record(_page_config(), sweep_config(6), rec, DiskCache(tmp_path / "cache"))
    at = make_app(**QUERY)
    at.switch_page("pages/layers.py").run()
    assert not at.exception and not at.error
    traces = _traces(at)
    mean = traces["trained accuracy, mean (right axis)"]
    assert _values(mean["x"]) == rec["layers"] and _values(mean["y"]) == pytest.approx(rec["mean"])
    assert any(name.startswith(f"oracle layer {rec['oracle_layer']} (tied: ") for name in traces)
    picks = next(d.value for d in at.dataframe if "selector" in d.value.columns)  # the picks, not the scores
    assert list(picks["selector"]) == list(rec["selectors"])
    nu = rec["selectors"]["nu_argmin"]
    assert picks.set_index("selector").loc["nu_argmin", "regret"] == pytest.approx(nu["regret"])
    assert not [b for b in at.button if b.key == "sweep_start"]  # a finished sweep: nothing to start


def test_layers_page_without_a_sweep_offers_to_train_every_layer_with_its_count(make_app):
    at = make_app(**QUERY)
    at.switch_page("pages/layers.py").run()
    assert not at.exception and not at.error
    assert at.button(key="sweep_start").label == "Train every layer"
    sc = sweep_config(6)
    assert any(f"{sc.runs} training runs, {sc.total_steps:,} steps" in c.value for c in at.caption)
    assert "trained accuracy, mean (right axis)" not in _traces(at)
    (table,) = [d.value for d in at.dataframe]  # every selector's score per layer
    assert list(table["layer"]) == list(range(7)) and {"ν ↓", "ν standardised ↓", "Fisher ↑", "LogME ↑"} <= set(table)
    assert {"1−CKA ↑", "1−cos ↑", "probe ↑", "kNN ↑"} <= set(table)
    timer = [c.value for c in at.caption if "Time for this sweep" in c.value]  # before Start, as the CLI's first line
    assert len(timer) == 1 and f"{sc.runs} runs to train: about " in timer[0] and "on this machine" in timer[0]


@pytest.mark.parametrize("model_family_book", ["encoder", "decoder"])
def test_variability_page_shows_the_evidence_line_only_for_a_family_with_evidence(
    make_app, tmp_path, monkeypatch, model_family_book
):
    from analysis.sweep import evidence

    model = "minilm" if model_family_book == "encoder" else "gemma3-270m"
    book = tmp_path / "selectors.json"
    book.write_text(json.dumps({"sweeps": [record(model, "rotten_tomatoes", 6)]}))
    monkeypatch.setattr(evidence, "BOOK_PATH", book)
    at = make_app(**QUERY)
    at.switch_page("pages/variability.py").run()
    assert not at.exception and not at.error
    lines = [c.value for c in at.caption if c.value.startswith("Trained evidence")]
    if model_family_book == "encoder":  # the page's model is minilm, an encoder: the evidence applies
        assert len(lines) == 1 and "`probe` has a lower mean regret than ν's argmin rule" in lines[0]
    else:
        assert lines == []


@pytest.mark.slow  # trains six tiny runs of MiniLM
def test_train_every_layer_runs_in_the_background_and_a_later_visit_finds_it(make_app):
    at = make_app(model="minilm", task="rotten_tomatoes", n="48", max_length="24")
    at.switch_page("pages/layers.py").run()
    at.number_input(key="sweep_seeds").set_value(1)
    at.number_input(key="sweep_steps").set_value(2)
    at.number_input(key="sweep_eval_n").set_value(20)
    at.selectbox(key="sweep_lr").set_value(1e-3)
    at.run()
    assert any("6 training runs, 12 steps" in c.value for c in at.caption)
    assert any("Time for this sweep: 6 runs to train: about" in c.value for c in at.caption)
    at.button(key="sweep_start").click().run()
    assert not at.exception
    monitor = at.session_state["sweep_job"]["monitor"]
    t0 = time.time()
    while monitor.running and time.time() - t0 < 300:
        time.sleep(1)
    snap = monitor.snapshot()
    assert snap["status"] == "finished", snap["error"]
    assert snap["progress"]["step"] == snap["progress"]["max_steps"] == 12
    assert snap["progress"]["estimate"] > 0 and any(
        e.get("line", "").startswith("estimate for the 6 runs") for e in snap["events"]
    )
    at.run()
    assert not at.exception and not at.error
    assert _values(_traces(at)["trained accuracy, mean (right axis)"]["y"]) == pytest.approx(snap["result"]["mean"])
    later = make_app(model="minilm", task="rotten_tomatoes", n="48", max_length="24")  # a new browser session
    later.switch_page("pages/layers.py").run()
    for key, value in (("sweep_seeds", 1), ("sweep_steps", 2), ("sweep_eval_n", 20)):
        later.number_input(key=key).set_value(value)
    later.selectbox(key="sweep_lr").set_value(1e-3)
    later.run()
    assert "sweep_job" not in later.session_state
    assert _values(_traces(later)["trained accuracy, mean (right axis)"]["y"]) == pytest.approx(snap["result"]["mean"])
