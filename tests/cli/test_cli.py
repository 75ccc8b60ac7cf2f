import json

import numpy as np
import pytest
import torch

from conftest import run_cli


def test_curve_end_to_end_offline_default_and_cache_hit(tmp_path):
    out1, out2 = tmp_path / "a.json", tmp_path / "b.json"
    r = run_cli(
        "curve",
        "--model",
        "minilm",
        "--task",
        "rotten_tomatoes",
        "--n",
        400,
        "--json",
        out1,
        "--csv",
        tmp_path / "a.csv",
        cache_dir=tmp_path / "c",
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(out1.read_text())
    assert d["layers"] == list(range(7))
    assert len(d["variability"]) == 7 and all(np.isfinite(d["variability"])) and min(d["variability"]) > 0
    for k in ("band", "counts", "model", "task", "pooling", "max_length", "n", "cache_hit", "seconds"):
        assert k in d
    assert d["n"] == 400 and sum(d["counts"].values()) == 400 and d["cache_hit"] is False
    assert {"total", "extract"} <= set(d["seconds"])
    assert "recommended" in r.stdout and "layer" in r.stdout
    r2 = run_cli(
        "curve", "--model", "minilm", "--task", "rotten_tomatoes", "--n", 400, "--json", out2, cache_dir=tmp_path / "c"
    )
    assert r2.returncode == 0, r2.stderr
    d2 = json.loads(out2.read_text())
    assert d2["cache_hit"] is True and d2["variability"] == d["variability"]
    # the default bootstrap resamples: a band and the ℓ* shares (per layer, summing to 1, none at layer 0)
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == "layer,variability,band_low,band_high"
    assert len(d["argmin_share"]) == 7 and abs(sum(d["argmin_share"]) - 1) < 1e-9 and d["argmin_share"][0] == 0
    assert "of resamples" in r.stdout


def _independent_nu(X, y):
    """eq. 3 written out directly, with an explicit d×d pseudo-inverse."""
    C = len(np.unique(y))
    mus = [X[y == c].mean(0) for c in np.unique(y)]
    m = np.mean(mus, 0)
    Sw = sum(np.cov(X[y == c].T, bias=True) for c in np.unique(y)) / C
    Sb = sum(np.outer(mu - m, mu - m) for mu in mus) / C
    return np.trace(Sw @ np.linalg.pinv(Sb, rcond=1e-10, hermitian=True)) / C


def test_cli_matches_independent_eq3_on_a_csv(tmp_path, minilm):
    rng = np.random.default_rng(0)
    words = {
        "sport": "goal match team win league",
        "food": "recipe taste cook bake dinner",
        "tech": "chip code software laptop data",
    }
    rows = []
    for i in range(45):
        c = list(words)[i % 3]
        rows.append((" ".join(rng.choice(words[c].split(), 5)) + f" number {i}", c))
    f = tmp_path / "mine.csv"
    f.write_text("sentence,topic\n" + "\n".join(f"{t},{c}" for t, c in rows) + "\n")
    out = tmp_path / "o.json"
    r = run_cli(
        "curve",
        "--data",
        f,
        "--text-col",
        "sentence",
        "--label-col",
        "topic",
        "--n",
        0,
        "--device",
        "cpu",
        "--json",
        out,
        cache_dir=tmp_path / "c",
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())["variability"]
    model, tok = minilm
    texts, labels = [t for t, _ in rows], np.array([c for _, c in rows])
    enc = tok(
        texts, padding=True, truncation=True, max_length=128, return_tensors="pt", return_special_tokens_mask=True
    )
    with torch.inference_mode():
        hs = model(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            token_type_ids=enc["token_type_ids"],
            output_hidden_states=True,
        ).hidden_states
    w = (enc["attention_mask"] * (1 - enc["special_tokens_mask"])).float()
    for l, h in enumerate(hs):
        X = ((h * w[..., None]).sum(1) / w.sum(1, keepdim=True)).double().numpy()
        assert got[l] == pytest.approx(_independent_nu(X, labels), rel=1e-3)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "no-such-model-xyz/../x"], "unknown model"),
        (["--task", "no_such_task!"], "unknown task"),
        (["--data", "/nonexistent/file.csv"], "does not exist"),
        (["--pooling", "mean", "--max-length", "0"], "max length"),
        (["--max-length", "100000"], "above this model's limit"),
        (["--per-class", "-3"], "per-class cap"),
        (["--model", "/tmp"], "no config.json"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, args, needle):
    r = run_cli("curve", *args, "--n", 20, cache_dir=tmp_path / "c")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "c" / "states").exists() or not any((tmp_path / "c" / "states").iterdir())


def test_cache_list_and_clear(tmp_path):
    run_cli("curve", "--n", 30, "--max-length", 16, cache_dir=tmp_path / "c")
    r = run_cli("cache", "list", cache_dir=tmp_path / "c")
    assert "1 entries" in r.stdout and "minilm" in r.stdout and "budget 20 GB" in r.stdout
    assert any(l.startswith("states") and l.endswith(" MB") and "1 entries" in l for l in r.stdout.splitlines())
    r = run_cli("cache", "clear", cache_dir=tmp_path / "c")
    assert "deleted 1" in r.stdout


def test_curve_finds_its_model_only_under_its_own_cache_and_names_the_states(tmp_path, model_roots):
    from analysis.cli import main

    roots = model_roots
    own, out = tmp_path / "own", tmp_path / "c.json"
    args = ["curve", "--model", "minilm", "--n", "40", "--max-length", "16", "--device", "cpu", "--bootstrap", "0"]
    assert main([*args, "--cache-dir", str(own), "--json", str(out)]) == 0
    assert roots and set(roots) == {str(own)}  # "auto" resolved where the states were computed, nowhere else
    assert json.loads(out.read_text())["representation"] == "raw"  # auto on an encoder
