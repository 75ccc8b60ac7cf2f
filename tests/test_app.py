"""Streamlit AppTest of every page (no browser)."""

import pytest

from conftest import run_cli

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def app(make_app):
    return make_app(model="minilm", task="rotten_tomatoes", n="60")


def test_setup_computes_a_curve_with_L_plus_1_values(app):
    app.run()
    assert not app.exception and "Variscope" in app.title[0].value
    app.switch_page("pages/setup.py").run()
    assert not app.exception
    app.session_state["max_length"] = 32
    app.button(key="compute").click().run()
    assert not app.exception and not app.error
    assert any("7 layers" in s.value for s in app.success)
    app.switch_page("pages/variability.py").run()
    assert not app.exception and not app.error
    fig = app.get("plotly_chart")[0].proto.spec
    import json

    data = json.loads(fig)["data"]
    curve = [t for t in data if t.get("mode") == "lines+markers"][-1]
    assert _len(curve["x"]) == 7 and _len(curve["y"]) == 7
    assert app.session_state["layer"] in range(7)


def test_changing_the_layer_updates_shared_state_and_url(app):
    app.switch_page("pages/variability.py").run()
    assert not app.exception
    app.slider(key="w_layer").set_value(2).run()
    assert app.session_state["layer"] == 2
    assert app.query_params["layer"] == ["2"] or app.query_params["layer"] == "2"
    app.switch_page("pages/projections.py").run()
    assert app.slider(key="w_layer").value == 2


def test_projection_figure_holds_n_points(app):
    app.query_params["layer"] = "3"
    app.switch_page("pages/projections.py").run()
    app.radio(key="proj_method").set_value("pca").run()
    assert not app.exception and not app.error
    import json

    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    main = [s for s in specs if "Layer 3" in str(s["layout"].get("title", ""))][0]
    n = sum(_len(t["x"]) for t in main["data"])
    assert n == 60


def _len(x):
    if isinstance(x, dict):  # plotly's typed-array encoding
        import base64

        import numpy as np

        return len(np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]))
    return len(x)


def _values(x):
    if isinstance(x, dict):  # plotly's typed-array encoding
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]).tolist()
    return list(x)


def _curve_nu(app):
    import json

    data = json.loads(app.get("plotly_chart")[0].proto.spec)["data"]
    return _values([t for t in data if t.get("mode") == "lines+markers"][-1]["y"])


def test_above_the_threshold_the_pages_stream_a_sample_and_say_so(make_app):
    """Issue 16: above the session's threshold (the Setup page's 'Large samples' expander; lowered here) the
    Variability page streams (exact ν, as the in-memory path gives) and says that the band, projections and cards
    use a seeded sample of K of N texts; below it nothing changes."""
    import numpy as np

    query = {"model": "minilm", "task": "rotten_tomatoes", "n": "60", "max_length": "32"}
    below = make_app(**query)
    below.switch_page("pages/variability.py").run()
    assert not below.exception and not below.error
    assert not [m for m in below.info if "sample" in m.value]
    assert any(c.value.startswith("Computed · cache key") for c in below.caption)
    app = make_app(**query)
    app.session_state["stream_above"] = 50
    app.session_state["sample_keep"] = 40
    app.switch_page("pages/setup.py").run()
    app.button(key="compute").click().run()
    assert not app.exception and not app.error
    assert any("60 texts × 7 layers" in m.value and "the states of 40 kept" in m.value for m in app.success)
    app.switch_page("pages/variability.py").run()
    assert not app.exception and not app.error
    assert any("seeded sample of 40 of 60 texts" in m.value and "ν is exact" in m.value for m in app.info)
    assert any(c.value.startswith("Streamed 60 texts, states of 40 kept") for c in app.caption)
    np.testing.assert_allclose(_curve_nu(app), _curve_nu(below), rtol=1e-9)
    app.number_input(key="w_bootstrap").set_value(10).run()
    assert not app.exception and any(
        "band's width comes from resamples of a seeded sample of 40 of 60" in c.value for c in app.caption
    )
    app.switch_page("pages/projections.py").run()
    app.radio(key="proj_method").set_value("pca").run()
    assert not app.exception and not app.error
    assert any("Projections use a seeded sample of 40 of 60 texts" in m.value for m in app.info)
    import json

    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    main = [s for s in specs if "Layer" in str(s["layout"].get("title", ""))][0]
    assert sum(_len(t["x"]) for t in main["data"]) == 40
    app.switch_page("pages/layers.py").run()
    assert not app.exception and not app.error
    assert any("probe and kNN scores use a seeded sample of 40 of 60" in m.value for m in app.info)


