"""The frozen-prefix cache trains the same model as the run through the whole prefix (tiny random models)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.data.sampling import SampleConfig
from analysis.data.tasks import TaskConfig
from analysis.pipeline import AnalysisConfig
from analysis.training import Selection, TrainConfig, train
from conftest import tiny_model

pytestmark = pytest.mark.slow  # trains tiny models twice each


def _logits(model, tok, texts) -> np.ndarray:
    model.eval()
    enc = tok(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])["logits"].numpy()


def _pair(kind: str, folder: Path, selection: Selection, **kw):
    """(run with the cache, run without it, the AnalysisConfig): same seed and settings."""
    a = AnalysisConfig(
        model=str(tiny_model(kind, folder)),
        task=TaskConfig("rotten_tomatoes"),
        sampling=SampleConfig(n=48, seed=0),
        pooling="last" if kind in ("llama", "gemma3") else "mean",
        max_length=48,
        device="cpu",
    )
    cfg = TrainConfig(a, selection, steps=6, lr=1e-3, batch_size=8, eval_n=24, eval_every=3, seed=0, **kw)
    return train(cfg), train(replace(cfg, prefix_cache=False)), a


TEXTS = ["a long and winding film that never quite finds its feet, sadly, for all its charm", "great fun", "dull"]


@pytest.mark.parametrize("kind", ["bert", "mpnet", "llama", "gemma3"])
def test_the_cached_prefix_gives_the_same_losses_and_logits(kind, tmp_path):
    from analysis.models.load import load_model, resolve_model

    cached, plain, a = _pair(kind, tmp_path / kind, Selection(4, (3, 4)))
    assert cached.result.prefix_cache == {**cached.result.prefix_cache, "used": True, "block": 3, "where": "memory"}
    assert not plain.result.prefix_cache["used"]
    lc = np.array([h["loss"] for h in cached.result.history])
    lp = np.array([h["loss"] for h in plain.result.history])
    assert len(lc) == len(lp) == 6 and not np.allclose(lc, lc[0])  # it trains
    np.testing.assert_allclose(lc, lp, rtol=1e-4)
    assert [e["eval"] for e in cached.result.evals] == [e["eval"] for e in plain.result.evals]
    # the trained weights are the same: the returned models (real blocks back in place) give the same logits
    _, tok = load_model(resolve_model(a.model), device="cpu", dtype="float32")
    got, want = _logits(cached.model, tok, TEXTS), _logits(plain.model, tok, TEXTS)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_states_over_the_memory_budget_go_to_a_memory_mapped_cache_entry(tmp_path, monkeypatch):
    import analysis.training.prefix as prefix
    from analysis.store.cache import DiskCache

    monkeypatch.setenv("VARISCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(prefix, "PREFIX_MEMORY_BYTES", 0)
    cached, plain, _ = _pair("bert", tmp_path / "bert", Selection(4, (2,)))
    assert cached.result.prefix_cache["where"] == "disk" and cached.result.prefix_cache["block"] == 2
    assert [r["kind"] for r in DiskCache(tmp_path / "cache").entries()] == ["prefix", "prefix"]  # train, held-out
    np.testing.assert_allclose(
        [h["loss"] for h in cached.result.history], [h["loss"] for h in plain.result.history], rtol=1e-4
    )


def test_an_architecture_not_tested_exact_falls_back_with_one_line(tmp_path):
    import transformers as tf

    from analysis.training.prefix import unsupported

    model = tf.AutoModel.from_config(tf.GPT2Config(vocab_size=100, n_embd=16, n_layer=2, n_head=2))
    assert "gpt2" in unsupported(model) and "\n" not in unsupported(model)
