"""A data file that changes between the passes of a streamed curve is an error, and nothing is cached."""

import numpy as np
import pytest

from analysis.data.streamed import open_sample
from analysis.data.tasks import SampleConfig, TaskConfig
from analysis.errors import VariscopeError
from analysis.pipeline import AnalysisConfig

ROWS = [(f"a sentence about topic {i} number {i * 7}", "ab"[i % 2]) for i in range(40)]


def _write(p, rows):
    p.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))


def _cfg(p, n=30):
    return AnalysisConfig(model="minilm", task=TaskConfig(name=None, data=str(p)), sampling=SampleConfig(n=n, seed=0))


def _shuffled_labels():
    rng = np.random.default_rng(1)
    ys = [y for _, y in ROWS]
    return [(t, ys[i]) for (t, _), i in zip(ROWS, rng.permutation(len(ROWS)), strict=True)]


@pytest.mark.parametrize(
    "change",
    [
        lambda: _shuffled_labels(),  # same texts, same class sizes, other labels
        lambda: ROWS[::-1],  # same rows, another order
        lambda: [*ROWS, ("one more row", "a")],  # a row more (the old check only caught fewer)
        lambda: [(t + "!", y) if i == 39 else (t, y) for i, (t, y) in enumerate(ROWS)],  # after the last sampled row
    ],
)
def test_a_source_changed_after_the_label_pass_is_refused(tmp_path, change):
    p = tmp_path / "a.csv"
    _write(p, ROWS)
    source = open_sample(_cfg(p))
    _write(p, change())
    with pytest.raises(VariscopeError, match="the data changed while it was read"):
        list(source.texts(np.arange(len(source)))[0])


def test_an_unchanged_source_reads_the_same_texts_twice(tmp_path):
    p = tmp_path / "a.csv"
    _write(p, ROWS)
    source = open_sample(_cfg(p))
    a = list(source.texts(np.arange(len(source)))[0])
    assert a == list(source.texts(np.arange(len(source)))[0]) and len(a) == 30


def test_a_file_swapped_during_the_forward_pass_leaves_no_cache_entry(tmp_path, monkeypatch, cache):
    from analysis.stream import curve, kept

    p = tmp_path / "a.csv"
    _write(p, ROWS)
    real = curve.open_sample

    def open_then_swap(*a, **k):
        src = real(*a, **k)  # the label pass read the original
        _write(p, _shuffled_labels())  # the forward pass reads this one
        return src

    monkeypatch.setattr(curve, "open_sample", open_then_swap)
    with pytest.raises(VariscopeError, match="the data changed"):
        kept.stream_kept(_cfg(p, n=40), keep=8, cache=cache)
    assert not [e for e in cache.entries() if e.get("kind") == "streams"]
