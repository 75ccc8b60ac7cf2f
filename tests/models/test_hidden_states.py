import warnings

import numpy as np
import pytest
import torch

from analysis.errors import VariscopeError
from analysis.models.batching import make_batches
from analysis.models.hidden_states import extract_states, pool


def test_alone_equals_in_padded_batch(minilm):
    model, tok = minilm
    texts = [
        "short one",
        "a considerably longer sentence that forces a lot of padding onto the short one " * 3,
        "medium length text here",
    ]
    together = extract_states(model, tok, texts, batch_size=3, device="cpu")
    for i, t in enumerate(texts):
        alone = extract_states(model, tok, [t], device="cpu")
        np.testing.assert_allclose(alone[:, 0], together[:, i], atol=1e-5)
    assert together.shape == (7, 3, 384)


def test_mean_pooling_excludes_special_and_padding(minilm):
    model, tok = minilm
    text = "the movie was great"
    st = extract_states(model, tok, [text, "x " * 50], batch_size=2, device="cpu")
    enc = tok([text], return_tensors="pt", return_special_tokens_mask=True)
    with torch.inference_mode():
        hs = model(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True
        ).hidden_states
    real = enc["special_tokens_mask"][0] == 0
    for l in (0, 3, 6):
        expect = hs[l][0, real].mean(0).numpy()
        np.testing.assert_allclose(st[l, 0], expect, atol=1e-5)
        with_special = hs[l][0].mean(0).numpy()
        assert np.abs(st[l, 0] - with_special).max() > 1e-3  # CLS/SEP really excluded


def test_pooling_modes_on_synthetic_tensors():
    h = torch.arange(2 * 4 * 2, dtype=torch.float32).reshape(2, 4, 2)
    am = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    sm = torch.tensor([[1, 0, 1, 1], [1, 0, 0, 1]])
    mean = pool((h,), am, sm, "mean")[0]
    assert torch.allclose(mean[0], h[0, 1]) and torch.allclose(mean[1], h[1, 1:3].mean(0))
    assert torch.allclose(pool((h,), am, sm, "mean_all")[0][0], h[0, :3].mean(0))
    assert torch.allclose(pool((h,), am, sm, "first")[0][1], h[1, 0])
    assert torch.allclose(pool((h,), am, sm, "last")[0][0], h[0, 2])


def test_decoder_pooling_with_padding_on_the_left():
    """Decoders may pad on the left: first/last take the first/last real token, mean skips BOS/EOS and padding."""
    h = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    am = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # row 0 padded on the left
    sm = torch.tensor([[0, 0, 1, 0, 1], [1, 0, 0, 0, 1]])  # BOS and EOS are special
    assert torch.allclose(pool((h,), am, sm, "last")[0][0], h[0, 4])
    assert torch.allclose(pool((h,), am, sm, "first")[0][0], h[0, 2])
    assert torch.allclose(pool((h,), am, sm, "first")[0][1], h[1, 0])
    assert torch.allclose(pool((h,), am, sm, "mean")[0][0], h[0, 3])
    assert torch.allclose(pool((h,), am, sm, "mean")[0][1], h[1, 1:4].mean(0))


def test_batches_sorted_by_length_and_pairs(minilm):
    _, tok = minilm
    texts = ["a", "a b c d e f g", "a b c"]
    b = make_batches(tok, texts, ["x", "y", "z"], batch_size=2)
    assert list(b[0].index) == [1, 2] and list(b[1].index) == [0]
    assert "token_type_ids" in b[0].tensors and b[0].tensors["token_type_ids"].max() == 1


def test_pairs_change_the_vector(minilm):
    model, tok = minilm
    a = extract_states(model, tok, ["the cat sat"], ["on the mat"], device="cpu")
    b = extract_states(model, tok, ["the cat sat"], device="cpu")
    assert np.abs(a - b).max() > 1e-3


def test_padded_batches_hold_each_text_and_nothing_else(minilm):
    """The vectorised padding against the tokenizer's own per-text output, for texts, pairs and the collator."""
    from analysis.models.batching import pad_rows, tokenize

    _, tok = minilm
    texts = ["a b c", "", "the longest text of them all, by some way " * 3, "x", "mid sized text"]
    pairs = ["p", "q r", "", "s t u v", "w"]
    for second in (None, pairs):
        enc = tokenize(tok, texts, second, 24)
        batches = make_batches(tok, texts, second, max_length=24, batch_size=2)
        assert sorted(i for b in batches for i in b.index) == list(range(len(texts)))
        for b in batches:
            T = b.tensors["input_ids"].shape[1]
            assert max(len(enc["input_ids"][i]) for i in b.index) == T
            for r, i in enumerate(b.index):
                n = len(enc["input_ids"][i])
                for k in ("input_ids", "attention_mask", "special_tokens_mask") + (
                    ("token_type_ids",) if second else ()
                ):
                    assert b.tensors[k].dtype == torch.long
                    assert b.tensors[k][r, :n].tolist() == list(enc[k][i])
                assert b.tensors["input_ids"][r, n:].eq(tok.pad_token_id).all()
                assert b.tensors["attention_mask"][r, n:].eq(0).all()
                assert b.tensors["special_tokens_mask"][r, n:].eq(1).all()
    enc = tokenize(tok, texts, None, 24)
    b = pad_rows(enc, np.array([2, 0]), tok.pad_token_id)  # the training collator's rows, in its order
    assert (
        list(b.index) == [2, 0]
        and b.tensors["input_ids"][1, : len(enc["input_ids"][0])].tolist() == enc["input_ids"][0]
    )


