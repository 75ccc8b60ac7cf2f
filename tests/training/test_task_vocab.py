"""The task-sized vocabulary trains the same model as the whole embedding matrix (tiny random models)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from analysis.data.sampling import SampleConfig
from analysis.data.tasks import TaskConfig
from analysis.pipeline import AnalysisConfig
from analysis.training import Selection, TrainConfig, train
from conftest import tiny_model

FULL = Selection(4, (1, 2, 3, 4), tune_embeddings=True)


def _logits(model, tok, texts) -> np.ndarray:
    model.eval()
    enc = tok(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])["logits"].numpy()


def test_task_ids_are_the_sorted_ids_of_every_text_and_the_pad_id():
    from analysis.training.vocab import task_ids

    got = task_ids({"input_ids": [[5, 9, 5], [7]], "_pad_id": 0}, {"input_ids": [[9, 11]], "_pad_id": 0})
    assert got.tolist() == [0, 5, 7, 9, 11]


def test_the_compact_embedding_keeps_gemmas_scale_and_scatters_back_in_place():
    import transformers as tf

    from analysis.training.vocab import _module

    cfg = tf.Gemma3TextConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8
    )
    full = tf.AutoModel.from_config(cfg).get_input_embeddings()
    assert float(full.embed_scale) == pytest.approx(4.0)  # sqrt(16): a lookup without it would differ
    ids = torch.tensor([[3, 7, 3, 0]])
    want = full(ids)
    small = _module()(full, np.array([0, 3, 7]))
    assert small.weight.shape == (3, 16) and not full.weight.requires_grad
    torch.testing.assert_close(small(ids), want)
    with pytest.raises(IndexError):
        small(torch.tensor([[4]]))
    before = full.weight.detach().clone()
    with torch.no_grad():
        small.weight.add_(1.0)
    small.scatter()
    assert torch.equal(full.weight[[0, 3, 7]], before[[0, 3, 7]] + 1.0)
    assert torch.equal(full.weight[[1, 2, 4]], before[[1, 2, 4]]) and full.weight.requires_grad


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bert", "gemma3", "llama"])
def test_the_task_sized_vocabulary_gives_the_same_losses_logits_and_saved_model(kind, tmp_path):
    from safetensors.torch import load_file

    from analysis.models.load import load_model, resolve_model
    from analysis.training import build_classifier, save_run
    from analysis.training.data import split_train_eval

    a = AnalysisConfig(
        model=str(tiny_model(kind, tmp_path / kind)),
        task=TaskConfig("rotten_tomatoes"),
        sampling=SampleConfig(n=48, seed=0),
        pooling="mean",
        max_length=48,
        device="cpu",
    )
    cfg = TrainConfig(a, FULL, steps=6, lr=1e-3, batch_size=8, eval_n=24, eval_every=3, seed=0)
    small, whole = train(cfg), train(replace(cfg, full_vocab=True))
    v = small.result.vocab
    assert v["task_sized"] and 0 < v["rows"] < v["of"] == 30522
    assert not whole.result.vocab["task_sized"] and whole.result.vocab["why"] == "turned off"
    # the paper's count: the whole matrix trains in both
    assert small.result.trainable_params == whole.result.trainable_params
    assert small.result.full_trainable_params == whole.result.full_trainable_params
    ls = np.array([h["loss"] for h in small.result.history])
    lw = np.array([h["loss"] for h in whole.result.history])
    assert len(ls) == 6 and not np.allclose(ls, ls[0])  # it trains
    np.testing.assert_allclose(ls, lw, rtol=1e-4)
    assert [e["eval"] for e in small.result.evals] == [e["eval"] for e in whole.result.evals]

    base, tok = load_model(resolve_model(a.model), device="cpu", dtype="float32")
    held = split_train_eval(a, 24)[1].texts
    got = _logits(small.model, tok, held)
    np.testing.assert_allclose(got, _logits(whole.model, tok, held), rtol=1e-4, atol=1e-6)
    assert (got.argmax(-1) == _logits(whole.model, tok, held).argmax(-1)).all()

    # the saved weights hold the whole matrix with the trained rows: a fresh model loads them and predicts the same
    save_run(small.result, str(tmp_path / "run"), small.model)
    state = load_file(str(tmp_path / "run" / "trainable.safetensors"))
    emb = [k for k, t in state.items() if t.shape[0] == 30522]
    assert len(emb) == 1
    fresh = build_classifier(base, FULL, 2, "mean")
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    assert not unexpected
    np.testing.assert_allclose(_logits(fresh, tok, held), got, rtol=1e-5, atol=1e-6)
