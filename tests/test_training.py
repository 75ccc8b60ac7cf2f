import json
import threading

import numpy as np
import pytest
import torch

from analysis.errors import VariscopeError
from analysis.models import layer_list
from analysis.pipeline import AnalysisConfig
from analysis.tasks import SampleConfig, TaskConfig
from analysis.training import RunMonitor, Selection, TrainConfig, build_classifier, cost, select, train

pytestmark = pytest.mark.slow


def test_truncation_keeps_exactly_k_layers_and_never_runs_the_rest(minilm):
    base, tok = minilm
    model = build_classifier(base, Selection(3, (2, 3)), num_labels=2)
    _, kept = layer_list(model.encoder)
    assert len(kept) == 3 and model.encoder.config.num_hidden_layers == 3
    assert len(layer_list(base)[1]) == 6  # the base model is untouched
    calls = []
    for i, blk in enumerate(layer_list(base)[1]):
        blk.register_forward_hook(lambda *a, i=i: calls.append(("base", i)))
    for i, blk in enumerate(kept):
        blk.register_forward_hook(lambda *a, i=i: calls.append(("kept", i)))
    enc = tok(["hello there", "a film"], padding=True, return_tensors="pt", return_special_tokens_mask=True)
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                special_tokens_mask=enc["special_tokens_mask"], labels=torch.tensor([0, 1]))
    assert out["logits"].shape == (2, 2) and out["loss"].ndim == 0
    assert calls == [("kept", 0), ("kept", 1), ("kept", 2)]
    trainable = {n.split(".")[3] if n.startswith("encoder.encoder.layer.") else n.split(".")[0]
                 for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"1", "2", "head"}


def test_lora_trains_only_adapters_and_head(minilm):
    base, _ = minilm
    model = build_classifier(base, Selection(4, (3, 4), adapter="lora"), num_labels=3)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    layers = {int(n.split(".layer.")[1].split(".")[0]) for n in names if "lora_" in n}
    assert layers == {2, 3}  # 0-based blocks of layers 3 and 4


def test_bad_selections_are_refused(minilm):
    base, _ = minilm
    with pytest.raises(VariscopeError, match="above the classifier layer"):
        build_classifier(base, Selection(3, (3, 4)), 2)
    with pytest.raises(VariscopeError, match="out of range"):
        build_classifier(base, Selection(9, (9,)), 2)


def test_cost_ratios(minilm):
    base, _ = minilm
    full = cost(base, select("full", 6, 2), 40, 2)
    assert full["flops_vs_full"] == pytest.approx(1.0)
    sel = cost(base, Selection(4, (3, 4)), 40, 2)
    top = cost(base, select("top", 6, 2), 40, 2)
    assert 0 < sel["flops_vs_full"] < top["flops_vs_full"] < 1
    assert sel["trainable_params"] == top["trainable_params"]  # same number of blocks
    assert sel["layers_kept"] == 4


CFG = AnalysisConfig(task=TaskConfig("rotten_tomatoes"), sampling=SampleConfig(n=480, seed=0), max_length=48,
                     device="cpu")


def test_short_run_learns_and_frozen_weights_stay_bit_identical(minilm, monkeypatch, tmp_path):
    monkeypatch.setenv("VARISCOPE_CHECK_FROZEN", "1")
    base, _ = minilm
    log = tmp_path / "live.jsonl"
    r = train(TrainConfig(CFG, Selection(6, (5, 6)), steps=60, lr=2e-4, batch_size=16, eval_n=300, seed=0),
              RunMonitor(log_path=str(log)))
    assert r["frozen_unchanged"] is True
    model = r["_model"]
    tuned_blk, frozen_blk = layer_list(model.encoder)[1][5], layer_list(model.encoder)[1][1]
    base_blocks = layer_list(base)[1]
    assert not torch.equal(tuned_blk.attention.self.query.weight, base_blocks[5].attention.self.query.weight)
    assert torch.equal(frozen_blk.attention.self.query.weight, base_blocks[1].attention.self.query.weight)
    majority = 0.58  # share of 'fresh' in the test split
    assert r["eval"]["accuracy"] > majority + 0.08, r["eval"]
    assert r["layers_kept"] == 6 and r["steps"] == 60 and not r["stopped"]
    assert len(r["history"]) == 60 and all("loss" in h for h in r["history"])
    assert 0 < r["flops_vs_full"] < 1 and r["trainable_params"] < r["total_params"]
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert any("eval" in l for l in lines) and any("loss" in l for l in lines)


class StopAt(RunMonitor):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def set(self, **kw):
        super().set(**kw)
        if "progress" in kw and kw["progress"]["step"] >= self.at:
            self.request_stop()


def test_stop_flag_ends_within_one_step():
    m = StopAt(3)
    r = train(TrainConfig(CFG, Selection(2, (2,)), steps=500, batch_size=8, eval_n=40, seed=0), m)
    assert r["stopped"] and r["steps"] <= 4
    assert m.snapshot()["status"] == "stopped"
    assert len(r["history"]) == r["steps"]


def test_cli_train_strategy_and_exports(tmp_path):
    from conftest import run_cli

    out = tmp_path / "r.json"
    r = run_cli("train", "--task", "bbc_news", "--n", 100, "--max-length", 32, "--strategy", "variability", "--k", 1,
                "--steps", 8, "--eval-n", 50, "--device", "cpu", "--json", out, "--log", tmp_path / "l.jsonl",
                "--save", tmp_path / "save", cache_dir=tmp_path / "c")
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())
    for k in ("classifier_layer", "tuned_layers", "layers_kept", "trainable_params", "total_params", "history",
              "eval", "seconds", "steps_per_second", "flops_vs_full"):
        assert k in d
    assert d["tuned_layers"] == [d["classifier_layer"]] and d["flops_vs_full"] <= 1
    assert (tmp_path / "save" / "trainable.safetensors").exists()
    assert "layers_to_transform" in (tmp_path / "save" / "lora_config.py").read_text()
    bad = run_cli("train", "--classifier-layer", 3, "--tune-layers", "3,5", "--steps", 2, cache_dir=tmp_path / "c")
    assert bad.returncode == 2 and "above the classifier layer" in bad.stderr