def test_rust_tokenizer_path_gives_the_python_path_batches_and_falls_back_when_it_would_not(minilm, monkeypatch):
    from analysis.models import batching

    _, tok = minilm
    words = ["the", "film", "is", "a", "slow", "burn", "that", "never", "quite", "catches", "fire", "but", "superb"]
    texts = [" ".join(words[: 1 + i % len(words)] * (1 + i % 9)) for i in range(300)] + ["", "ok"]
    pairs = [t[::-1] for t in texts]
    for second in (None, pairs):
        ref = batching._Flat.from_enc(batching.tokenize(tok, texts, second, 32))
        state = (tok.backend_tokenizer.truncation, tok.backend_tokenizer.padding)  # as __call__ leaves it
        fast = batching._encode(tok, texts, second, 32)
        assert tok.__dict__["_variscope_rust_ok"][(32, second is not None)] is True
        assert fast.same_as(ref) and int(ref.lengths.max()) == 32  # some texts were truncated
        assert (tok.backend_tokenizer.truncation, tok.backend_tokenizer.padding) == state

    wrong = batching._Flat(np.array([1]), {"input_ids": np.array([0])}, np.arange(1))
    monkeypatch.setattr(batching, "_rust_encode", lambda *a: wrong)
    tok.__dict__.pop("_variscope_rust_ok", None)
    python_path = batching._Flat.from_enc(batching.tokenize(tok, texts, None, 32))
    assert batching._encode(tok, texts, None, 32).same_as(python_path)
    assert tok.__dict__.pop("_variscope_rust_ok")[(32, False)] is False


def test_tokenizing_holds_the_tokenizers_lock_and_the_probe_stays_small(minilm, monkeypatch):
    """Sessions share one tokenizer: setting its truncation and encoding happen under one lock. The probe's long
    text is capped (a fast tokenizer computes every cut-off piece; for pairs every combination of them)."""
    import threading

    from analysis.models import batching

    _, tok = minilm
    lock = batching.tokenizer_lock(tok)
    assert lock is batching.tokenizer_lock(tok)
    seen = []

    def other_thread_can_take_it():
        got = lock.acquire(blocking=False)
        if got:
            lock.release()
        seen.append(got)

    real = type(tok).__call__

    def call(self, *a, **k):
        t = threading.Thread(target=other_thread_can_take_it)
        t.start()
        t.join()
        return real(self, *a, **k)

    monkeypatch.setattr(type(tok), "__call__", call)
    batching.tokenize(tok, ["a text"], None, 16)
    assert seen == [False]
    monkeypatch.undo()

    probes = []
    monkeypatch.setattr(batching, "_rust_encode", lambda tk, texts, pairs, n: probes.append((texts, pairs)))
    tok.__dict__.pop("_variscope_rust_ok", None)
    texts = ["word " * 500] * 300
    batching._encode(tok, texts, texts, 32)
    tok.__dict__.pop("_variscope_rust_ok", None)
    probe_texts, probe_pairs = probes[0]
    longs = [probe_texts[-3], probe_texts[-1], probe_pairs[-2], probe_pairs[-1]]  # built from the texts, capped
    assert all(len(t) == 8 * 32 for t in longs)  # 8 characters per token of max_length (here 2500 before the cap)
    assert (probe_texts[-2], probe_pairs[-3]) == (texts[0], texts[0])  # a long one beside a real one, both sides


class _OOMModel:
    """Stands in for a model: raises CUDA OOM for batches larger than 2."""

    def __init__(self, real):
        self.real = real

    def __call__(self, **kw):
        if kw["input_ids"].shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.real(**kw)

    def parameters(self):
        return self.real.parameters()


def test_out_of_memory_halves_the_batch(minilm):
    model, tok = minilm
    texts = [f"sample text number {i} about things" * (1 + i % 3) for i in range(9)]
    ref = extract_states(model, tok, texts, batch_size=8, device="cpu")
    with pytest.warns(UserWarning, match="retrying with"):
        got = extract_states(_OOMModel(model), tok, texts, batch_size=8, device="cpu")
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_out_of_memory_at_batch_one_is_a_clear_error(minilm):
    class Always(_OOMModel):
        def __call__(self, **kw):
            raise torch.cuda.OutOfMemoryError("simulated")

    with pytest.raises(VariscopeError, match="even with a batch of one"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extract_states(Always(minilm[0]), minilm[1], ["a", "b"], batch_size=2, device="cpu")