def test_learn_page_nu_follows_the_sliders(app):
    app.switch_page("pages/learn.py").run()
    assert not app.exception
    before = float(app.metric[0].value)
    app.slider(key="toy_distance").set_value(7.5).run()
    far = float(app.metric[0].value)
    app.slider(key="toy_spread").set_value(2.5).run()
    spread = float(app.metric[0].value)
    assert far < before / 2  # means 2.5× further apart: ν falls roughly with the squared distance
    assert spread > 2 * far  # 2.5× the within-class spread at the same distance: ν rises


def test_learn_page_draws_each_counted_setting_of_claims_1_and_2(app):
    import json

    from analysis.reproduce.plots import claim_rows
    from analysis.reproduce.run import revive
    from conftest import ROOT

    res = revive(json.loads((ROOT / "docs" / "reproduction.json").read_text()))
    app.switch_page("pages/learn.py").run()
    assert not app.exception
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    (claims,) = [s for s in specs if "claim 1" in str(s["layout"].get("annotations", ""))]
    points = [(t["y"][0], t["x"][0]) for t in claims["data"]]
    want = [(f"{x['model']} · {x['task']} · k={x['k']}", x[f]) for c, f in (("claim1", "mean"), ("claim2", "gap"))
            for x in claim_rows(res, c)]  # fmt: skip
    assert want and [p[0] for p in points] == [w[0] for w in want]
    assert [p[1] for p in points] == pytest.approx([w[1] for w in want])
    outcomes = [x["outcome"] for c in ("claim1", "claim2") for x in claim_rows(res, c)]
    colour = {"better": "green", "match": "green", "worse": "red", "worse beyond the margin": "red"}
    assert [t["marker"]["color"] for t in claims["data"]] == [colour.get(o, "gray") for o in outcomes]


def _downloads(app, storages):
    """{file name: bytes} of the page's download buttons, read from the run's media storage."""
    out = {}
    for b in app.get("download_button"):
        name = b.proto.url.rsplit("/", 1)[-1]
        data = next(
            st._files_by_id[name.split(".")[0]].content for st in storages if name.split(".")[0] in st._files_by_id
        )
        out[b.label] = data if isinstance(data, bytes) else data.encode()
    return out


def test_variability_downloads_equal_the_cli(app, monkeypatch, tmp_path):
    """The page's CSV is curve_csv of its curve, and CSV and JSON match `python -m analysis curve`."""
    import json

    import streamlit.testing.v1.app_test as app_test

    from analysis.variability import curve_csv

    storages = []

    class Recording(app_test.MemoryMediaFileStorage):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            storages.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Recording)
    app.query_params["max_length"] = "32"
    app.switch_page("pages/variability.py").run()
    app.number_input(key="w_bootstrap").set_value(20).run()
    assert not app.exception and not app.error
    files = _downloads(app, storages[-1:])
    csv, record = files["Curve as CSV"].decode(), json.loads(files["Curve as JSON"])
    assert record["band"] and len(record["variability"]) == 7
    assert csv == curve_csv(record)

    out = tmp_path / "cli"
    # the same settings on the command line (its own cache: the page's is the fixture's VARISCOPE_CACHE)
    r = run_cli(
        "curve",
        "--model",
        "minilm",
        "--task",
        "rotten_tomatoes",
        "--n",
        60,
        "--max-length",
        32,
        "--bootstrap",
        20,
        "--csv",
        f"{out}.csv",
        "--json",
        f"{out}.json",
        cache_dir=tmp_path / "cli-cache",
    )
    assert r.returncode == 0, r.stderr
    assert csv == (tmp_path / "cli.csv").read_text()
    cli = json.loads((tmp_path / "cli.json").read_text())
    shared = {k: v for k, v in cli.items() if k not in ("cache_hit", "seconds", "warnings")}
    assert {k: record[k] for k in shared} == shared


def test_errors_render_as_st_error(app):
    app.query_params["model"] = "definitely-not/../a-model"
    app.switch_page("pages/variability.py").run()
    assert not app.exception
    assert app.error and "unknown model" in app.error[0].value


