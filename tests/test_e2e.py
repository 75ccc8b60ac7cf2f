"""End to end in real Chromium (Debian's package) against `streamlit run app.py`."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ARTIFACTS, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
        reason="Debian chromium not installed (make test installs it)",
    ),
]
SERVER_LOG = None
SERVER_CACHE = None  # the server's VARISCOPE_CACHE, where a test may put a finished sweep
NAV = ["Home", "Setup", "Variability", "Layers", "Projections", "Training", "Learn"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    global SERVER_LOG, SERVER_CACHE
    SERVER_CACHE = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "VARISCOPE_CACHE": str(SERVER_CACHE), "HF_HUB_OFFLINE": "1"}
    SERVER_LOG = tmp_path_factory.mktemp("log") / "streamlit.log"
    with open(SERVER_LOG, "w") as log:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            p.kill()
            pytest.fail("streamlit did not start")
        yield url
        p.terminate()
        p.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    yield pg
    ctx.close()


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


TRACE_LENGTHS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(
    d => (d._fullData || []).map(t => ({name: t.name, mode: t.mode, n: t._length})))"""


def wait_for_charts(page, predicate, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        charts = page.evaluate(TRACE_LENGTHS)
        if predicate(charts):
            return charts
        errs = page.locator("[data-testid=stException]").all_inner_texts()
        assert not errs, errs
        time.sleep(1)
    shot(page, "timeout")
    raise AssertionError(f"charts never matched: {page.evaluate(TRACE_LENGTHS)}")


def nav_labels(page):
    return [t.strip() for t in page.locator("[data-testid=stSidebarNav] a").all_inner_texts()]


def test_variability_url_renders_curve_with_no_clicks(server, page):
    page.goto(server + "/variability?model=minilm&task=rotten_tomatoes&n=200")
    wait_for_charts(page, lambda cs: any(t["mode"] == "lines+markers" and t["n"] == 7 for c in cs for t in c))
    # the first request of a fresh server: sidebar has exactly our pages, no stray "app"
    page.wait_for_selector("[data-testid=stSidebarNav] a")
    labels = nav_labels(page)
    assert len(labels) == len(NAV) and [l[-len(n) :] for l, n in zip(labels, NAV, strict=True)] == NAV, labels
    assert "layer=" in page.url and "n=200" in page.url
    shot(page, "variability")


def test_projections_url_shows_n_points(server, page):
    page.goto(server + "/projections?model=minilm&task=rotten_tomatoes&n=200&layer=6")
    wait_for_charts(
        page,
        lambda cs: any(
            sum(t["n"] for t in c) == 200 and len(c) == 2 and all(t["mode"] == "markers" for t in c) for c in cs
        ),
        timeout=300,
    )
    page.wait_for_selector("text=Layer 6 — UMAP", timeout=300_000)
    shot(page, "projections")


def test_click_through_setup_compute_variability(server, page):
    page.goto(server + "/setup?model=minilm&task=bbc_news&n=100&max_length=64")
    page.get_by_role("button", name="Compute").click()
    page.wait_for_selector("text=texts × 7 layers", timeout=240_000)
    page.get_by_text("See the variability curve").click()
    wait_for_charts(page, lambda cs: any(t["mode"] == "lines+markers" and t["n"] == 7 for c in cs for t in c))
    assert "/variability" in page.url and "task=bbc_news" in page.url
    shot(page, "setup-to-variability")


def test_training_live_chart_and_stop(server, page):
    page.goto(server + "/training?model=minilm&task=rotten_tomatoes&n=200&max_length=48&layer=4")
    page.get_by_role("button", name="Start").wait_for(timeout=240_000)
    time.sleep(2)
    page.get_by_role("button", name="Start").click()
    seen = set()
    t0 = time.time()
    while len(seen) < 3 and time.time() - t0 < 240:
        lengths = page.evaluate(TRACE_LENGTHS)
        loss = [t["n"] for c in lengths for t in c if t["name"] == "train loss"]
        if loss and loss[0] > 0:
            seen.add(loss[0])
        time.sleep(0.5)
    assert len(seen) >= 3, seen  # the chart updated at least twice after the first point
    import re

    from playwright.sync_api import Error as PlaywrightError

    shown = int(re.search(r"step (\d+)/\d+", page.inner_text("body")).group(1))
    page.locator(".st-key-train_stop button").click()  # not the status widget's own "Stop"
    # training ends within one step; the partial model's evaluation ("stopping: ...") can be skipped
    t0 = time.time()
    while not page.locator("text=— stopped").count() and time.time() - t0 < 120:
        skip = page.locator(".st-key-train_skip button")
        if skip.count():
            shot(page, "training-stopping")
            with contextlib.suppress(PlaywrightError):  # the evaluation ended first: the button is gone
                skip.click(timeout=5_000)
        time.sleep(0.5)
    page.wait_for_selector("text=— stopped", timeout=30_000)
    note = page.locator("text=/stopped at step \\d+ \\(Stop pressed at step \\d+\\)/").inner_text()
    final, pressed = map(int, re.findall(r"\d+", note))
    assert shown <= pressed and final <= pressed + 1, (shown, pressed, final)  # at most one step after the click
    page.wait_for_selector("button:has-text('Start'):not([disabled])", timeout=60_000)
    shot(page, "training")


def test_other_sessions_are_served_while_one_computes(server, browser):
    a = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    b = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    a.goto(server + "/variability?model=minilm&task=twenty_newsgroups&n=3000&max_length=128")
    a.wait_for_selector("text=Computing hidden states", timeout=120_000)
    t0 = time.time()
    b.goto(server + "/learn")
    b.wait_for_selector("text=ν (variability ratio)", timeout=60_000)
    served_in = time.time() - t0
    still_computing = a.locator("text=Computing hidden states").count() > 0
    shot(b, "learn")
    a.context.close()
    b.context.close()
    assert still_computing, f"the long computation ended before the second session was served ({served_in:.1f}s)"


def test_learn_page_draws_the_claims_chart(server, page):
    page.goto(server + "/learn")
    chart = page.locator(".js-plotly-plot", has_text="variability − top-k (claim 1)")
    chart.wait_for(timeout=60_000)
    assert chart.locator(".point").count() > 0  # a marker per counted setting, drawn in the browser
    ARTIFACTS.mkdir(exist_ok=True)
    chart.scroll_into_view_if_needed()
    chart.screenshot(path=str(ARTIFACTS / "learn_claims.png"))


def test_closing_the_tab_stops_the_run(server, browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    page = ctx.new_page()
    page.goto(server + "/training?model=minilm&task=bbc_news&n=200&max_length=32&layer=3")
    page.get_by_role("button", name="Start").wait_for(timeout=240_000)
    time.sleep(2)
    page.get_by_role("button", name="Start").click()
    page.wait_for_selector("text=— running", timeout=120_000)
    ctx.close()  # the user closes the tab mid-run
    t0 = time.time()
    while time.time() - t0 < 120:
        text = SERVER_LOG.read_text()
        if "ℓ*=3" in text and "(browser session closed)" in text:
            break
        time.sleep(1)
    assert "stopped" in text and "(browser session closed)" in text, text[-2000:]


def test_layers_card_selects_the_layer_for_the_variability_page(server, page):
    page.goto(server + "/layers?model=minilm&task=rotten_tomatoes&n=200")
    page.locator(".st-key-card_select_3 button").wait_for(timeout=300_000)
    page.wait_for_selector("text=on the ranking of layers", timeout=60_000)
    assert not page.locator("[data-testid=stException]").count()
    shot(page, "layers")
    page.locator(".st-key-card_select_3 button").click()
    page.wait_for_function("() => window.location.search.includes('layer=3')", timeout=60_000)
    page.wait_for_selector(".st-key-card_select_3 button:has-text('Selected')", timeout=60_000)
    page.locator("[data-testid=stSidebarNav] a", has_text="Variability").click()
    page.wait_for_url("**/variability?**", timeout=60_000)
    page.wait_for_selector("text=Variability per layer", timeout=120_000)
    page.wait_for_selector("text=selected 3", timeout=120_000)  # the curve's marker of the selected layer
    assert "layer=3" in page.url
    assert page.locator("[data-testid=stSliderThumbValue]").first.inner_text().strip() == "3"
    shot(page, "layers-to-variability")


def test_layers_page_shows_the_trained_curve_of_a_cached_sweep(server, page):
    """A sweep finished earlier (its record in the server's cache) is on the Layers chart at once, no click."""
    from _sweep_records import make_record, sweep_config

    from analysis.settings import from_settings
    from analysis.store.cache import DiskCache
    from analysis.sweep.run import save_record

    cfg = from_settings({"model": "minilm", "task": "rotten_tomatoes", "n": 100})  # what the URL below sets
    rec = make_record(cfg, sweep_config(6), seed=5)
    save_record(cfg, sweep_config(6), rec, DiskCache(SERVER_CACHE))
    page.goto(server + "/layers?model=minilm&task=rotten_tomatoes&n=100")
    charts = wait_for_charts(
        page, lambda cs: any(t["name"] == "trained accuracy, mean (right axis)" and t["n"] == 6 for c in cs for t in c)
    )
    names = [t["name"] for c in charts for t in c]
    assert f"oracle layer {rec['oracle_layer']} (tied: {', '.join(map(str, rec['tied_layers']))})" in names
    page.wait_for_selector("text=Trained truth", timeout=60_000)
    assert not page.locator(".st-key-sweep_start").count()  # finished: nothing to start
    shot(page, "layers-sweep")
