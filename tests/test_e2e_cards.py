"""End to end in real Chromium: the Layers page's cards select the layer that the other pages show."""

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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    env = {**os.environ, "VARISCOPE_CACHE": str(tmp_path_factory.mktemp("cache")), "HF_HUB_OFFLINE": "1"}
    log_path = tmp_path_factory.mktemp("log") / "streamlit.log"
    with open(log_path, "w") as log:
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
