"""A run whose loss stops being finite is stopped, called "diverged", and every JSON stays strict."""

import json
import math
from types import SimpleNamespace

import pytest

from analysis.store.jsonio import SCHEMA_VERSION, dumps, number, stamp
from analysis.training.callbacks import LiveMetrics
from analysis.training.monitor import RunMonitor


def _strict_loads(text: str):
    def bad(c):
        raise ValueError(f"non-standard JSON constant {c}")

    return json.loads(text, parse_constant=bad)


@pytest.mark.parametrize("key", ["loss", "eval_loss"])
def test_a_non_finite_loss_stops_training_at_that_step(key, tmp_path):
    m = RunMonitor(log_path=str(tmp_path / "log.jsonl"))
    live = LiveMetrics(m, 8, 8, 10)
    control = SimpleNamespace(should_training_stop=False, should_evaluate=True)
    live.on_log(None, SimpleNamespace(global_step=1, max_steps=9), control, logs={"loss": 0.7})
    assert not control.should_training_stop and live.diverged_at is None
    logs = {"loss": math.nan} if key == "loss" else {"eval_loss": math.inf, "eval_accuracy": 0.5}
    live.on_log(None, SimpleNamespace(global_step=2, max_steps=9), control, logs=logs)
    assert control.should_training_stop and not control.should_evaluate and live.diverged_at == 2
    lines = [_strict_loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines[-1].get("loss", lines[-1].get("eval_loss")) is None  # null, not a bare NaN
    assert all(x["schema_version"] == SCHEMA_VERSION for x in lines)


def test_json_is_strict_and_stamped():
    text = dumps(stamp({"a": [1.0, math.nan, -math.inf], "b": {"c": math.inf}}, device="cpu", dtype="float32"))
    d = _strict_loads(text)
    assert d["a"] == [1.0, None, None] and d["b"] == {"c": None}
    assert d["schema_version"] == SCHEMA_VERSION and list(d)[0] == "schema_version"
    p = d["provenance"]
    assert p["device"] == "cpu" and p["dtype"] == "float32" and "numpy" in p["packages"]
    assert "cpu_features" in p and "commit" in p
    assert math.isnan(number(None)) and number(2) == 2.0


@pytest.mark.slow
def test_cli_train_with_a_huge_lr_says_diverged_exits_2_and_writes_strict_json(tmp_path, capsys):
    from analysis.cli import main

    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"text {i} is {'ab'[i % 2]},{'ab'[i % 2]}\n" for i in range(60)))
    j, log = tmp_path / "r.json", tmp_path / "log.jsonl"
    argv = ["train", "--data", str(data), "--n", "40", "--eval-n", "10", "--max-length", "16", "--device", "cpu"]
    argv += ["--classifier-layer", "1", "--steps", "6", "--batch-size", "8", "--lr", "1e30"]
    code = main([*argv, "--json", str(j), "--log", str(log), "--cache-dir", str(tmp_path / "c")])
    cap = capsys.readouterr()
    assert code == 2 and "diverged" in cap.err and "DIVERGED" in cap.out
    r = _strict_loads(j.read_text())
    assert r["diverged"] is True and r["steps"] < 6 and r["schema_version"] == SCHEMA_VERSION
    for line in log.read_text().splitlines():
        _strict_loads(line)
