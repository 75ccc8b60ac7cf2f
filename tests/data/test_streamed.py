"""Streamed data files and datasets (analysis/textstream.py): the same rows, labels and errors as in memory."""

import codecs
import json

import numpy as np
import pytest

from analysis import AnalysisConfig, SampleConfig, TaskConfig
from analysis.data import files as datafiles
from analysis.data.files import TableFile, parse_table
from analysis.data.streamed import open_sample
from analysis.errors import VariscopeError
from analysis.pipeline import prepare_sample

CSV = (
    'text,label,extra\n"a, quoted\nnewline",pos,1\nplain,neg,2\n\n  ,pos,3\nshort,neg\n'
    'café ☕,pos,4\n"x ""y""",neg,5\nblank label,,6\nlast one,pos,7\n'
)


def _write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


FILES = {
    "a.csv": CSV.encode(),
    "bom.csv": codecs.BOM_UTF8 + CSV.replace("\n", "\r\n").encode(),
    "a.tsv": CSV.replace(",", "\t").replace('"a\t quoted\nnewline"', '"a quoted\nnewline"').encode(),
    "u16.csv": CSV.encode("utf-16"),
    "u32.csv": CSV.encode("utf-32"),
    "latin.csv": CSV.encode("cp1252", errors="replace").replace("☕".encode(), b"?"),
    "a.jsonl": (
        "\n".join(json.dumps({"text": t, "label": y}) for t, y in [("one", 1), ("two\u2028x", 0), ("", 1), ("f", None)])
        + "\n\n"
        + json.dumps({"text": "z", "label": 0})
    ).encode(),
    "a.json": json.dumps([{"text": "p", "label": "a"}, {"text": "q", "label": "b"}]).encode(),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_rows_equal_parse_table(tmp_path, name):
    data = FILES[name]
    p = _write(tmp_path, name, data)
    rows, warnings = parse_table(data, str(p))
    t = TableFile(str(p))
    assert list(t.rows()) == rows and list(t.rows()) == rows  # every pass the same
    assert t.warnings == warnings


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("e.csv", b"  \n \n"),
        ("h.csv", b"text,label\n\n"),
        ("one.csv", b"text;label\na;b\n"),
        ("dup.csv", b"text,text\na,b\n"),
        ("bad.jsonl", b'{"text": "a"}\n{"text": \n'),
        ("list.jsonl", b'{"text": "a"}\n[1, 2]\n'),
        ("bin.csv", b"text,label\n\x00\x01,1\n"),
        ("bad16.csv", codecs.BOM_UTF16_LE + b"t\x00e\x00\x00\xd8a\x00"),
        ("bad.json", b"[{]"),
        ("q.csv", b'text,label\n"a\x00b",1\n'),
    ],
)
def test_errors_equal_parse_table(tmp_path, name, data):
    p = _write(tmp_path, name, data)
    with pytest.raises(VariscopeError) as want:
        parse_table(data, str(p))
    with pytest.raises(VariscopeError) as got:
        list(TableFile(str(p)).rows())
    assert str(got.value) == str(want.value)