@pytest.mark.slow  # training
def test_training_page_tiny_run(app, monkeypatch):
    import time

    app.query_params.update({"n": "48", "max_length": "24", "layer": "2"})
    app.switch_page("pages/training.py").run()
    assert not app.exception and not app.error
    app.number_input(key="train_steps").set_value(4)
    app.number_input(key="train_eval_n").set_value(30)
    app.button(key="train_start").click().run()
    assert not app.exception
    runs = app.session_state["runs"]
    assert len(runs) == 1 and "ℓ*=2" in runs[0]["label"]
    t0 = time.time()
    while runs[0]["monitor"].running and time.time() - t0 < 180:
        time.sleep(1)
    app.run()
    snap = runs[0]["monitor"].snapshot()
    assert snap["status"] == "finished", snap["error"]
    assert snap["result"]["steps"] == 4 and snap["result"]["layers_kept"] == 2
    assert any(b.label == "Trainable weights (safetensors)" for b in app.get("download_button"))
    # a failing export fails the run ("failed: <reason>" on the page), never "finished"
    from analysis.training import export

    def broken(result, model):
        raise OSError("No space left on device")

    monkeypatch.setattr(export, "artifacts", broken)
    app.button(key="train_start").click().run()
    runs = app.session_state["runs"]
    t0 = time.time()
    while runs[1]["monitor"].running and time.time() - t0 < 180:
        time.sleep(1)
    app.run()
    assert runs[1]["monitor"].snapshot()["status"] == "failed"
    assert [e.value for e in app.error] == ["failed: OSError: No space left on device"]


def test_url_cannot_open_server_paths_and_bad_settings_are_errors(app, monkeypatch, tmp_path, make_app):
    """Issue 12: a link naming a server folder is ignored (unless the operator opts in); seed=-1 is one error;
    after a rejected upload Compute does not fall back to the previous task."""
    folder = tmp_path / "server-folder"
    folder.mkdir()
    (folder / "secret.txt").write_text("not for links")
    app.query_params.update({"task": str(folder), "model": str(folder)})
    app.switch_page("pages/setup.py").run()
    assert not app.exception
    assert sum("cannot be opened from a URL" in e.value for e in app.error) == 2
    assert app.session_state["task"] == "rotten_tomatoes" and app.session_state["model"] == "minilm"
    # the operator's opt-in lets the same link through
    monkeypatch.setenv("VARISCOPE_ALLOW_LOCAL_PATHS", "1")
    opted = make_app(task=str(folder))
    opted.run()
    assert not opted.exception and opted.session_state["task"] == str(folder)
    # /variability?seed=-1: one st.error with the settings layer's message, no exception
    neg = make_app(seed="-1", n="60")
    neg.switch_page("pages/variability.py").run()
    assert not neg.exception and [e.value for e in neg.error] == ["seed must be at least 0, got -1"]
    # a rejected upload, then Compute: an error, and nothing computed
    up = make_app()
    up.session_state["task_source"] = "Upload a file"
    up.session_state["upload"] = {"name": "bad.csv", "bytes": b"text;label\nhello;1\nworld;0\n"}
    up.switch_page("pages/setup.py").run()
    assert not up.exception and any("single column" in e.value for e in up.error)
    assert up.button(key="compute").disabled  # a browser cannot press it (AppTest refuses the click too)
    up.run()
    assert not up.exception and not up.success
    assert not (tmp_path / "cache" / "states").exists() or not list((tmp_path / "cache" / "states").iterdir())


def test_variability_page_says_how_sure_the_recommendation_is_on_a_flat_gemma_like_curve(make_app, monkeypatch):
    """Synthetic states (no model): ν flat over layers 11..18, so the page shows the ℓ* shares of its default
    bootstrap resamples and says that no layer wins a majority."""
    from test_shares import flat_states

    import analysis.pipeline as pipeline
    from analysis.pipeline import StatesResult

    states, labels = flat_states()
    fake = StatesResult(
        states, labels, ["neg", "pos"], [f"t{i}" for i in range(len(labels))], None, "flat-gemma-like", False, {}, {}
    )
    monkeypatch.setattr(pipeline, "get_states", lambda cfg, **kw: fake)
    at = make_app(model="minilm", task="rotten_tomatoes", n="120")
    at.switch_page("pages/variability.py").run()
    assert not at.exception and not at.error
    lines = [c.value for c in at.caption if c.value.startswith("ℓ* = ")]
    assert len(lines) == 1 and " % of resamples" in lines[0]
    assert any("No layer is ℓ* in most resamples" in i.value for i in at.info)
    assert at.toggle(key="log_scale").value  # ν spans more than 10x: a log axis by default


