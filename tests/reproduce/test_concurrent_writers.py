"""Two reproduce runs writing one --json at once keep both runs' records (lock, then re-read and merge)."""

import json
import threading

import pytest

from analysis.cli import main
from analysis.reproduce.run import RESULTS_VERSION


def _part(model):
    return {
        "version": RESULTS_VERSION,
        "parts": [{"models": [model], "settings": {"lr": 1e-4}}],
        "curves": [{"model": model, "task": "t", "layers": [0, 1, 2]}],
        "cards": [],
        "runs": [],
        "robustness": [],
        "lr_search": [],
    }


def test_two_reproduce_runs_on_one_json_keep_both_records(tmp_path, monkeypatch):
    from analysis.cli import reproduce as cli

    both_started = threading.Barrier(2)  # both runs have started (and read --json) before either saves

    def fake_run(rc, *, cache, log, save, cached_only):
        both_started.wait(timeout=60)
        return _part(rc.models[0])

    monkeypatch.setattr(cli, "run", fake_run)
    # the estimate loads each model to time it; this test is about the writers, not the models installed here
    monkeypatch.setattr(cli, "plan_estimate", lambda rc, root=None: type("E", (), {"text": lambda self: "about 1 s"})())
    monkeypatch.setattr(cli, "write_doc", lambda *a, **k: None)
    monkeypatch.setattr(cli, "registry_status", list, raising=False)
    out = tmp_path / "r.json"
    codes = {}

    def go(model):
        argv = ["reproduce", "--models", model, "--json", str(out), "--doc", str(tmp_path / "r.md")]
        try:
            codes[model] = main([*argv, "--cache-dir", str(tmp_path / "c")])
        except SystemExit as e:  # pragma: no cover - argparse
            codes[model] = e.code

    threads = [threading.Thread(target=go, args=(m,)) for m in ("minilm", "mpnet")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert codes == {"minilm": 0, "mpnet": 0}
    res = json.loads(out.read_text())
    assert sorted(c["model"] for c in res["curves"]) == ["minilm", "mpnet"]
    assert sorted(m for p in res["parts"] for m in p["models"]) == ["minilm", "mpnet"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [('{"curves": [], "verdicts": {}, "parts": "x"}', "wrong shape"), ('{"curves": [', "--fresh")],
)
def test_a_reproduce_json_that_cannot_be_merged_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch, content, needle
):
    from analysis.cli import reproduce as cli

    def boom(*a, **k):
        raise AssertionError("trained before checking --json")

    monkeypatch.setattr(cli, "run", boom)
    out = tmp_path / "r.json"
    out.write_text(content)
    code = main(["reproduce", "--models", "minilm", "--json", str(out), "--doc", str(tmp_path / "r.md")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0] and "--fresh" in err[0]
    assert out.read_text() == content
