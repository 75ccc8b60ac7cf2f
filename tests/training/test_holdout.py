"""Held-out texts never overlap the training texts, also for a data file without a test split."""

import pytest

from analysis.data.sampling import SampleConfig
from analysis.data.tasks import TaskConfig
from analysis.pipeline import AnalysisConfig
from analysis.training.data import split_train_eval


def _file(tmp_path, rows: int, classes: int = 2, dup: int = 0):
    p = tmp_path / "f.csv"
    body = "".join(f"text number {i} of class c{i % classes},c{i % classes}\n" for i in range(rows))
    body += "".join(f"text number {i} of class c{i % classes},c{i % classes}\n" for i in range(dup))  # repeated rows
    p.write_text("text,label\n" + body)
    return str(p)


def _cfg(path, n):
    return AnalysisConfig(model="minilm", task=TaskConfig(name=None, data=path), sampling=SampleConfig(n=n, seed=0))


@pytest.mark.parametrize(("rows", "n", "eval_n", "dup"), [(240, 200, 60, 0), (1000, 200, 60, 40), (400, 100, 50, 0)])
def test_file_held_out_texts_are_not_training_texts(tmp_path, rows, n, eval_n, dup):
    train, held = split_train_eval(_cfg(_file(tmp_path, rows, dup=dup), n), eval_n)
    assert not set(train.texts) & set(held.texts)
    assert len(held) == min(eval_n, len(set(train.texts) ^ {f"text number {i} of class c{i % 2}" for i in range(rows)}))
    assert sorted(set(held.labels.tolist())) == [0, 1]  # stratified: both classes
    assert held.label_names == train.label_names
    assert f"{len(held)} held-out texts" in held.info["held_out"]
    assert len(train) == n  # the training sample is the analysis sample


def test_file_used_whole_sets_apart_part_of_the_training_sample(tmp_path):
    train, held = split_train_eval(_cfg(_file(tmp_path, 100), 100), 30)
    assert not set(train.texts) & set(held.texts)
    assert len(train) + len(held) == 100
    assert "set apart from the training sample" in held.info["held_out"]


def test_offline_task_held_out_from_its_test_split_without_overlap():
    cfg = AnalysisConfig(model="minilm", task=TaskConfig(name="rotten_tomatoes"), sampling=SampleConfig(n=200, seed=0))
    train, held = split_train_eval(cfg, 50)
    assert not set(train.texts) & set(held.texts)
    assert len(held) == 50 and "test split" in held.info["held_out"]
