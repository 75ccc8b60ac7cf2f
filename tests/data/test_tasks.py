import json

import numpy as np
import pytest

from analysis.data import tasks
from analysis.data.sampling import SampleConfig, sample
from analysis.data.tasks import GLUE, TaskConfig, load_task
from analysis.errors import VariscopeError


@pytest.mark.parametrize(
    "name,classes", [("rotten_tomatoes", 2), ("bbc_news", 5), ("reuters_r8", 8), ("twenty_newsgroups", 20)]
)
def test_offline_tasks_load_with_class_count(name, classes):
    train = load_task(TaskConfig(name=name))
    test = load_task(TaskConfig(name=name, split="test"))
    assert len(train.label_names) == classes and len(test.label_names) == classes
    assert len(train) > len(test) > 100
    assert set(train.texts).isdisjoint(test.texts) or name in ("reuters_r8", "twenty_newsgroups")
    assert all(t.strip() for t in train.texts[:200])


def test_rotten_tomatoes_is_fresh_vs_rotten():
    t = load_task(TaskConfig())
    assert t.label_names == ["rotten", "fresh"]
    assert 10_000 < len(t) + len(load_task(TaskConfig(split="test"))) < 13_000


def test_sampling_stratified_deterministic_and_capped():
    t = load_task(TaskConfig(name="bbc_news"))
    a = sample(t, SampleConfig(n=100, seed=1))
    b = sample(t, SampleConfig(n=100, seed=1))
    c = sample(t, SampleConfig(n=100, seed=2))
    assert len(a) == 100 and a.texts == b.texts and a.texts != c.texts
    full = np.bincount(t.labels) / len(t)
    assert np.abs(np.bincount(a.labels) / 100 - full).max() < 0.02
    pc = sample(t, SampleConfig(n=None, per_class=7))
    assert set(pc.counts().values()) == {7}
    imb = sample(load_task(TaskConfig()), SampleConfig(n=1000, imbalance=(1, 9)))
    counts = list(imb.counts().values())
    assert sum(counts) == 1000 and counts[1] == 9 * counts[0]
    frac = sample(t, SampleConfig(n=None, fraction=0.1))
    assert abs(len(frac) - 0.1 * len(t)) < 10
    big = sample(t, SampleConfig(n=10**6))
    assert len(big) == len(t) and "more than" in big.info["warnings"][-1]
    with pytest.raises(VariscopeError, match="per-class cap"):
        sample(t, SampleConfig(per_class=0))


def _glue_like(rows, pair):
    import datasets

    feats = {"sentence1" if pair else "sentence": datasets.Value("string")}
    if pair:
        feats["sentence2"] = datasets.Value("string")
    feats["label"] = datasets.ClassLabel(names=["not_equivalent", "equivalent"] if pair else ["negative", "positive"])
    feats["idx"] = datasets.Value("int32")
    return datasets.Dataset.from_dict(rows, features=datasets.Features(feats))


@pytest.mark.parametrize("name", ["sst2", "mrpc"])
def test_glue_paths_on_local_fixtures(monkeypatch, name):
    pair = GLUE[name][1] is not None
    n = 12
    rows = {
        ("sentence1" if pair else "sentence"): [f"first {i}" for i in range(n)],
        "label": [i % 2 for i in range(n)],
        "idx": list(range(n)),
    }
    if pair:
        rows["sentence2"] = [f"second {i}" for i in range(n)]
    calls = []

    def fake(path, cfg, split):
        calls.append((path, cfg, split))
        if split == "test":  # GLUE test labels are hidden
            return _glue_like({**rows, "label": [-1] * n}, pair)
        return _glue_like(rows, pair)

    monkeypatch.setattr(tasks, "hf_load", fake)
    t = load_task(TaskConfig(name=name, split="validation"))
    assert calls[-1] == ("nyu-mll/glue", name, "validation")
    assert len(t) == n and (t.pairs is not None) == pair
    assert t.label_names == (["not_equivalent", "equivalent"] if pair else ["negative", "positive"])
    if pair:
        assert t.pairs[3] == "second 3"
    # GLUE hides its test labels: asking for "test" reads the task's labelled evaluation split
    before = len(calls)
    t_test = load_task(TaskConfig(name=name, split="test"))
    assert calls[before:] == [("nyu-mll/glue", name, "validation")]
    assert len(t_test) == n and set(t_test.labels.tolist()) == {0, 1}


def test_stsb_refused_without_bins(monkeypatch):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"sentence1": ["a", "b", "c", "d"], "sentence2": ["e", "f", "g", "h"], "label": [0.5, 4.2, 3.1, 1.0]}
    )
    monkeypatch.setattr(tasks, "hf_load", lambda *a: ds)
    with pytest.raises(VariscopeError, match="regression"):
        load_task(TaskConfig(name="stsb"))
    t = load_task(TaskConfig(name="stsb", bins=2))
    assert len(t.label_names) == 2 and sorted(t.labels.tolist()) == [0, 0, 1, 1]


def test_hf_dataset_id_and_local_folder(tmp_path):
    d = tmp_path / "myset"
    d.mkdir()
    (d / "train.jsonl").write_text(
        "\n".join(json.dumps({"review": f"text {i}", "stars": "good" if i % 3 else "bad"}) for i in range(30))
    )
    t = load_task(TaskConfig(name=str(d), text_col="review", label_col="stars"))
    assert len(t) == 30 and t.label_names == ["bad", "good"]
    with pytest.raises(VariscopeError, match="columns are"):
        load_task(TaskConfig(name=str(d), text_col="nope", label_col="stars"))


def test_hub_unreachable_is_one_clear_line():
    with pytest.raises(VariscopeError, match="unreachable"):
        load_task(TaskConfig(name="someone/some-dataset"))


def test_csv_tsv_jsonl_files(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\nhello,1\nworld,0\nfoo,1\nbar,0\n")
    (tmp_path / "a.tsv").write_text("s1\ts2\ty\nhello\tthere\tpos\nworld\tpeace\tneg\n")
    (tmp_path / "a.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    c = load_task(TaskConfig(name=None, data=str(tmp_path / "a.csv")))
    assert c.label_names == ["0", "1"] and c.labels.tolist() == [1, 0, 1, 0]
    t = load_task(TaskConfig(name=None, data=str(tmp_path / "a.tsv"), text_col="s1", text_pair_col="s2", label_col="y"))
    assert t.pairs == ["there", "peace"] and t.label_names == ["neg", "pos"]
    j = load_task(TaskConfig(name=None, data=str(tmp_path / "a.jsonl")))
    assert len(j) == 2


def test_small_stratified_sample_keeps_two_per_class():
    t = load_task(TaskConfig(name="reuters_r8"))
    s = sample(t, SampleConfig(n=100))
    assert len(s) == 100 and min(s.counts().values()) >= 2
    plain = sample(t, SampleConfig(n=2000))  # large samples stay purely proportional
    share = np.bincount(t.labels) / len(t) * 2000
    assert np.abs(np.bincount(plain.labels) - share).max() < 1
