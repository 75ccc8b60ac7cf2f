"""Data files whose labels or rows are awkward: the right classes, or one line that names the real cause.

Every case runs through both readers, the in-memory one (:func:`analysis.pipeline.prepare_sample`)
and the streamed one (:func:`analysis.data.streamed.open_sample`), which must agree.
"""

import json

import numpy as np
import pytest

from analysis.data.files import TableFile, parse_table
from analysis.data.sampling import SampleConfig
from analysis.data.streamed import open_sample
from analysis.data.tasks import TaskConfig
from analysis.errors import VariscopeError
from analysis.pipeline import AnalysisConfig, prepare_sample


def _cfg(path, n=None) -> AnalysisConfig:
    return AnalysisConfig(task=TaskConfig(name=None, data=str(path)), sampling=SampleConfig(n=n))


def _both(path, n=None) -> list[tuple[list[str], np.ndarray]]:
    """(class names, label counts) from the in-memory and from the streamed reader."""
    sub = prepare_sample(_cfg(path, n))
    src = open_sample(_cfg(path, n))
    return [
        (list(sub.label_names), np.bincount(sub.labels)),
        (list(src.label_names), np.bincount(src.labels)),
    ]


def _errors(path, n=None) -> list[str]:
    out = []
    for read in (prepare_sample, open_sample):
        with pytest.raises(VariscopeError) as e:
            read(_cfg(path, n))
        out.append(str(e.value))
    return out


def _jsonl(tmp_path, rows, name="d.jsonl", **kw):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r, **kw) + "\n" for r in rows), encoding="utf-8")
    return p


def test_a_short_first_csv_row_is_a_blank_label_not_a_missing_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\nonly a text\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(8)))
    for names, counts in _both(p):
        assert names == ["a", "b"] and list(counts) == [4, 4]


def test_a_jsonl_first_object_without_the_label_is_a_blank_label(tmp_path):
    p = _jsonl(tmp_path, [{"text": "x"}] + [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(8)])
    for names, counts in _both(p):
        assert names == ["a", "b"] and list(counts) == [4, 4]
    q = _jsonl(tmp_path, [{"text": f"t{i}", "y": i % 2} for i in range(4)], name="nolabel.jsonl")
    assert all("label column 'label' not found" in e for e in _errors(q))


def test_raw_line_separators_inside_json_strings_stay_in_the_text(tmp_path):
    rows = [{"text": f"a\u2028b\u2029c\x85d {i}", "label": i % 2} for i in range(6)]
    p = _jsonl(tmp_path, rows, ensure_ascii=False)
    p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n", 1))  # \r\n ends a line too
    parsed, _ = parse_table(p.read_bytes(), str(p))
    assert [r["text"] for r in parsed] == [r["text"] for r in rows]
    assert [r["text"] for r in TableFile(str(p)).rows()] == [r["text"] for r in rows]
    src = open_sample(_cfg(p))
    assert list(src.texts(np.arange(len(src)))[0]) == [r["text"] for r in rows]


def test_big_integer_labels_stay_apart(tmp_path):
    p = _jsonl(tmp_path, [{"text": f"t{i}", "label": 2**53 + i % 2} for i in range(6)])
    for names, counts in _both(p):
        assert names == [str(2**53), str(2**53 + 1)] and list(counts) == [3, 3]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_labels_that_change_type_name_the_row(tmp_path, fmt):
    labels = ["pos", "neg", "", "pos", 0, 1, 0]
    if fmt == "jsonl":
        p = _jsonl(tmp_path, [{"text": f"t{i}", "label": y} for i, y in enumerate(labels)])
    else:
        p = tmp_path / "d.csv"
        p.write_text("text,label\n" + "".join(f"t{i},{y}\n" for i, y in enumerate(labels)))
    for e in _errors(p):
        assert "changes type at data row 5" in e and "'pos'" in e and "data row 1" in e


@pytest.mark.parametrize("bad", [{"a": 1}, [1, 2]])
def test_object_and_list_labels_are_refused(tmp_path, bad):
    p = _jsonl(tmp_path, [{"text": "a", "label": "x"}, {"text": "b", "label": bad}, {"text": "c", "label": "y"}])
    for e in _errors(p):
        assert "label of data row 2 is a JSON" in e and "text or numbers" in e


def test_a_sample_too_small_for_its_classes_blames_the_sampling(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(f"text {i},c{i // 2}\n" for i in range(20_000)))
    for e in _errors(p, n=200):
        assert "only 1 example" not in e
        assert "n=200" in e and "10000 classes" in e and "at least 20000" in e