def test_no_size_limit(tmp_path, monkeypatch):
    data = b"text,label\n" + b"some text,1\nother,0\n" * 200
    p = _write(tmp_path, "big.csv", data)
    monkeypatch.setattr(datafiles, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(VariscopeError, match="the limit is"):
        parse_table(data, str(p))
    assert len(list(TableFile(str(p)).rows())) == 400


def _labelled(tmp_path, n=97, name="d.csv", seed=0):
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d"]
    lines = ["text,pair,label"]
    for i in range(n):
        y = classes[int(rng.choice(4, p=[0.5, 0.3, 0.15, 0.05]))]
        text = f"text {i} " + "word " * int(rng.integers(0, 6))
        if i % 17 == 3:
            text, y = " ", y  # an empty text: dropped
        if i % 23 == 5:
            y = ""  # a blank label: dropped
        lines.append(f'"{text}",pair {i},{y}')
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


SAMPLINGS = [
    SampleConfig(n=31, seed=3),
    SampleConfig(n=None),
    SampleConfig(n=10**6),
    SampleConfig(n=None, per_class=5, seed=1),
    SampleConfig(n=40, imbalance=(2, 1)),
    SampleConfig(n=None, fraction=0.3, seed=2),
    SampleConfig(n=9, seed=4),
]


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("pair", [None, "pair"])
def test_streamed_file_picks_the_in_memory_rows(tmp_path, sampling, pair):
    p = _labelled(tmp_path)
    cfg = AnalysisConfig(task=TaskConfig(name=None, data=str(p), text_pair_col=pair), sampling=sampling)
    want = prepare_sample(cfg)
    src = open_sample(cfg)
    assert src.streamed and len(src) == len(want)
    np.testing.assert_array_equal(src.labels, want.labels)
    assert src.label_names == want.label_names and src.info["warnings"] == want.info["warnings"]
    for positions in (np.arange(len(src)), np.arange(1, len(src), 3), np.array([], dtype=int)):
        texts, pairs = src.texts(positions)
        assert list(texts) == [want.texts[i] for i in positions]
        if pair:
            texts, pairs = src.texts(positions)
            assert pairs is not None and [(t, q) for t, q in zip(texts, pairs, strict=True)] == [
                (want.texts[i], want.pairs[i]) for i in positions
            ]
        else:
            assert pairs is None


def test_streamed_file_errors(tmp_path):
    p = _labelled(tmp_path)
    cfg = AnalysisConfig(task=TaskConfig(name=None, data=str(p), label_col="nope"))
    with pytest.raises(VariscopeError, match="^label column 'nope' not found; the columns are: text, pair, label$"):
        open_sample(cfg)
    one = tmp_path / "one.csv"
    one.write_text("text,label\na,x\nb,x\nc,x\n")
    with pytest.raises(VariscopeError, match="at least 2 classes"):
        open_sample(AnalysisConfig(task=TaskConfig(name=None, data=str(one))))
    with pytest.raises(VariscopeError, match="does not exist"):
        open_sample(AnalysisConfig(task=TaskConfig(name=None, data=str(tmp_path / "missing.csv"))))


def test_second_pass_reads_lazily(tmp_path, monkeypatch):
    """The texts pass holds one row at a time; after the last chosen row it reads on to the end (to check the file)."""
    p = _labelled(tmp_path, n=200)
    src = open_sample(AnalysisConfig(task=TaskConfig(name=None, data=str(p)), sampling=SampleConfig(n=None)))
    read = []
    real = TableFile.rows

    def counting(self):
        for r in real(self):
            read.append(r)
            yield r

    monkeypatch.setattr(TableFile, "rows", counting)
    texts, _ = src.texts(np.array([0, 1, 2]))
    assert next(texts).startswith("text 0") and len(read) == 1
    assert len(list(texts)) == 2 and len(read) == 200


def test_hf_streaming_dataset_offline(tmp_path, monkeypatch):
    """A local dataset folder through datasets.load_dataset(..., streaming=True): same sample as in memory."""
    from analysis.data import tasks

    folder = tmp_path / "ds"
    folder.mkdir()
    _labelled(folder, n=60, name="train.csv")
    calls = []
    real = tasks.hf_load

    def spy(path, name, split, streaming=False):
        calls.append(streaming)
        return real(path, name, split, streaming)

    monkeypatch.setattr(tasks, "hf_load", spy)
    cfg = AnalysisConfig(task=TaskConfig(name=str(folder)), sampling=SampleConfig(n=25, seed=5))
    src = open_sample(cfg)
    want = prepare_sample(cfg)
    assert calls == [True, False]
    assert src.streamed and src.label_names == want.label_names
    np.testing.assert_array_equal(src.labels, want.labels)
    texts, _ = src.texts(np.arange(len(src)))
    assert list(texts) == want.texts
    bad = AnalysisConfig(task=TaskConfig(name=str(folder), text_col="nope"))
    with pytest.raises(VariscopeError, match="text column 'nope' not found in"):
        open_sample(bad)


def test_in_memory_sources_unchanged(tmp_path):
    cfg = AnalysisConfig(task=TaskConfig("bbc_news"), sampling=SampleConfig(n=20, seed=1))
    src, want = open_sample(cfg), prepare_sample(cfg)
    assert not src.streamed
    np.testing.assert_array_equal(src.labels, want.labels)
    assert list(src.texts(np.arange(20))[0]) == want.texts
    p = _labelled(tmp_path)
    up = AnalysisConfig(task=TaskConfig(name=None, data=str(p)), sampling=SampleConfig(n=10))
    assert not open_sample(up, p.read_bytes()).streamed  # uploaded bytes are already in memory


@pytest.mark.parametrize(
    "data",
    [
        b"text,label\nab\xc3",  # a character cut at the end
        ("text,label\n" + "é" * 600000 + ",1\n").encode()[:1048577] + b"\xff",  # bad byte after a 1 MiB chunk
        b"text,label\n" + b"a,1\n" * 300000 + b"caf\xe9,1\n",
        codecs.BOM_UTF16_LE + ("text,label\n" + "é" * 600000).encode("utf-16-le") + b"\x00\xdca\x00",
    ],
    ids=["cut", "split", "late", "utf16"],
)
def test_encoding_errors_name_the_same_byte(tmp_path, data):
    """The encoding is chosen chunk by chunk (1 MiB); warnings and errors name the byte parse_table names."""
    p = _write(tmp_path, "x.csv", data)
    try:
        want = parse_table(data, str(p))[1]
    except VariscopeError as e:
        want = str(e)
    try:
        got = TableFile(str(p)).warnings
    except VariscopeError as e:
        got = str(e)
    assert got == want and "byte" in str(got)


def test_streamed_dataset_read_error_without_a_message_is_one_line():
    """A failing read whose exception has no text (e.g. ConnectionError()) is still one line, not a traceback."""
    from analysis.data.streamed import _iterate

    def rows():
        yield {"text": "a"}
        raise ConnectionError()

    it = _iterate(rows(), "user/data")
    assert next(it) == {"text": "a"}
    with pytest.raises(VariscopeError, match="reading dataset 'user/data' failed: ConnectionError"):
        next(it)