def test_training_page_shows_the_time_before_start_without_starting_a_run(app):
    app.query_params.update({"n": "48", "max_length": "24", "layer": "2"})
    app.switch_page("pages/training.py").run()
    assert not app.exception and not app.error
    lines = [c.value for c in app.caption if "on this machine" in c.value]
    assert len(lines) == 1 and lines[0].startswith(":material/timer: Time for this run: about ")
    assert "(cost model at " in lines[0] and "GFLOP/s measured here)" in lines[0]
    assert app.session_state["runs"] == [] and not app.button(key="train_start").disabled
    app.checkbox(key="train_cmp_full").check().run()  # the baselines join the estimate
    assert any(c.value.startswith(":material/timer: Time for these 2 runs: about ") for c in app.caption)
    assert app.session_state["runs"] == []


def test_pages_say_what_they_load(make_app, monkeypatch):
    """The model's name while it loads, the number of texts while their states are computed."""
    import contextlib

    import streamlit as st

    seen, real = [], st.spinner

    @contextlib.contextmanager
    def spy(text="", *a, **k):
        seen.append(text)
        with real(text, *a, **k):
            yield

    monkeypatch.setattr(st, "spinner", spy)
    at = make_app(model="minilm", task="rotten_tomatoes", n="60", max_length="24")
    at.switch_page("pages/projections.py").run()
    assert not at.exception and not at.error
    assert "Computing states for 60 texts of rotten_tomatoes with minilm…" in seen and "Loading minilm…" in seen
    assert seen.index("Loading minilm…") > seen.index("Computing states for 60 texts of rotten_tomatoes with minilm…")


def test_the_states_choice_is_shared_in_the_url_and_names_the_curve(make_app, monkeypatch, tmp_path):
    import json

    from conftest import tiny_model

    def legend(at):
        data = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
        return [t.get("name", "") for t in data if t.get("mode") == "lines+markers"][-1]

    monkeypatch.setenv("VARISCOPE_ALLOW_LOCAL_PATHS", "1")
    decoder = str(tiny_model("llama", tmp_path / "llama"))
    at = make_app(model=decoder, task="rotten_tomatoes", n="40", max_length="16", representation="auto")
    at.switch_page("pages/variability.py").run()
    assert not at.exception and not at.error
    assert legend(at).endswith(" · final-norm")  # auto on a pre-norm decoder: through the final norm
    assert any("**States** auto → final-norm" in m.value for m in at.sidebar.markdown)  # what auto resolved to
    at.switch_page("pages/setup.py").run()
    assert at.selectbox(key="w_representation").value == "auto"
    enc = make_app(model="minilm", task="rotten_tomatoes", n="40", max_length="16", representation="auto")
    enc.switch_page("pages/variability.py").run()
    assert not enc.exception and not enc.error and not legend(enc).endswith("final-norm")  # an encoder: raw
    assert any("**States** auto → raw" in m.value for m in enc.sidebar.markdown)
    bad = make_app(model="minilm", task="rotten_tomatoes", n="40", max_length="16", representation="final-norm")
    bad.switch_page("pages/variability.py").run()
    assert not bad.exception and any("needs a pre-norm decoder" in e.value for e in bad.error)


def test_home_names_the_decoders_states_from_the_shipped_curve(make_app):
    import json

    at = make_app()
    at.run()
    assert not at.exception and not at.error
    titles = [a["text"] for a in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]]
    assert titles == ["minilm", "gemma3-270m · final-norm states"]  # docs/curves/*.json, "auto" resolved
    assert any("through its final norm" in c.value for c in at.caption)


def test_the_sidebar_never_prepares_a_model_to_name_its_states(make_app, monkeypatch):
    import analysis.models.registry as registry
    import analysis.pipeline as pipeline

    def refuse(*a, **k):
        raise AssertionError("the sidebar resolved the model")

    monkeypatch.setattr(registry, "needs_preparation", lambda name, root: True)  # e.g. a GGUF model not converted
    monkeypatch.setattr(pipeline, "concrete", refuse)
    at = make_app(model="gemma3-270m", representation="auto")
    at.run()
    assert not at.exception
    assert any("**States** auto  \n" in m.value for m in at.sidebar.markdown)
