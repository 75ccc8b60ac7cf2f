"""Chaining and the in-process memo of the frozen-prefix cache give the states the whole prefix gives."""

import numpy as np
import pytest

from conftest import tiny_model

TEXTS = [
    "a long and winding film that never quite finds its feet, sadly, for all its charm",
    "great fun",
    "dull",
    "the cast is wonderful and the script is sharp enough to carry the slow middle",
    "not for me",
]


def _encoder_and_ids(kind, folder):
    import transformers as tf

    path = tiny_model(kind, folder)
    encoder = tf.AutoModel.from_pretrained(path).eval()
    tok = tf.AutoTokenizer.from_pretrained(path)
    enc = dict(tok(TEXTS, truncation=True, max_length=48))
    enc["_pad_id"] = tok.pad_token_id
    return encoder, enc


def _calls(encoder) -> list[int]:
    """Forward calls per real block (a list updated in place)."""
    from analysis.models.layers import layer_list

    counts = [0] * len(layer_list(encoder)[1])
    for i, b in enumerate(layer_list(encoder)[1]):
        b.register_forward_hook(lambda *a, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize("kind", ["bert", "mpnet", "llama", "gemma3"])
def test_a_chained_pass_gives_the_states_of_the_whole_prefix(kind, tmp_path):
    from analysis.training.prefix import compute_prefix

    encoder, enc = _encoder_and_ids(kind, tmp_path / kind)
    whole = compute_prefix(encoder, enc, [2, 3, 5], device="cpu")
    calls = _calls(encoder)
    chained = compute_prefix(encoder, enc, [3, 5], device="cpu", source=(2, whole[2]))
    assert calls[0] == 0 and calls[1] > 0 and calls[3] > 0  # block 1 did not run: its output came from the source
    for t in (3, 5):
        assert np.array_equal(chained[t].offsets, whole[t].offsets)
        np.testing.assert_allclose(chained[t].states, whole[t].states, rtol=1e-5, atol=1e-5)
        assert np.abs(whole[t].states - whole[2].states).max() > 1e-3  # the blocks changed something
    with pytest.raises(ValueError, match="below"):
        compute_prefix(encoder, enc, [3], device="cpu", source=(3, whole[2]))


def test_the_memo_serves_a_second_run_and_chains_the_next_block(tmp_path, monkeypatch):
    import analysis.training.prefix as prefix

    encoder, enc = _encoder_and_ids("gemma3", tmp_path / "g")
    prefix.forget()
    base = {"what": "prefix", "model": "tiny", "ids": "x"}
    store = prefix._DiskStore(None, base)
    monkeypatch.setattr(store, "load", lambda t: None)  # no disk cache in this test
    prefix._states(encoder, enc, 3, base, store, "cpu", 1 << 30)
    assert not prefix._MEMO  # outside keep_states() a process keeps nothing between runs
    with prefix.keep_states():
        _memo_and_chain(prefix, encoder, enc, base, store)
    assert not prefix._MEMO  # let go on leaving


def _memo_and_chain(prefix, encoder, enc, base, store):
    first, how1 = prefix._states(encoder, enc, 3, base, store, "cpu", 1 << 30)
    calls = _calls(encoder)
    again, how2 = prefix._states(encoder, enc, 3, base, store, "cpu", 1 << 30)
    assert (how1, how2) == ("computed", "memo") and again is first and sum(calls) == 0
    nxt, how3 = prefix._states(encoder, enc, 4, base, store, "cpu", 1 << 30)
    assert how3 == "chained from 3" and calls[:2] == [0, 0] and calls[2] > 0
    direct = prefix.compute_prefix(encoder, enc, [4], device="cpu")[4]
    np.testing.assert_allclose(nxt.states, direct.states, rtol=1e-5, atol=1e-5)
    other = {**base, "ids": "y"}  # other texts never read these states
    _, how4 = prefix._states(encoder, enc, 4, other, store, "cpu", 1 << 30)
    assert how4 == "computed"


def test_the_memo_keeps_within_its_memory_budget(monkeypatch):
    import analysis.training.prefix as prefix

    prefix.forget()
    monkeypatch.setattr(prefix, "PREFIX_MEMORY_BYTES", 3 * 400)
    monkeypatch.setattr(prefix, "_KEEPERS", [1])
    for t in range(2, 7):
        prefix._remember("b", t, prefix.PrefixStates(np.zeros((100, 1), np.float32), np.array([0, 100])))
    assert sorted(t for _, t in prefix._MEMO) == [4, 5, 6]  # the least recently used went first
    prefix._remember("b", 9, prefix.PrefixStates(np.zeros((1000, 1), np.float32), np.array([0, 1000])))
    assert sorted(t for _, t in prefix._MEMO) == [4, 5, 6]  # larger than the whole budget: not kept, nothing lost
    prefix.forget()
    assert not prefix._MEMO


def test_a_process_holding_some_rows_chains_from_its_own_kept_states(tmp_path):
    """Under torchrun a process computes only its rows; a higher block chains from them (positions, not run ids)."""
    from types import SimpleNamespace

    import transformers as tf

    import analysis.training.prefix as prefix
    from analysis.training import Selection, build_classifier
    from analysis.training.data import RankRows

    encoder, enc = _encoder_and_ids("bert", tmp_path / "b")
    base = tf.AutoModel.from_pretrained(tmp_path / "b")
    rows = RankRows(1, 2, np.array([1, 3, 4]), np.array([0, 2]), {"train": [2, 3], "eval": [3, 2]})
    ref = SimpleNamespace(fingerprint="tiny-bert")
    whole = prefix.compute_prefix(encoder, enc, [3, 4], device="cpu")
    with prefix.keep_states():
        for t in (3, 4):
            model = build_classifier(base, Selection(t, (t,)), 2, "mean")
            plan = SimpleNamespace(enc_tr=enc, enc_ev=enc)
            rec = prefix.prepare(model, plan, ref, "cpu", on=True, cache=None, rows=rows)
            assert rec["source"] == (["computed"] * 2 if t == 3 else ["chained from 3"] * 2)
            got = plan.prefix_tr.batch([3, 1], 40)  # run ids, this process's texts
            want = prefix.PrefixStates(whole[t].states, whole[t].offsets).batch([3, 1], 40)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
            with pytest.raises(RuntimeError, match="not among"):
                plan.prefix_tr.batch([0], 40)
