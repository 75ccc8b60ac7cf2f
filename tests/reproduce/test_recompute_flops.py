"""Stored training records get the FLOPs of the current cost model back, without training."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from analysis.reproduce.config import ReproConfig
from analysis.reproduce.recost import recompute_flops
from analysis.training.cost import COST_MODEL, cost
from analysis.training.selection import Selection
from conftest import tiny_model

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _row(model: str, **kw) -> dict:
    row = {"task": "rotten_tomatoes", "model": model, "strategy": "top", "k": 1, "seed": 0, "classifier_layer": 4}
    return {**row, "tuned_layers": [4], "layers_kept": 4, "n_train": 40, "flops_vs_full": 0.9, **kw}


def test_a_stored_row_with_wrong_flops_gets_the_cost_models_numbers(tmp_path):
    import transformers as tf

    from analysis.models.batching import tokenize
    from analysis.pipeline import prepare_sample
    from analysis.reproduce.runs import acfg

    m = str(tiny_model("bert", tmp_path / "bert"))
    rc = ReproConfig(models=(m,), tasks=("rotten_tomatoes",), seeds=(0,), n_train=40, eval_n=20, max_length=24)
    settings = {**asdict(rc), "models": [m], "tasks": ["rotten_tomatoes"]}
    measured = _row(m, flops_per_example=1.0)  # no seq_len: measured on the run's training sample
    stored = _row(m, seq_len=10.0, flops_per_example=1.0, inference_flops_per_example=1.0, strategy="full")
    stored["tuned_layers"] = [1, 2, 3, 4]
    res = {"parts": [{"models": [m], "settings": settings}], "runs": [measured, stored]}
    changes = recompute_flops(res, log=lambda s: None)

    base, tok = tf.AutoModel.from_pretrained(m), tf.AutoTokenizer.from_pretrained(m)
    texts = prepare_sample(acfg(rc, m, "rotten_tomatoes", 40, 0)).texts
    seq_len = float(np.mean([len(x) for x in tokenize(tok, texts, None, 24)["input_ids"]]))
    want = cost(base, Selection(4, (4,)), seq_len, 2)
    assert measured["seq_len"] == seq_len and measured["flops_vs_full"] == want["flops_vs_full"] != 0.9
    assert measured["flops_per_example"] == want["flops_per_example"]
    assert measured["inference_flops_per_example"] == sum(want["block_forward_flops"])
    assert stored["seq_len"] == 10.0 and stored["flops_vs_full"] == 1.0  # the stored length is kept
    assert stored["flops_per_example"] == cost(base, Selection(4, (1, 2, 3, 4), True), 10.0, 2)["flops_per_example"]
    assert {r["cost_model"] for r in res["runs"]} == {COST_MODEL}
    assert changes[0]["flops_vs_full"] == (0.9, want["flops_vs_full"])


def test_the_cli_rewrites_a_wrong_committed_row_and_the_doc(tmp_path, model_roots):
    from analysis.cli.main import main
    from analysis.reproduce.report import report_markdown

    cur = json.loads((DOCS / "reproduction.json").read_text())
    res = {**cur, "parts": [p for p in cur["parts"] if "minilm" in p["models"]]}
    res["runs"] = [r for r in cur["runs"] if (r["model"], r["task"], r["seed"]) == ("minilm", "rotten_tomatoes", 0)]
    wrong = next(r for r in res["runs"] if r["strategy"] == "top")
    right = dict(wrong)
    wrong["flops_vs_full"], wrong["flops_per_example"] = 0.123, 1.0
    js, doc = tmp_path / "r.json", tmp_path / "d" / "r.md"
    js.write_text(json.dumps(res))
    args = ["reproduce", "--recompute-flops", "--json", str(js), "--doc", str(doc), "--img", str(tmp_path / "d" / "i")]
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 0
    out = json.loads(js.read_text())
    again = next(r for r in out["runs"] if (r["strategy"], r["k"]) == ("top", right["k"]))
    assert again["flops_vs_full"] == right["flops_vs_full"] and again["flops_per_example"] == right["flops_per_example"]
    assert doc.read_text() == report_markdown(out, None, "i")
    assert not (tmp_path / "c" / "runs").exists()  # nothing trained
    assert set(model_roots) == {str(tmp_path / "c")}  # the model is found under --cache-dir alone
